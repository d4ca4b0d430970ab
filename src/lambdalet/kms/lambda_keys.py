"""What Lambda needs from KMS: a function's KMSKeyArn checked when it is configured, the KEK its
environment variables are sealed under, and the key's state checked whenever the data plane
decrypts them — failing with the errors Lambda answers (502 KMS*Exception, AWS's wording).

Lambda holds a standing grant on the key (as AWS's Lambda does): the caller's permission is checked
once, when the key is attached (kms:CreateGrant through the key policy); invocations then only need
the key to be usable. Key state changes call the listeners of `KmsService` (Lambda's resolver
invalidation), so cached resolutions never outlive a DisableKey / ScheduleKeyDeletion.
"""
from __future__ import annotations

from lambdalet.crypto.envelope import sealed_key_id
from lambdalet.crypto.errors import DecryptionError
from lambdalet.kms import errors as KE
from lambdalet.kms.service import DISABLED, ENABLED, PENDING_DELETION, KmsService, key_id_of_kek, parse_key_arn
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import AwsError


def _lambda(code: str) -> type[AwsError]:
    return type(code, (AwsError,), {"code": code, "status": 502, "sender_fault": False})


# Lambda's modelled errors (httpStatusCode 502 in botocore's Lambda model).
KMSDisabledException = _lambda("KMSDisabledException")
KMSInvalidStateException = _lambda("KMSInvalidStateException")
KMSNotFoundException = _lambda("KMSNotFoundException")
KMSAccessDeniedException = _lambda("KMSAccessDeniedException")

_DECRYPT = "Lambda was unable to decrypt the environment variables because "
_CONFIGURE = "Lambda was unable to configure access to your environment variables because "
_CHECK = " Please check the function's KMS key settings."


class FunctionKeys:
    def __init__(self, kms: KmsService):
        self.kms = kms

    @staticmethod
    def kek_id(kms_key_arn: str) -> str:
        """The keyring KEK a function's secrets are sealed under (key ARN -> `kms-<key id>`)."""
        parsed = parse_key_arn(kms_key_arn)
        if parsed is None:
            raise KMSNotFoundException(f"{_CONFIGURE}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: Invalid arn {kms_key_arn}")
        return "kms-" + parsed[2]

    def check_configurable(self, ctx: RequestContext, kms_key_arn: str) -> str:
        """CreateFunction / UpdateFunctionConfiguration: the key exists, the caller may use it, it is
        Enabled. -> the KEK id to seal under; Lambda's KMS*Exception otherwise."""
        kek = self.kek_id(kms_key_arn)
        try:
            key = self.kms.key_for(ctx, kms_key_arn, "kms:CreateGrant", cross_account=True)
        except KE.NotFoundException as e:
            raise KMSNotFoundException(f"{_CONFIGURE}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: {e.message}") from None
        except KE.AccessDeniedException as e:
            raise KMSAccessDeniedException(f"{_CONFIGURE}KMS access was denied.{_CHECK} KMS Exception: "
                                           f"AccessDeniedException; KMS Message: {e.message}") from None
        self._require(key.state, key.arn, _CONFIGURE)
        return kek

    def check_decryptable(self, kek_id: str) -> None:
        """Data plane, before opening anything sealed under `kek_id`: no-op for the platform's own
        KEKs; Lambda's KMS*Exception when the KMS key is disabled, pending deletion or gone."""
        key_id = key_id_of_kek(kek_id)
        if key_id is None:
            return
        key = self.kms.key_by_id(key_id)
        if key is None:
            raise KMSNotFoundException(f"{_DECRYPT}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: Key '{key_id}' does not exist")
        self._require(key.state, key.arn, _DECRYPT)

    def check_sealed(self, sealed: bytes) -> None:
        try:
            kek = sealed_key_id(bytes(sealed))
        except DecryptionError:
            return                     # opening it will fail with the real reason
        self.check_decryptable(kek)

    @staticmethod
    def _require(state: str, arn: str, lead: str) -> None:
        if state == ENABLED:
            return
        if state == DISABLED:
            raise KMSDisabledException(f"{lead}the KMS key used is disabled.{_CHECK} KMS Exception: "
                                       f"DisabledException; KMS Message: {arn} is disabled.")
        what = "pending deletion" if state == PENDING_DELETION else f"in state {state}"
        raise KMSInvalidStateException(f"{lead}the KMS key used is in an invalid state for Decrypt.{_CHECK} "
                                       f"KMS Exception: KMSInvalidStateException; KMS Message: {arn} is {what}.")
