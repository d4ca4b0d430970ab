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
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from botocore.model import ServiceModel

from lambdalet.crypto.envelope import sealed_key_id
from lambdalet.crypto.errors import DecryptionError
from lambdalet.iam.authz import principal_of, request_context
from lambdalet.iam.policy import (ADMINISTRATOR_ACCESS, MalformedPolicy, Request, build_context, evaluate,
                                  parse_policy)
from lambdalet.kms import condition_keys as CK
from lambdalet.kms import errors as E
from lambdalet.kms.tables import kms_aliases, kms_keys
from lambdalet.models.context import RequestContext

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


def _string(params: dict, name: str, required: bool = True) -> str | None:
    v = params.get(name)
    if v is None:
        if required:
            raise E.ValidationException(f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
                                        "failed to satisfy constraint: Member must not be null")
        return None
    return v


class KmsService:
    def __init__(self, db, keyring, settings=None, *, authorizer=None, clock: Callable[[], float] = time.time):
        self._db = db
        self._keyring = keyring
        self._settings = settings
        self.authorizer = authorizer       # iam.authz.Authorizer: identity policies for account delegation
        self._clock = clock
        self.listeners: list[Callable[[], None]] = []   # called after a key's state changes (Lambda's cache)
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0

    # ------------------------------------------------------------ internals
    def _changed(self) -> None:
        for fn in list(self.listeners):
            fn()

    def _row(self, conn, key_id: str):
        return conn.execute(sa.select(kms_keys).where(kms_keys.c.id == key_id)).first()

    def key_by_id(self, key_id: str) -> Key | None:
        """Internal (Lambda): the key with this KeyId, None if it never existed or is deleted."""
        with self._db.read() as conn:
            row = self._row(conn, key_id)
        if row is None:
            return None
        key = Key.of(row)
        return None if key.deleted(self._clock()) else key

    def purge_expired(self) -> int:
        """Destroy keys whose deletion date has passed: rows, aliases, then the KEK (crypto-shredding)."""
        now = self._clock()
        with self._purge_lock:
            with self._db.begin() as conn:
                rows = conn.execute(sa.select(kms_keys.c.id, kms_keys.c.kek_id).where(
                    kms_keys.c.state == PENDING_DELETION, kms_keys.c.deletion_date <= now)).all()
                if rows:
                    ids = [r.id for r in rows]
                    conn.execute(kms_aliases.delete().where(kms_aliases.c.key_id.in_(ids)))
                    conn.execute(kms_keys.delete().where(kms_keys.c.id.in_(ids)))
            for r in rows:   # after the commit: a crash in between leaves an orphan KEK, never a dangling row
                self._keyring.destroy_key(r.kek_id)
        if rows:
            self._changed()
        return len(rows)

    def _maybe_purge(self) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + 60.0
        with self._db.read() as conn:
            due = conn.execute(sa.select(sa.func.count()).select_from(kms_keys).where(
                kms_keys.c.state == PENDING_DELETION, kms_keys.c.deletion_date <= now)).scalar()
        if due:
            self.purge_expired()

    def _resolve(self, conn, ctx: RequestContext, ref: Any, *, cross_account: bool = False,
                 aliases: bool = True) -> Key:
        """KeyId, key ARN, alias name or alias ARN -> Key of the caller's account and region (or, for
        `cross_account` operations, of another account named by ARN)."""
        if not isinstance(ref, str) or not ref:
            raise E.ValidationException("1 validation error detected: Value at 'keyId' failed to satisfy "
                                        "constraint: Member must have length greater than or equal to 1")
        region, account = ctx.region, ctx.account_id
        key_id = alias = None
        if ref.startswith("arn:"):
            m = _KEY_ARN_RE.match(ref) or _ALIAS_ARN_RE.match(ref)
            if not m:
                raise E.NotFoundException(f"Invalid arn {ref}")
            region, account = m.group(1), m.group(2)
            if m.re is _KEY_ARN_RE:
                key_id = m.group(3)
            else:
                alias = m.group(3)
        elif ref.startswith("alias/"):
            alias = ref
        else:
            key_id = ref
        if alias is not None and not aliases:
            raise E.NotFoundException(f"Invalid keyId '{ref}'")
        if region != ctx.region or (account != ctx.account_id and not cross_account):
            raise _not_found(ref if ref.startswith("arn:") else key_arn(region, account, ref))
        if alias is not None:
            hit = conn.execute(sa.select(kms_aliases.c.key_id).where(
                kms_aliases.c.account_id == account, kms_aliases.c.region == region,
                kms_aliases.c.name == alias)).first()
            if hit is None:
                raise E.NotFoundException(f"Alias arn:aws:kms:{region}:{account}:{alias} is not found.")
            key_id = hit.key_id
        if not _UUID_RE.match(key_id):
            raise E.NotFoundException(f"Invalid keyId '{ref}'")
        row = self._row(conn, key_id)
        if row is None or row.account_id != account or row.region != region:
            raise _not_found(key_arn(region, account, key_id))
        key = Key.of(row)
        if key.deleted(self._clock()):
            raise _not_found(key.arn)
        return key

    @staticmethod
    def _context(ctx: RequestContext, key: Key, keys: dict | None) -> dict:
        """Global keys, KMS's keys for this key and caller (kms/condition_keys.py), the operation's own."""
        out = request_context(ctx)
        out.update(CK.resource_tags(key.tags))
        out.update(CK.key_properties(key.key_spec, key.key_usage))
        out.update(CK.caller_keys(ctx.caller.account_id))
        out.update(keys or {})
        return out

    def _decide(self, ctx: RequestContext, key: Key, action: str, policy: str | None = None,
                keys: dict | None = None):
        policy = key.policy if policy is None else policy
        context = self._context(ctx, key, keys)
        if self.authorizer is not None:
            return self.authorizer.authorize(ctx.caller, action, key.arn, context, policy,
                                             resource_account=key.account_id, resource_policy_required=True)
        # No IAM wired in: an account-level grant in the key policy suffices (identity allows all).
        who = principal_of(ctx.caller)
        try:
            parsed = parse_policy(policy, "resource", label="key-policy")
        except MalformedPolicy:
            parsed = None
        return evaluate(Request(who, action, key.arn, build_context(who, context)),
                        (parse_policy(ADMINISTRATOR_ACCESS, label="identity"),), parsed, key.account_id,
                        resource_policy_required=True)

    def _authorize(self, ctx: RequestContext, key: Key, action: str, keys: dict | None = None) -> None:
        if key.account_id != ctx.account_id and action not in _CRYPTO_ACTIONS:
            raise _not_found(key.arn)
        decision = self._decide(ctx, key, action, keys=keys)
        if not decision.allowed:
            raise E.AccessDeniedException(decision.message(ctx.caller.principal_arn, action, key.arn))

    def _authorize_account(self, ctx: RequestContext, action: str, keys: dict | None = None) -> None:
        """Operations on no key (CreateKey, ListKeys, ListAliases, GenerateRandom): IAM policies only."""
        if self.authorizer is None:
            return
        context = request_context(ctx)
        context.update(CK.caller_keys(ctx.caller.account_id))
        context.update(keys or {})
        decision = self.authorizer.authorize(ctx.caller, action, "*", context, resource_account=ctx.account_id)
        if not decision.allowed:
            raise E.AccessDeniedException(decision.message(ctx.caller.principal_arn, action, "*"))

    def _key(self, ctx: RequestContext, ref: Any, action: str, *, cross_account: bool = False,
             keys: dict | None = None) -> Key:
        with self._db.read() as conn:
            key = self._resolve(conn, ctx, ref, cross_account=cross_account)
        self._authorize(ctx, key, action, {**CK.request_alias(ref), **(keys or {})})
        return key

    def key_for(self, ctx: RequestContext, ref: Any, action: str, *, cross_account: bool = False,
                keys: dict | None = None) -> Key:
        """Internal (Lambda): resolve `ref` for the caller and check the key policy allows `action`;
        `keys` are the operation's condition keys (kms:ViaService, kms:EncryptionContext:..., ...)."""
        return self._key(ctx, ref, action, cross_account=cross_account, keys=keys)

    @staticmethod
    def _require_usable(key: Key) -> None:
        if key.state == DISABLED:
            raise E.DisabledException(f"{key.arn} is disabled.")
        if key.state == PENDING_DELETION:
            raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")

    @staticmethod
    def _dry_run(params: dict) -> None:
        if params.get("DryRun"):
            raise E.DryRunOperationException("The request would have succeeded, but the DryRun option is set.")

    @staticmethod
    def _algorithm(params: dict, name: str = "EncryptionAlgorithm") -> None:
        alg = params.get(name)
        if alg is not None and alg != SYMMETRIC_DEFAULT:
            raise E.InvalidKeyUsageException(f"The {name} {alg} is not valid for a SYMMETRIC_DEFAULT key.")

    def _metadata(self, key: Key) -> dict:
        out = {
            "AWSAccountId": key.account_id, "KeyId": key.id, "Arn": key.arn, "CreationDate": key.created_at,
            "Enabled": key.state == ENABLED, "Description": key.description, "KeyUsage": key.key_usage,
            "KeyState": key.state, "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": key.key_spec, "KeySpec": key.key_spec,
            "EncryptionAlgorithms": [SYMMETRIC_DEFAULT], "MultiRegion": False,
        }
        if key.state == PENDING_DELETION:
            out["DeletionDate"] = key.deletion_date
            out["PendingDeletionWindowInDays"] = key.pending_window_days
        return out

    def _check_policy(self, ctx: RequestContext, key: Key, policy: Any, bypass: bool) -> str:
        if not isinstance(policy, str) or not policy.strip():
            raise E.MalformedPolicyDocumentException("The policy document is empty.")
        if len(policy.encode()) > 32768:
            raise E.LimitExceededException("The key policy is larger than 32 KB.")
        try:
            parse_policy(policy, "resource", label="key-policy")
        except MalformedPolicy as e:
            raise E.MalformedPolicyDocumentException(f"The new key policy contains a syntax error: {e}") from None
        if not bypass and not self._decide(ctx, key, "kms:PutKeyPolicy", policy,
                                           keys={"kms:BypassPolicyLockoutSafetyCheck": False}).allowed:
            raise E.MalformedPolicyDocumentException(
                "The new key policy will not allow you to update the key policy in the future.")
        return policy

    @staticmethod
    def _tags(raw: Any) -> list[dict]:
        tags = raw or []
        if len(tags) > MAX_TAGS:
            raise E.TagException(f"A key can have at most {MAX_TAGS} tags.")
        for t in tags:
            k, v = t.get("TagKey"), t.get("TagValue")
            if not isinstance(k, str) or not 1 <= len(k) <= 128 or not isinstance(v, str) or len(v) > 256:
                raise E.TagException("Tag keys must be 1-128 characters and tag values at most 256.")
            if k.startswith("aws:"):
                raise E.TagException("Tags beginning with aws: are reserved.")
        return [{"TagKey": t["TagKey"], "TagValue": t["TagValue"]} for t in tags]

    def _set_state(self, ctx: RequestContext, ref: Any, action: str, update: Callable[[Key], dict]) -> Key:
        self._maybe_purge()
        key = self._key(ctx, ref, action)
        with self._db.begin() as conn:
            key = self._resolve(conn, ctx, key.arn)          # again, inside the write transaction
            values = update(key)
            conn.execute(kms_keys.update().where(kms_keys.c.id == key.id).values(**values))
            key = Key.of(self._row(conn, key.id))
        self._changed()
        return key

    # ------------------------------------------------------------ keys
    def create_key(self, ctx: RequestContext, params: dict) -> dict:
        usage = params.get("KeyUsage", "ENCRYPT_DECRYPT")
        spec = params.get("KeySpec") or params.get("CustomerMasterKeySpec") or SYMMETRIC_DEFAULT
        keys = CK.key_properties(spec, usage, origin=params.get("Origin") or "AWS_KMS",
                                 multi_region=bool(params.get("MultiRegion")))
        keys["kms:BypassPolicyLockoutSafetyCheck"] = bool(params.get("BypassPolicyLockoutSafetyCheck"))
        self._authorize_account(ctx, "kms:CreateKey", keys)
        self._maybe_purge()
        if params.get("KeySpec") and params.get("CustomerMasterKeySpec"):
            raise E.ValidationException("You cannot specify KeySpec and CustomerMasterKeySpec in the same request.")
        if spec != SYMMETRIC_DEFAULT or usage != "ENCRYPT_DECRYPT":
            raise E.UnsupportedOperationException(
                f"lambdalet supports only symmetric encryption keys (KeySpec SYMMETRIC_DEFAULT, KeyUsage "
                f"ENCRYPT_DECRYPT), not {spec}/{usage}.")
        if params.get("Origin", "AWS_KMS") != "AWS_KMS" or params.get("CustomKeyStoreId") or params.get("XksKeyId"):
            raise E.UnsupportedOperationException("lambdalet supports only keys of origin AWS_KMS.")
        if params.get("MultiRegion"):
            raise E.UnsupportedOperationException("lambdalet does not support multi-Region keys.")
        description = params.get("Description", "")
        if len(description) > MAX_DESCRIPTION:
            raise E.ValidationException(f"Description must be at most {MAX_DESCRIPTION} characters.")
        tags = self._tags(params.get("Tags"))
        key_id = str(uuid.uuid4())
        now = self._clock()
        key = Key(id=key_id, account_id=ctx.account_id, region=ctx.region, kek_id=kek_id_of(key_id),
                  description=description, key_usage=usage, key_spec=spec, state=ENABLED,
                  policy=default_policy(ctx.account_id), tags=tuple(tags), created_at=now, deletion_date=None,
                  pending_window_days=None)
        if params.get("Policy") is not None:
            key = dataclasses.replace(key, policy=self._check_policy(
                ctx, key, params["Policy"], bool(params.get("BypassPolicyLockoutSafetyCheck"))))
        self._keyring.create_key(key.kek_id)     # the material first: a row never names a missing KEK
        with self._db.begin() as conn:
            conn.execute(kms_keys.insert().values(
                id=key.id, account_id=key.account_id, region=key.region, kek_id=key.kek_id,
                description=key.description, key_usage=usage, key_spec=spec, state=ENABLED, policy=key.policy,
                tags=json.dumps(tags), created_at=now, deletion_date=None, pending_window_days=None))
        return {"KeyMetadata": self._metadata(key)}

    def describe_key(self, ctx: RequestContext, params: dict) -> dict:
        key = self._key(ctx, _string(params, "KeyId"), "kms:DescribeKey", cross_account=True)
        return {"KeyMetadata": self._metadata(key)}

    def list_keys(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize_account(ctx, "kms:ListKeys")
        self._maybe_purge()
        limit = params.get("Limit", 100)
        if not 1 <= limit <= 1000:
            raise E.ValidationException("Limit must be between 1 and 1000.")
        marker = params.get("Marker")
        if marker is not None and not _UUID_RE.match(marker):
            raise E.InvalidMarkerException("The marker is invalid.")
        now = self._clock()
        q = sa.select(kms_keys.c.id).where(
            kms_keys.c.account_id == ctx.account_id, kms_keys.c.region == ctx.region,
            sa.or_(kms_keys.c.deletion_date.is_(None), kms_keys.c.deletion_date > now))
        if marker:
            q = q.where(kms_keys.c.id > marker)
        with self._db.read() as conn:
            ids = [r.id for r in conn.execute(q.order_by(kms_keys.c.id).limit(limit + 1))]
        out: dict[str, Any] = {"Keys": [{"KeyId": i, "KeyArn": key_arn(ctx.region, ctx.account_id, i)}
                                        for i in ids[:limit]], "Truncated": len(ids) > limit}
        if len(ids) > limit:
            out["NextMarker"] = ids[limit - 1]
        return out

    def update_key_description(self, ctx: RequestContext, params: dict) -> dict:
        description = _string(params, "Description")
        if len(description) > MAX_DESCRIPTION:
            raise E.ValidationException(f"Description must be at most {MAX_DESCRIPTION} characters.")

        def update(key: Key) -> dict:
            return {"description": description}
        self._set_state(ctx, _string(params, "KeyId"), "kms:UpdateKeyDescription", update)
        return {}

    def enable_key(self, ctx: RequestContext, params: dict) -> dict:
        def update(key: Key) -> dict:
            if key.state == PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
            return {"state": ENABLED}
        self._set_state(ctx, _string(params, "KeyId"), "kms:EnableKey", update)
        return {}

    def disable_key(self, ctx: RequestContext, params: dict) -> dict:
        def update(key: Key) -> dict:
            if key.state == PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
            return {"state": DISABLED}
        self._set_state(ctx, _string(params, "KeyId"), "kms:DisableKey", update)
        return {}

    def schedule_key_deletion(self, ctx: RequestContext, params: dict) -> dict:
        days = params.get("PendingWindowInDays", 30)
        if not 7 <= days <= 30:
            raise E.ValidationException(
                f"1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy "
                "constraint: Member must have value between 7 and 30")

        def update(key: Key) -> dict:
            if key.state == PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
            return {"state": PENDING_DELETION, "deletion_date": self._clock() + days * DAY_S,
                    "pending_window_days": days}
        key = self._set_state(ctx, _string(params, "KeyId"), "kms:ScheduleKeyDeletion", update)
        return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
                "PendingWindowInDays": days}

    def cancel_key_deletion(self, ctx: RequestContext, params: dict) -> dict:
        def update(key: Key) -> dict:
            if key.state != PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is not pending deletion.")
            return {"state": DISABLED, "deletion_date": None, "pending_window_days": None}
        key = self._set_state(ctx, _string(params, "KeyId"), "kms:CancelKeyDeletion", update)
        return {"KeyId": key.arn}

    # ------------------------------------------------------------ key policies
    @staticmethod
    def _policy_name(params: dict) -> str:
        name = params.get("PolicyName", "default")
        if name != "default":
            raise E.NotFoundException(f"Policy '{name}' does not exist. The only key policy name is 'default'.")
        return name

    def get_key_policy(self, ctx: RequestContext, params: dict) -> dict:
        name = self._policy_name(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:GetKeyPolicy")
        return {"Policy": key.policy, "PolicyName": name}

    def put_key_policy(self, ctx: RequestContext, params: dict) -> dict:
        self._policy_name(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:PutKeyPolicy", keys={
            "kms:BypassPolicyLockoutSafetyCheck": bool(params.get("BypassPolicyLockoutSafetyCheck"))})
        if key.state == PENDING_DELETION:
            raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
        policy = self._check_policy(ctx, key, _string(params, "Policy"),
                                    bool(params.get("BypassPolicyLockoutSafetyCheck")))
        with self._db.begin() as conn:
            conn.execute(kms_keys.update().where(kms_keys.c.id == key.id).values(policy=policy))
        return {}

    def list_key_policies(self, ctx: RequestContext, params: dict) -> dict:
        self._key(ctx, _string(params, "KeyId"), "kms:ListKeyPolicies")
        return {"PolicyNames": ["default"], "Truncated": False}

    # ------------------------------------------------------------ tags
    def tag_resource(self, ctx: RequestContext, params: dict) -> dict:
        new = self._tags(params.get("Tags"))

        def update(key: Key) -> dict:
            if key.state == PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
            tags = {t["TagKey"]: t["TagValue"] for t in key.tags}
            tags.update({t["TagKey"]: t["TagValue"] for t in new})
            if len(tags) > MAX_TAGS:
                raise E.TagException(f"A key can have at most {MAX_TAGS} tags.")
            return {"tags": json.dumps([{"TagKey": k, "TagValue": v} for k, v in tags.items()])}
        self._set_state(ctx, _string(params, "KeyId"), "kms:TagResource", update)
        return {}

    def untag_resource(self, ctx: RequestContext, params: dict) -> dict:
        drop = set(params.get("TagKeys") or [])

        def update(key: Key) -> dict:
            if key.state == PENDING_DELETION:
                raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
            return {"tags": json.dumps([t for t in key.tags if t["TagKey"] not in drop])}
        self._set_state(ctx, _string(params, "KeyId"), "kms:UntagResource", update)
        return {}

    def list_resource_tags(self, ctx: RequestContext, params: dict) -> dict:
        key = self._key(ctx, _string(params, "KeyId"), "kms:ListResourceTags")
        return {"Tags": list(key.tags), "Truncated": False}

    # ------------------------------------------------------------ aliases
    def _alias_name(self, name: Any) -> str:
        if not isinstance(name, str) or not _ALIAS_NAME_RE.match(name):
            raise E.InvalidAliasNameException(
                f"Alias name '{name}' is invalid: it must begin with 'alias/' followed by 1-250 characters "
                "of a-z, A-Z, 0-9, '/', '_' and '-'.")
        if name.startswith("alias/aws/"):
            raise E.NotFoundException(f"Operations on AWS managed aliases (alias/aws/...) are not permitted: {name}")
        return name

    def _alias_target(self, ctx: RequestContext, ref: Any, action: str) -> Key:
        with self._db.read() as conn:
            key = self._resolve(conn, ctx, _string({"TargetKeyId": ref}, "TargetKeyId"), aliases=False)
        self._authorize(ctx, key, action)
        if key.state == PENDING_DELETION:
            raise E.KMSInvalidStateException(f"{key.arn} is pending deletion.")
        return key

    def create_alias(self, ctx: RequestContext, params: dict) -> dict:
        self._maybe_purge()
        name = self._alias_name(params.get("AliasName"))
        key = self._alias_target(ctx, params.get("TargetKeyId"), "kms:CreateAlias")
        now = self._clock()
        with self._db.begin() as conn:
            taken = conn.execute(sa.select(kms_aliases.c.name).where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name)).first()
            if taken:
                raise E.AlreadyExistsException(
                    f"An alias with the name arn:aws:kms:{ctx.region}:{ctx.account_id}:{name} already exists")
            conn.execute(kms_aliases.insert().values(account_id=ctx.account_id, region=ctx.region, name=name,
                                                     key_id=key.id, created_at=now, updated_at=now))
        return {}

    def update_alias(self, ctx: RequestContext, params: dict) -> dict:
        name = self._alias_name(params.get("AliasName"))
        key = self._alias_target(ctx, params.get("TargetKeyId"), "kms:UpdateAlias")
        with self._db.begin() as conn:
            done = conn.execute(kms_aliases.update().where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name).values(key_id=key.id, updated_at=self._clock())).rowcount
        if not done:
            raise E.NotFoundException(f"Alias arn:aws:kms:{ctx.region}:{ctx.account_id}:{name} is not found.")
        return {}

    def delete_alias(self, ctx: RequestContext, params: dict) -> dict:
        name = self._alias_name(params.get("AliasName"))
        with self._db.read() as conn:
            key = self._resolve(conn, ctx, name)
        self._authorize(ctx, key, "kms:DeleteAlias")
        with self._db.begin() as conn:
            conn.execute(kms_aliases.delete().where(
                kms_aliases.c.account_id == ctx.account_id, kms_aliases.c.region == ctx.region,
                kms_aliases.c.name == name))
        return {}

    def list_aliases(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize_account(ctx, "kms:ListAliases")
        self._maybe_purge()
        limit = params.get("Limit", 100)
        if not 1 <= limit <= 1000:
            raise E.ValidationException("Limit must be between 1 and 1000.")
        marker = params.get("Marker")
        q = sa.select(kms_aliases).where(kms_aliases.c.account_id == ctx.account_id,
                                         kms_aliases.c.region == ctx.region)
        if params.get("KeyId") is not None:
            with self._db.read() as conn:
                key = self._resolve(conn, ctx, params["KeyId"], aliases=False)
            self._authorize(ctx, key, "kms:ListAliases")
            q = q.where(kms_aliases.c.key_id == key.id)
        if marker is not None:
            if not isinstance(marker, str) or not _ALIAS_NAME_RE.match(marker):
                raise E.InvalidMarkerException("The marker is invalid.")
            q = q.where(kms_aliases.c.name > marker)
        with self._db.read() as conn:
            rows = conn.execute(q.order_by(kms_aliases.c.name).limit(limit + 1)).all()
        out: dict[str, Any] = {"Aliases": [{
            "AliasName": r.name, "AliasArn": f"arn:aws:kms:{r.region}:{r.account_id}:{r.name}",
            "TargetKeyId": r.key_id, "CreationDate": r.created_at, "LastUpdatedDate": r.updated_at}
            for r in rows[:limit]], "Truncated": len(rows) > limit}
        if len(rows) > limit:
            out["NextMarker"] = rows[limit - 1].name
        return out

    # ------------------------------------------------------------ cryptography
    def _seal(self, key: Key, plaintext: bytes, encryption_context: dict | None) -> bytes:
        self._require_usable(key)
        return self._keyring.seal(plaintext, aad=context_aad(encryption_context), key_id=key.kek_id)

    def encrypt(self, ctx: RequestContext, params: dict) -> dict:
        plaintext = _string(params, "Plaintext")
        if not 1 <= len(plaintext) <= MAX_PLAINTEXT:
            raise E.ValidationException(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have "
                f"length less than or equal to {MAX_PLAINTEXT} and greater than or equal to 1")
        self._algorithm(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:Encrypt", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext"), params.get("EncryptionAlgorithm")))
        self._require_usable(key)
        self._dry_run(params)
        blob = self._seal(key, plaintext, params.get("EncryptionContext"))
        return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def _open(self, ctx: RequestContext, blob: Any, encryption_context: dict | None, key_ref: Any,
              action: str, algorithm: str | None = None) -> tuple[Key, bytes]:
        if not isinstance(blob, (bytes, bytearray)) or not blob:
            raise E.ValidationException("CiphertextBlob must be 1 to 6144 bytes.")
        try:
            key_id = key_id_of_kek(sealed_key_id(bytes(blob)))
        except DecryptionError:
            key_id = None
        if key_id is None:
            raise E.InvalidCiphertextException("")
        with self._db.read() as conn:
            row = self._row(conn, key_id)
            named = self._resolve(conn, ctx, key_ref, cross_account=True) if key_ref is not None else None
        key = Key.of(row) if row is not None else None
        if key is None or key.region != ctx.region or key.deleted(self._clock()):
            if named is not None:
                raise E.IncorrectKeyException("The key ID in the request does not identify a KMS key that can "
                                              "perform this operation.")
            raise E.InvalidCiphertextException("")
        if named is not None and named.id != key.id:
            raise E.IncorrectKeyException("The key ID in the request does not identify a KMS key that can "
                                          "perform this operation.")
        # The request's context is the one the ciphertext must be bound to, so conditions see the real one.
        self._authorize(ctx, key, action, {**CK.request_alias(key_ref),
                                           **CK.cryptographic(encryption_context, algorithm)})
        self._require_usable(key)
        try:
            return key, self._keyring.open(bytes(blob), aad=context_aad(encryption_context))
        except DecryptionError:
            raise E.InvalidCiphertextException("") from None

    def decrypt(self, ctx: RequestContext, params: dict) -> dict:
        self._algorithm(params)
        if params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support Nitro Enclaves recipients.")
        key, plaintext = self._open(ctx, params.get("CiphertextBlob"), params.get("EncryptionContext"),
                                    params.get("KeyId"), "kms:Decrypt", params.get("EncryptionAlgorithm"))
        self._dry_run(params)
        return {"KeyId": key.arn, "Plaintext": plaintext, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}

    def re_encrypt(self, ctx: RequestContext, params: dict) -> dict:
        self._algorithm(params, "SourceEncryptionAlgorithm")
        self._algorithm(params, "DestinationEncryptionAlgorithm")
        source, plaintext = self._open(ctx, params.get("CiphertextBlob"), params.get("SourceEncryptionContext"),
                                       params.get("SourceKeyId"), "kms:ReEncryptFrom",
                                       params.get("SourceEncryptionAlgorithm"))
        dest = self._key(ctx, _string(params, "DestinationKeyId"), "kms:ReEncryptTo", cross_account=True,
                         keys=CK.cryptographic(params.get("DestinationEncryptionContext"),
                                               params.get("DestinationEncryptionAlgorithm")))
        self._require_usable(dest)
        self._dry_run(params)
        blob = self._seal(dest, plaintext, params.get("DestinationEncryptionContext"))
        return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
                "SourceEncryptionAlgorithm": SYMMETRIC_DEFAULT, "DestinationEncryptionAlgorithm": SYMMETRIC_DEFAULT}

    @staticmethod
    def _data_key_size(params: dict) -> int:
        spec, n = params.get("KeySpec"), params.get("NumberOfBytes")
        if (spec is None) == (n is None):
            raise E.ValidationException("Please specify either number of bytes or key spec.")
        if spec is not None:
            sizes = {"AES_256": 32, "AES_128": 16}
            if spec not in sizes:
                raise E.ValidationException(f"1 validation error detected: Value '{spec}' at 'keySpec' failed "
                                            "to satisfy constraint: Member must satisfy enum value set: "
                                            "[AES_256, AES_128]")
            return sizes[spec]
        if not 1 <= n <= MAX_DATA_KEY_BYTES:
            raise E.ValidationException(f"1 validation error detected: Value '{n}' at 'numberOfBytes' failed "
                                        "to satisfy constraint: Member must have value between 1 and "
                                        f"{MAX_DATA_KEY_BYTES}")
        return n

    def generate_data_key(self, ctx: RequestContext, params: dict) -> dict:
        if params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support Nitro Enclaves recipients.")
        size = self._data_key_size(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:GenerateDataKey", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext")))
        self._require_usable(key)
        self._dry_run(params)
        plaintext = os.urandom(size)
        return {"CiphertextBlob": self._seal(key, plaintext, params.get("EncryptionContext")),
                "Plaintext": plaintext, "KeyId": key.arn}

    def generate_data_key_without_plaintext(self, ctx: RequestContext, params: dict) -> dict:
        size = self._data_key_size(params)
        key = self._key(ctx, _string(params, "KeyId"), "kms:GenerateDataKeyWithoutPlaintext", cross_account=True,
                        keys=CK.cryptographic(params.get("EncryptionContext")))
        self._require_usable(key)
        self._dry_run(params)
        return {"CiphertextBlob": self._seal(key, os.urandom(size), params.get("EncryptionContext")),
                "KeyId": key.arn}

    def generate_random(self, ctx: RequestContext, params: dict) -> dict:
        self._authorize_account(ctx, "kms:GenerateRandom")
        if params.get("CustomKeyStoreId") or params.get("Recipient"):
            raise E.UnsupportedOperationException("lambdalet does not support custom key stores or recipients.")
        n = params.get("NumberOfBytes")
        if n is None or not 1 <= n <= MAX_DATA_KEY_BYTES:
            raise E.ValidationException(f"NumberOfBytes must be between 1 and {MAX_DATA_KEY_BYTES}.")
        return {"Plaintext": os.urandom(n)}

    def get_key_rotation_status(self, ctx: RequestContext, params: dict) -> dict:
        key = self._key(ctx, _string(params, "KeyId"), "kms:GetKeyRotationStatus")
        return {"KeyRotationEnabled": False, "KeyId": key.arn}


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
