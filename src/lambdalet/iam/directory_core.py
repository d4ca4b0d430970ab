"""DirectoryCore: the database, the generation authorization caches follow, accounts and the built-in
administrator, and what authorization reads (a principal's policies); checks shared by users and roles.
"""
from __future__ import annotations

import contextlib
import itertools
import secrets
import string
import time
from typing import Callable

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.directory_rows import (
    AWS_ACCOUNT,
    attach_by_arn,
    ensure_managed_policies,
    ensure_user,
)
from lambdalet.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    NoSuchEntity,
)
from lambdalet.iam.managed_policies import ADMIN_POLICY_ARN
from lambdalet.iam.policy import Policy
from lambdalet.iam.principals import PrincipalPolicies, load_principal
from lambdalet.store import schema


class DirectoryCore:
    def __init__(self, db, clock: Callable[[], float] = time.time):
        self._db = db
        self._clock = clock
        self._generations = itertools.count(1)
        self.generation = 0     # bumped after every write: readers caching policies compare it

    def invalidate(self) -> None:
        """Cached identity policies are stale (one process owns writes in the embedded mode, as for
        services/resolver.py; a multi-node deployment needs a shared change feed instead)."""
        self.generation = next(self._generations)

    @contextlib.contextmanager
    def _begin(self):
        """A write transaction; the generation moves after it ends (committed or not), so a reader
        that noted the generation before reading can never keep a pre-commit view as current."""
        try:
            with self._db.begin() as conn:
                yield conn
        finally:
            self.invalidate()

    def transaction(self):
        return self._begin()

    # ---------------------------------------------------------------- bootstrap and accounts
    def ensure_builtin(self, admin_account: str = "000000000000", admin_user: str = "admin") -> None:
        """AWS-managed policies; a user row for every user key created outside IAM; the bootstrap
        administrator's AdministratorAccess attachment. Idempotent; run at every start."""
        now = self._clock()
        with self._begin() as conn:
            ensure_managed_policies(conn, now)
            k = schema.access_keys.c
            keys = conn.execute(sa.select(k.account_id, k.principal_arn, k.user_id)
                                .where(k.principal_arn.like("arn:aws:iam::%:user/%"))).all()
            for key in keys:
                name = key.principal_arn.rsplit("/", 1)[-1]
                user = ensure_user(conn, key.account_id, name, key.user_id, now)
                if key.account_id == admin_account and name == admin_user:
                    attach_by_arn(conn, "user", user["UserId"], ADMIN_POLICY_ARN, now)

    def create_account(self, name: str, account_id: str | None = None) -> str:
        """A new tenant: its own 12-digit id (random unless given). Its first user and key come from
        IdentityStore.create_access_key (which also attaches AdministratorAccess when asked)."""
        with self._begin() as conn:
            for _ in range(20):
                aid = account_id or "".join(secrets.choice(string.digits) for _ in range(12))
                exists = conn.execute(sa.select(schema.accounts.c.account_id)
                                      .where(schema.accounts.c.account_id == aid)).first()
                if not exists:
                    conn.execute(schema.accounts.insert().values(account_id=aid, name=name[:64],
                                                                 created_at=self._clock()))
                    return aid
                if account_id:
                    raise EntityAlreadyExists(f"Account {account_id} already exists.")
        raise RuntimeError("could not allocate an account id")

    def list_accounts(self) -> list[dict]:
        with self._db.read() as conn:
            return [{"AccountId": r.account_id, "Name": r.name, "CreatedAt": r.created_at}
                    for r in conn.execute(sa.select(schema.accounts).order_by(schema.accounts.c.account_id))]

    def _check_detached(self, conn, ptype: str, pid: str) -> None:
        a, i = t.iam_attachments.c, t.iam_inline_policies.c
        if conn.execute(sa.select(a.policy_id).where(a.principal_type == ptype, a.principal_id == pid)).first():
            raise DeleteConflict("Cannot delete entity, must detach all policies first.")
        if conn.execute(sa.select(i.name).where(i.principal_type == ptype, i.principal_id == pid)).first():
            raise DeleteConflict("Cannot delete entity, must delete policies first.")

    # ---------------------------------------------------------------- permissions boundaries
    def _boundary_policy(self, conn, account_id: str, arn: str):
        """A boundary must be a managed policy this account can see (its own or AWS's)."""
        p = t.iam_policies.c
        row = conn.execute(sa.select(t.iam_policies).where(p.arn == arn)).first()
        if row is None or row.account_id not in (account_id, AWS_ACCOUNT):
            raise NoSuchEntity(f"Scope ARN: {arn} does not exist or is not attachable.")
        return row

    @staticmethod
    def _boundary_count(conn, arn: str, account_id: str | None = None) -> int:
        n = 0
        for table in (t.iam_users, t.iam_roles):
            q = sa.select(sa.func.count()).select_from(table).where(table.c.permissions_boundary == arn)
            if account_id is not None:
                q = q.where(table.c.account_id == account_id)
            n += conn.execute(q).scalar()
        return n

    # ---------------------------------------------------------------- what authorization reads
    def principal_policies(self, account_id: str, principal_arn: str, access_key_id: str = "") -> PrincipalPolicies:
        """Identity policies, permissions boundary, session policies and tags of a user or role
        session (iam/principals.py: a session's role is found by the id it was issued for)."""
        with self._db.read() as conn:
            return load_principal(conn, account_id, principal_arn, access_key_id)

    def identity_policies(self, account_id: str, principal_arn: str, access_key_id: str = "") -> list[Policy]:
        return list(self.principal_policies(account_id, principal_arn, access_key_id).identity)
