"""Keys: CreateKey, DescribeKey, ListKeys, description, Enable/Disable, Schedule/CancelKeyDeletion,
rotation status; their key policies and tags.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import sqlalchemy as sa

from lambdalet.kms import condition_keys as CK
from lambdalet.kms import errors as E
from lambdalet.kms.access import KeyAccess
from lambdalet.kms.records import (
    _UUID_RE,
    DAY_S,
    DISABLED,
    ENABLED,
    MAX_DESCRIPTION,
    MAX_TAGS,
    PENDING_DELETION,
    SYMMETRIC_DEFAULT,
    Key,
    _string,
    default_policy,
    kek_id_of,
    key_arn,
)
from lambdalet.kms.tables import kms_keys
from lambdalet.models.context import RequestContext


class Keys(KeyAccess):
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

    def get_key_rotation_status(self, ctx: RequestContext, params: dict) -> dict:
        key = self._key(ctx, _string(params, "KeyId"), "kms:GetKeyRotationStatus")
        return {"KeyRotationEnabled": False, "KeyId": key.arn}

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
