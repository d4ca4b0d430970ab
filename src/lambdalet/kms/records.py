"""KMS's limits and key states, the Key record, key ARNs and KEK ids, the default key policy and the
EncryptionContext AAD: what every kms/ module shares.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lambdalet.kms import errors as E

KEK_PREFIX = "kms-"
ENABLED, DISABLED, PENDING_DELETION = "Enabled", "Disabled", "PendingDeletion"
SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
MAX_PLAINTEXT = 4096
MAX_DATA_KEY_BYTES = 1024
MAX_TAGS = 50
MAX_DESCRIPTION = 8192
DAY_S = 86_400.0
_AAD_DOMAIN = b"lambdalet/kms/v1\x00"
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):key/(.+)$")
_ALIAS_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):(alias/.+)$")
_ALIAS_NAME_RE = re.compile(r"^alias/[a-zA-Z0-9/_-]{1,250}$")
_CRYPTO_ACTIONS = {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                   "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:DescribeKey", "kms:CreateGrant"}


def kek_id_of(key_id: str) -> str:
    return KEK_PREFIX + key_id


def key_id_of_kek(kek_id: str) -> str | None:
    """The KMS KeyId a keyring KEK id belongs to, None for the platform's own KEKs."""
    if kek_id.startswith(KEK_PREFIX) and _UUID_RE.match(kek_id[len(KEK_PREFIX):]):
        return kek_id[len(KEK_PREFIX):]
    return None


def key_arn(region: str, account_id: str, key_id: str) -> str:
    return f"arn:aws:kms:{region}:{account_id}:key/{key_id}"


def parse_key_arn(arn: str) -> tuple[str, str, str] | None:
    """(region, account, key id) of a key ARN, None if `arn` is not one."""
    m = _KEY_ARN_RE.match(arn or "")
    if not m or not _UUID_RE.match(m.group(3)):
        return None
    return m.group(1), m.group(2), m.group(3)


def default_policy(account_id: str) -> str:
    """What CreateKey attaches when no Policy is given (AWS's default key policy)."""
    return json.dumps({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}]}, indent=2)


def context_aad(encryption_context: dict | None) -> bytes:
    """The AAD for an EncryptionContext: order-insensitive, exact on keys and values."""
    ec = encryption_context or {}
    for k, v in ec.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise E.ValidationException("EncryptionContext keys and values must be strings.")
    return _AAD_DOMAIN + json.dumps(sorted(ec.items()), separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Key:
    id: str
    account_id: str
    region: str
    kek_id: str
    description: str
    key_usage: str
    key_spec: str
    state: str
    policy: str
    tags: tuple
    created_at: float
    deletion_date: float | None
    pending_window_days: int | None

    @property
    def arn(self) -> str:
        return key_arn(self.region, self.account_id, self.id)

    def deleted(self, now: float) -> bool:
        """Past its deletion date: gone, whether or not the row was purged yet."""
        return self.state == PENDING_DELETION and self.deletion_date is not None and self.deletion_date <= now

    @classmethod
    def of(cls, row) -> "Key":
        return cls(id=row.id, account_id=row.account_id, region=row.region, kek_id=row.kek_id,
                   description=row.description or "", key_usage=row.key_usage, key_spec=row.key_spec,
                   state=row.state, policy=row.policy, tags=tuple(json.loads(row.tags or "[]")),
                   created_at=row.created_at, deletion_date=row.deletion_date,
                   pending_window_days=row.pending_window_days)


def _not_found(arn_or_ref: str) -> E.KmsError:
    return E.NotFoundException(f"Key '{arn_or_ref}' does not exist")


def _string(params: dict, name: str, required: bool = True) -> Any:
    v = params.get(name)
    if v is None:
        if required:
            raise E.ValidationException(f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
                                        "failed to satisfy constraint: Member must not be null")
        return None
    return v
