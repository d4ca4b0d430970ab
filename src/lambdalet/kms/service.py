"""The KMS-compatible key service (a subset): one method per KMS operation
(`snake_case(Operation)(ctx, params)`), plus the internal API Lambda uses (`lambda_keys.FunctionKeys`).

Keys
- Per account and region: KeyId is a uuid4, ARN `arn:aws:kms:{region}:{account}:key/{id}`; aliases
  `alias/...` name one key of the same account and region.
- Symmetric only (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT, origin AWS_KMS). The key material is a KEK in
  the platform keyring (`kms-<key id>`), wrapped by the master key like every other KEK: it never
  leaves the service, not even sealed (no export, no import). Rotating the master key re-wraps it
  (`lambdalet keys rotate-master`) without touching anything it encrypted.
- States: Enabled, Disabled, PendingDeletion (ScheduleKeyDeletion, 7-30 days; CancelKeyDeletion
  leaves it Disabled). When the deletion date passes the key row, its aliases and its KEK are
  destroyed (the next KMS call or server start does it; until then the key already counts as gone).

Ciphertexts are keyring envelopes sealed under the key's KEK: self-describing (the KEK id, hence the
KeyId, is in the header) so Decrypt needs no KeyId. The AAD is a KMS-only domain tag plus the
canonical EncryptionContext, so (a) a wrong or missing context fails with InvalidCiphertextException
and (b) no other envelope under the same KEK (e.g. a function's environment, sealed with Lambda's own
AAD) can be opened through Decrypt, nor a KMS ciphertext passed off as one of those.

Key policies (PolicyName "default") are stored and enforced on every operation on a key, with KMS's
rule: the key policy must allow the caller, either by naming it (its ARN or "*") or by naming its
account (`arn:aws:iam::<account>:root`, the default "Enable IAM User Permissions" statement), in
which case the caller's IAM identity policies must allow the action too (when the service has an
`authorizer`; without one, naming the account suffices). Explicit Deny wins; conditions are
evaluated by the IAM policy engine over the global keys plus KMS's own (kms/condition_keys.py:
kms:EncryptionContext:<key>, kms:EncryptionContextKeys, kms:CallerAccount, kms:EncryptionAlgorithm,
kms:RequestAlias, kms:ViaService, ...). Cross-account use is only for the cryptographic operations and
DescribeKey, by key ARN, when the key policy allows it. Grants do not exist (CreateGrant is refused).

This class is the facade; the work lives in one module per resource (its methods are theirs):
  core.py        shared state, key lookups (KeyId / ARN / alias), the purge of deleted keys
  access.py      the key-policy decision (through iam/evaluation.py or the Authorizer)
  keys.py        keys, their states, key policies and tags     aliases.py  aliases
  crypto_ops.py  Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateRandom
  records.py     limits, states, Key, ARNs, the default policy, the EncryptionContext AAD
"""
from __future__ import annotations

from botocore.model import ServiceModel

from lambdalet.kms import errors as E
from lambdalet.kms.aliases import Aliases
from lambdalet.kms.crypto_ops import CryptoOperations
from lambdalet.kms.keys import Keys
from lambdalet.kms.records import (
    DAY_S,
    DISABLED,
    ENABLED,
    PENDING_DELETION,
    Key,
    context_aad,
    key_arn,
    key_id_of_kek,
    parse_key_arn,
)

__all__ = ["DAY_S", "DISABLED", "ENABLED", "PENDING_DELETION", "Key", "KmsBinding", "KmsService", "context_aad",
           "key_arn", "key_id_of_kek", "parse_key_arn"]


class KmsService(Keys, Aliases, CryptoOperations):
    """Every KMS operation lambdalet implements, and the internal API Lambda uses (key_for, key_by_id)."""


def unsupported_operations(model: ServiceModel) -> set[str]:
    """Operations of the KMS model this service does not implement (answered UnsupportedOperationException)."""
    from lambdalet.models.service_model import snake_case
    return {snake_case(op) for op in model.operation_names if not hasattr(KmsService, snake_case(op))}


class KmsBinding:
    """What api/ binds: the service, plus a 400 UnsupportedOperationException for every other KMS
    operation (the generic fallback would be a 500 ServiceException, which clients retry)."""

    def __init__(self, service: KmsService, model: ServiceModel):
        self._service = service
        self._unsupported = unsupported_operations(model)

    def __getattr__(self, name: str):
        if name in self._unsupported:
            def refuse(ctx, params):
                op = "".join(p.capitalize() for p in name.split("_"))
                raise E.UnsupportedOperationException(f"lambdalet does not implement {op}.")
            return refuse
        return getattr(self._service, name)
