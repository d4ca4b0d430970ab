"""Accounts and access keys. Secrets are kept sealed by the keyring; only this module unseals them.

The model is AWS's: an access key belongs to one principal (a user ARN) in one account, so
users, roles, policies and STS session keys can be added without changing how requests are
authenticated.

Session keys (STS AssumeRole) are access keys with `expires_at` plus an `iam_sessions` row holding
the SHA-256 of their session token: `lookup(key_id, session_token)` refuses a session key unless
the request carries that token, and answers ExpiredTokenException once it has expired. Long-term
user keys carry the IAM user's id in `user_id`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from lambdalet.iam import directory as _directory
from lambdalet.iam import tables as _tables
from lambdalet.iam.errors import ExpiredTokenException
from lambdalet.models.context import Caller
from lambdalet.store import schema

BOOTSTRAP_ACCOUNT = "000000000000"   # the administrator's account, as LocalStack users expect
BOOTSTRAP_USER = "admin"
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class AdminCredentials:
    access_key_id: str
    secret_access_key: str
    account_id: str


def _new_key_id() -> str:
    # AWS long-term keys start AKIA; ours start LKIA so they are never mistaken for real AWS keys.
    return "LKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def _new_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


def _new_session_key_id() -> str:
    # AWS session keys start ASIA; ours LSIA.
    return "LSIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float


class IdentityStore:
    def __init__(self, db, keyring):
        self._db = db
        self._keyring = keyring
        self._cache: dict[str, tuple[Caller, str]] = {}   # access key id -> (caller, secret)
        self._lock = threading.Lock()

    def _aad(self, access_key_id: str) -> bytes:
        return f"access-key:{access_key_id}".encode()

    def ensure_account(self, conn, account_id: str, name: str) -> None:
        exists = conn.execute(sa.select(schema.accounts.c.account_id)
                              .where(schema.accounts.c.account_id == account_id)).first()
        if not exists:
            conn.execute(schema.accounts.insert().values(account_id=account_id, name=name, created_at=time.time()))

    def create_access_key(self, account_id: str, user_name: str, *, administrator: bool | None = None
                          ) -> AdminCredentials:
        """A long-term key for `user_name` (the IAM user is created if missing). `administrator`
        attaches AdministratorAccess (default: only for the bootstrap administrator)."""
        key_id, secret = _new_key_id(), _new_secret()
        if administrator is None:
            administrator = account_id == BOOTSTRAP_ACCOUNT and user_name == BOOTSTRAP_USER
        with self._db.begin() as conn:
            self.ensure_account(conn, account_id, user_name)
            user = _directory.ensure_user(conn, account_id, user_name, "AIDA" + key_id[4:21])
            if administrator:
                _directory.ensure_managed_policies(conn)
                _directory.attach_by_arn(conn, "user", user["UserId"], _directory.ADMIN_POLICY_ARN)
            self._insert_key(conn, key_id, secret, account_id, user["Arn"], user["UserId"], None)
        return AdminCredentials(key_id, secret, account_id)

    def _insert_key(self, conn, key_id: str, secret: str, account_id: str, principal_arn: str, user_id: str,
                    expires_at: float | None) -> None:
        conn.execute(schema.access_keys.insert().values(
            access_key_id=key_id, account_id=account_id, principal_arn=principal_arn, user_id=user_id,
            secret_sealed=self._keyring.seal(secret.encode(), self._aad(key_id)),
            status="Active", created_at=time.time(), expires_at=expires_at))

    def create_user_key(self, conn, account_id: str, user_arn: str, user_id: str) -> tuple[str, str, float]:
        """IAM CreateAccessKey, inside the caller's transaction: (key id, secret, created_at)."""
        key_id, secret = _new_key_id(), _new_secret()
        self._insert_key(conn, key_id, secret, account_id, user_arn, user_id, None)
        return key_id, secret, time.time()

    def delete_user_key(self, account_id: str, user_id: str, access_key_id: str) -> bool:
        t = schema.access_keys
        with self._db.begin() as conn:
            res = conn.execute(t.delete().where(t.c.access_key_id == access_key_id, t.c.account_id == account_id,
                                                t.c.user_id == user_id, t.c.expires_at.is_(None)))
        self.forget(access_key_id)
        return res.rowcount > 0

    def set_user_key_status(self, account_id: str, user_id: str, access_key_id: str, status: str) -> bool:
        t = schema.access_keys
        with self._db.begin() as conn:
            res = conn.execute(t.update().where(t.c.access_key_id == access_key_id, t.c.account_id == account_id,
                                                t.c.user_id == user_id, t.c.expires_at.is_(None))
                               .values(status=status))
        self.forget(access_key_id)
        return res.rowcount > 0

    def forget(self, access_key_id: str) -> None:
        """Drop a cached key (after it was deleted or deactivated)."""
        with self._lock:
            self._cache.pop(access_key_id, None)

    def create_session(self, account_id: str, session_arn: str, user_id: str, role_id: str, role_arn: str,
                       session_name: str, expires_at: float, *, source_identity: str | None = None,
                       session_policies: dict | None = None, tags: dict | None = None,
                       source_function_arn: str | None = None) -> SessionCredentials:
        """STS: a temporary key for a role session; the token is returned once and stored hashed.
        The session is bound to `role_id` (iam/principals.py): a recreated role does not honour it.
        `session_policies` ({"Policy": doc, "PolicyArns": [...]}) and `tags` ({"Tags": {..},
        "Transitive": [..]}) are kept as given, for the session's life. `source_function_arn`: the
        function whose environments get these credentials (Lambda's execution-role sessions only); every
        request signed with them carries it as `lambda:SourceFunctionArn`, wherever it is made from."""
        key_id, secret = _new_session_key_id(), _new_secret()
        token = "LSTS" + secrets.token_urlsafe(96)
        with self._db.begin() as conn:
            self._insert_key(conn, key_id, secret, account_id, session_arn, user_id, expires_at)
            conn.execute(_tables.iam_sessions.insert().values(
                access_key_id=key_id, token_sha256=_token_hash(token), role_id=role_id, role_arn=role_arn,
                session_name=session_name, created_at=time.time(), source_identity=source_identity,
                session_policies=json.dumps(session_policies) if session_policies is not None else None,
                tags=json.dumps(tags) if tags else None,
                source_function_arn=":".join(source_function_arn.split(":")[:7]) if source_function_arn else None))
        return SessionCredentials(key_id, secret, token, expires_at)

    def purge_expired_sessions(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        t = schema.access_keys
        with self._db.begin() as conn:
            ids = [r.access_key_id for r in conn.execute(sa.select(t.c.access_key_id)
                                                         .where(t.c.expires_at.is_not(None), t.c.expires_at < now))]
            if ids:
                conn.execute(_tables.iam_sessions.delete().where(_tables.iam_sessions.c.access_key_id.in_(ids)))
                conn.execute(t.delete().where(t.c.access_key_id.in_(ids)))
        return len(ids)

    def bootstrap_admin(self) -> AdminCredentials:
        """The first start creates the administrator's key; later starts find it."""
        existing = self.admin_credentials()
        return existing or self.create_access_key(BOOTSTRAP_ACCOUNT, BOOTSTRAP_USER)

    def admin_credentials(self) -> AdminCredentials | None:
        t = schema.access_keys
        with self._db.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.principal_arn == f"arn:aws:iam::{BOOTSTRAP_ACCOUNT}:user/{BOOTSTRAP_USER}",
                                                  t.c.status == "Active").order_by(t.c.created_at)).first()
        if row is None:
            return None
        secret = self._keyring.open(row.secret_sealed, self._aad(row.access_key_id)).decode()
        return AdminCredentials(row.access_key_id, secret, row.account_id)

    def lookup(self, access_key_id: str, session_token: str | None = None) -> tuple[Caller, str] | None:
        """Caller and secret for an active, unexpired key; None for anything else. A session key
        is found only with its session token; once expired it raises ExpiredTokenException."""
        with self._lock:
            hit = self._cache.get(access_key_id)
        if hit:
            return hit
        t = schema.access_keys
        with self._db.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.access_key_id == access_key_id)).first()
            session = None
            if row is not None and row.expires_at:
                s = _tables.iam_sessions.c
                session = conn.execute(sa.select(s.token_sha256).where(s.access_key_id == access_key_id)).first()
        if row is None or row.status != "Active":
            return None
        if row.expires_at:
            if session is None or not session_token or not hmac.compare_digest(
                    session.token_sha256, _token_hash(session_token)):
                return None
            if row.expires_at < time.time():
                raise ExpiredTokenException("The security token included in the request is expired")
        secret = self._keyring.open(row.secret_sealed, self._aad(row.access_key_id)).decode()
        caller = Caller(account_id=row.account_id, principal_arn=row.principal_arn,
                        access_key_id=row.access_key_id, user_id=row.user_id)
        if not row.expires_at:   # session keys are not cached, so expiry is always checked
            with self._lock:
                self._cache[access_key_id] = (caller, secret)
        return caller, secret
