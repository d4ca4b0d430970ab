"""IAM users (names unique per account regardless of case) and the access keys they hold (counted and
listed here; IdentityStore creates and seals them).
"""
from __future__ import annotations

import json

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.directory_core import DirectoryCore
from lambdalet.iam.directory_rows import (
    _check_path,
    _user,
    new_id,
    user_arn,
)
from lambdalet.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    NoSuchEntity,
)
from lambdalet.store import schema


class Users(DirectoryCore):
    # ---------------------------------------------------------------- users
    def create_user(self, account_id: str, name: str, path: str = "/", tags: list[dict] | None = None,
                    permissions_boundary: str | None = None) -> dict:
        path = _check_path(path)
        now = self._clock()
        with self._begin() as conn:
            if self._find_user(conn, account_id, name) is not None:
                raise EntityAlreadyExists(f"User with name {name} already exists.")
            if permissions_boundary is not None:
                self._boundary_policy(conn, account_id, permissions_boundary)
            uid = new_id("AIDA")
            conn.execute(t.iam_users.insert().values(id=uid, account_id=account_id, name=name, name_lower=name.lower(),
                                                     path=path, arn=user_arn(account_id, name, path),
                                                     tags=json.dumps(tags or []), created_at=now,
                                                     permissions_boundary=permissions_boundary))
            return _user(conn.execute(sa.select(t.iam_users).where(t.iam_users.c.id == uid)).first())

    @staticmethod
    def _find_user(conn, account_id: str, name: str):
        return conn.execute(sa.select(t.iam_users).where(t.iam_users.c.account_id == account_id,
                                                         t.iam_users.c.name_lower == name.lower())).first()

    def _user_row(self, conn, account_id: str, name: str):
        row = self._find_user(conn, account_id, name)
        if row is None:
            raise NoSuchEntity(f"The user with name {name} cannot be found.")
        return row

    def get_user(self, account_id: str, name: str) -> dict:
        with self._db.read() as conn:
            return _user(self._user_row(conn, account_id, name))

    def find_user_by_arn(self, arn: str) -> dict | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(t.iam_users).where(t.iam_users.c.arn == arn)).first()
            return _user(row) if row else None

    def list_users(self, account_id: str, path_prefix: str = "/") -> list[dict]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t.iam_users).where(t.iam_users.c.account_id == account_id)
                                .order_by(t.iam_users.c.name_lower)).all()
        return [_user(r) for r in rows if r.path.startswith(path_prefix or "/")]

    def delete_user(self, account_id: str, name: str) -> None:
        with self._begin() as conn:
            row = self._user_row(conn, account_id, name)
            k = schema.access_keys.c
            if conn.execute(sa.select(k.access_key_id).where(k.user_id == row.id)).first():
                raise DeleteConflict("Cannot delete entity, must delete access keys first.")
            self._check_detached(conn, "user", row.id)
            conn.execute(t.iam_users.delete().where(t.iam_users.c.id == row.id))

    @staticmethod
    def count_user_keys(conn, user_id: str) -> int:
        k = schema.access_keys.c
        return conn.execute(sa.select(sa.func.count()).select_from(schema.access_keys)
                            .where(k.user_id == user_id, k.expires_at.is_(None))).scalar()

    def list_access_keys(self, account_id: str, name: str) -> list[dict]:
        with self._db.read() as conn:
            row = self._user_row(conn, account_id, name)
            k = schema.access_keys.c
            keys = conn.execute(sa.select(k.access_key_id, k.status, k.created_at)
                                .where(k.user_id == row.id, k.account_id == account_id)
                                .order_by(k.created_at)).all()
        return [{"UserName": row.name, "AccessKeyId": r.access_key_id, "Status": r.status, "CreateDate": r.created_at}
                for r in keys]

    def access_key_owner(self, account_id: str, access_key_id: str) -> str | None:
        """The user name owning a long-term key in this account, or None."""
        k = schema.access_keys.c
        with self._db.read() as conn:
            r = conn.execute(sa.select(t.iam_users.c.name).select_from(
                schema.access_keys.join(t.iam_users, t.iam_users.c.id == k.user_id))
                .where(k.access_key_id == access_key_id, k.account_id == account_id)).first()
        return r.name if r else None
