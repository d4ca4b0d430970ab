"""Accounts and access keys. Secrets are kept sealed by the keyring; only this module unseals them.

The model is AWS's: an access key belongs to one principal (a user ARN) in one account, so
users, roles, policies and STS session keys can be added without changing how requests are
authenticated.
"""
from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

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

    def create_access_key(self, account_id: str, user_name: str) -> AdminCredentials:
        key_id, secret = _new_key_id(), _new_secret()
        with self._db.engine.begin() as conn:
            self.ensure_account(conn, account_id, user_name)
            conn.execute(schema.access_keys.insert().values(
                access_key_id=key_id, account_id=account_id,
                principal_arn=f"arn:aws:iam::{account_id}:user/{user_name}",
                user_id="AIDA" + key_id[4:], secret_sealed=self._keyring.seal(secret.encode(), self._aad(key_id)),
                status="Active", created_at=time.time(), expires_at=None))
        return AdminCredentials(key_id, secret, account_id)

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

    def lookup(self, access_key_id: str) -> tuple[Caller, str] | None:
        """Caller and secret for an active, unexpired key; None for anything else."""
        with self._lock:
            hit = self._cache.get(access_key_id)
        if hit:
            return hit
        t = schema.access_keys
        with self._db.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.access_key_id == access_key_id)).first()
        if row is None or row.status != "Active" or (row.expires_at and row.expires_at < time.time()):
            return None
        secret = self._keyring.open(row.secret_sealed, self._aad(row.access_key_id)).decode()
        caller = Caller(account_id=row.account_id, principal_arn=row.principal_arn,
                        access_key_id=row.access_key_id, user_id=row.user_id)
        if not row.expires_at:   # session keys are not cached, so expiry is always checked
            with self._lock:
                self._cache[access_key_id] = (caller, secret)
        return caller, secret
