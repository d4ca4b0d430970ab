"""Who may use a key: KMS's rule (the key policy must allow the caller, naming it or its account; naming
the account defers to the caller's IAM policies), evaluated through iam/evaluation.py or the
Authorizer, with KMS's condition keys (kms/condition_keys.py).
"""
from __future__ import annotations

from typing import Any, Callable

from lambdalet.iam.evaluation import MalformedPolicy, check_resource_policy, key_policy_decision, request_context
from lambdalet.kms import condition_keys as CK
from lambdalet.kms import errors as E
from lambdalet.kms.core import KmsCore
from lambdalet.kms.records import _CRYPTO_ACTIONS, Key, _not_found
from lambdalet.kms.tables import kms_keys
from lambdalet.models.context import RequestContext


class KeyAccess(KmsCore):
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
        return key_policy_decision(ctx.caller, action, key.arn, policy, key.account_id, context)

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

    def _check_policy(self, ctx: RequestContext, key: Key, policy: Any, bypass: bool) -> str:
        if not isinstance(policy, str) or not policy.strip():
            raise E.MalformedPolicyDocumentException("The policy document is empty.")
        if len(policy.encode()) > 32768:
            raise E.LimitExceededException("The key policy is larger than 32 KB.")
        try:
            check_resource_policy(policy, label="key-policy")
        except MalformedPolicy as e:
            raise E.MalformedPolicyDocumentException(f"The new key policy contains a syntax error: {e}") from None
        if not bypass and not self._decide(ctx, key, "kms:PutKeyPolicy", policy,
                                           keys={"kms:BypassPolicyLockoutSafetyCheck": False}).allowed:
            raise E.MalformedPolicyDocumentException(
                "The new key policy will not allow you to update the key policy in the future.")
        return policy

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
