"""What Lambda needs from KMS: a function's KMSKeyArn checked when it is configured, the KEK its
environment variables are sealed under, and the key's state checked whenever the data plane
decrypts them — failing with the errors Lambda answers (502 KMS*Exception, AWS's wording).

Lambda holds a standing grant on the key (as AWS's Lambda does): the caller's permission is checked
once, when the key is attached (kms:CreateGrant through the key policy); invocations then only need
the key to be usable. Key state changes call the listeners of `KmsService` (Lambda's resolver
invalidation), so cached resolutions never outlive a DisableKey / ScheduleKeyDeletion.

Deployment packages with a SourceKMSKeyArn (CodeSealer): as AWS documents, no grant — the caller needs
kms:GenerateDataKey on the key to deploy and kms:Decrypt to download (GetFunction's Code.Error
otherwise). The data plane checks the key's state before every new execution environment, whether or
not the package is already unpacked, so a cache hit never stands in for the key.
"""
from __future__ import annotations

import json

from lambdalet.crypto.envelope import sealed_key_id
from lambdalet.crypto.errors import DecryptionError
from lambdalet.kms import condition_keys as CK
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
_CODE_DECRYPT = "Lambda was unable to decrypt your function's deployment package because "
_CODE_CONFIGURE = "Lambda was unable to configure access to your function's deployment package because "
_CODE_AAD = b"lambdalet/code/v1\x00"     # Lambda's own domain: KMS Decrypt cannot open a package


class FunctionKeys:
    def __init__(self, kms: KmsService, keyring=None):
        self.kms = kms
        # The KMS keys' KEKs live in the platform keyring; CodeSealer seals with them directly.
        self._keyring = keyring if keyring is not None else kms._keyring

    @staticmethod
    def kek_id(kms_key_arn: str, lead: str = _CONFIGURE) -> str:
        """The keyring KEK a function's secrets are sealed under (key ARN -> `kms-<key id>`)."""
        parsed = parse_key_arn(kms_key_arn)
        if parsed is None:
            raise KMSNotFoundException(f"{lead}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: Invalid arn {kms_key_arn}")
        return "kms-" + parsed[2]

    def check_configurable(self, ctx: RequestContext, kms_key_arn: str) -> str:
        """CreateFunction / UpdateFunctionConfiguration: the key exists, the caller may use it, it is
        Enabled. -> the KEK id to seal under; Lambda's KMS*Exception otherwise."""
        return self._usable_by(ctx, kms_key_arn, "kms:CreateGrant", _CONFIGURE)

    def check_code_configurable(self, ctx: RequestContext, source_kms_key_arn: str) -> str:
        """CreateFunction / UpdateFunctionCode with a SourceKMSKeyArn: as above, with the permission
        AWS asks of the deployer (kms:GenerateDataKey: the package is sealed under a data key from it)."""
        return self._usable_by(ctx, source_kms_key_arn, "kms:GenerateDataKey", _CODE_CONFIGURE)

    def code_download_error(self, ctx: RequestContext, source_kms_key_arn: str) -> AwsError | None:
        """GetFunction: None if the caller may read the package (kms:Decrypt, key Enabled), else the
        Lambda KMS error AWS reports in Code.Error instead of a Location."""
        try:
            self._usable_by(ctx, source_kms_key_arn, "kms:Decrypt", _CODE_DECRYPT)
        except AwsError as e:
            return e
        return None

    def _usable_by(self, ctx: RequestContext, kms_key_arn: str, action: str, lead: str) -> str:
        kek = self.kek_id(kms_key_arn, lead)
        # Lambda calls KMS for the caller: kms:ViaService says so (a key policy may allow only that path).
        keys = {"kms:ViaService": CK.via_service("lambda", ctx.region)}
        if action == "kms:CreateGrant":
            keys["kms:GrantIsForAWSResource"] = True       # Lambda's grant on the key
        else:
            keys.update(CK.cryptographic(None))
        try:
            key = self.kms.key_for(ctx, kms_key_arn, action, cross_account=True, keys=keys)
        except KE.NotFoundException as e:
            raise KMSNotFoundException(f"{lead}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: {e.message}") from None
        except KE.AccessDeniedException as e:
            raise KMSAccessDeniedException(f"{lead}KMS access was denied.{_CHECK} KMS Exception: "
                                           f"AccessDeniedException; KMS Message: {e.message}") from None
        self._require(key.state, key.arn, lead)
        return kek

    def check_decryptable(self, kek_id: str, lead: str = _DECRYPT) -> None:
        """Data plane, before opening anything sealed under `kek_id`: no-op for the platform's own
        KEKs; Lambda's KMS*Exception when the KMS key is disabled, pending deletion or gone."""
        key_id = key_id_of_kek(kek_id)
        if key_id is None:
            return
        key = self.kms.key_by_id(key_id)
        if key is None:
            raise KMSNotFoundException(f"{lead}the KMS key was not found.{_CHECK} KMS Exception: "
                                       f"NotFoundException; KMS Message: Key '{key_id}' does not exist")
        self._require(key.state, key.arn, lead)

    def check_code_keys(self, source_kms_key_arn: str, kms_key_arn: str | None = None) -> None:
        """Data plane, before a new environment gets a package sealed under `source_kms_key_arn`: that
        key must be usable, and so must the function's KMSKeyArn, which in AWS encrypts the unzipped
        copy invocations use (here that copy is tmpfs-only, and this check is its gate)."""
        self.check_decryptable(self.kek_id(source_kms_key_arn, _CODE_DECRYPT), _CODE_DECRYPT)
        if kms_key_arn:
            self.check_decryptable(self.kek_id(kms_key_arn, _CODE_DECRYPT), _CODE_DECRYPT)

    def code_sealer(self, source_kms_key_arn: str, function_arn: str) -> "CodeSealer":
        return CodeSealer(self, source_kms_key_arn, function_arn)

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


class CodeSealer:
    """blobs.BlobSealer for one function's package under its SourceKMSKeyArn. Every blob gets a fresh
    data key wrapped by the KMS key's KEK (the keyring envelope: KMS GenerateDataKey's semantics), and
    the ciphertext is bound to the encryption context {"aws:lambda:FunctionArn": <unqualified ARN>}
    under Lambda's own AAD domain. `scope` puts the key and the function into the blob's address.
    Master-key rotation re-wraps the KEK only: these blobs are never re-encrypted."""

    def __init__(self, keys: FunctionKeys, key_arn: str, function_arn: str):
        self._keys = keys
        self.kek = keys.kek_id(key_arn, _CODE_CONFIGURE)
        self.scope = f"{key_arn}\x00{function_arn}"
        context = {"aws:lambda:FunctionArn": function_arn}
        self._aad = _CODE_AAD + json.dumps(sorted(context.items()), separators=(",", ":")).encode() + b"\x00"

    def check(self) -> None:
        """Lambda's KMS*Exception unless the key is Enabled."""
        self._keys.check_decryptable(self.kek, _CODE_DECRYPT)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        self.check()                 # KMS refuses GenerateDataKey under a key that is not Enabled
        return self._keys._keyring.seal(data, aad=self._aad + aad, key_id=self.kek)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        self.check()
        if sealed_key_id(sealed) != self.kek:
            raise DecryptionError("package is not sealed under its SourceKMSKeyArn")
        return self._keys._keyring.open(sealed, aad=self._aad + aad)
