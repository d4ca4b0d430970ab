"""IAM roles and their trust policies.
"""
from __future__ import annotations

import json

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.directory_core import DirectoryCore
from lambdalet.iam.directory_rows import (
    _check_document,
    _check_path,
    _role,
    new_id,
    role_arn,
)
from lambdalet.iam.errors import (
    EntityAlreadyExists,
    InvalidInput,
    NoSuchEntity,
)
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy


class Roles(DirectoryCore):
    # ---------------------------------------------------------------- roles
    def create_role(self, account_id: str, name: str, trust_policy: str, path: str = "/", description: str = "",
                    max_session_duration: int = 3600, tags: list[dict] | None = None,
                    permissions_boundary: str | None = None) -> dict:
        path = _check_path(path)
        _check_document(trust_policy, "trust")
        if not 3600 <= max_session_duration <= 43200:
            raise InvalidInput("The requested MaxSessionDuration exceeds the allowed range: 3600 to 43200 seconds.")
        now = self._clock()
        with self._begin() as conn:
            if self._find_role(conn, account_id, name) is not None:
                raise EntityAlreadyExists(f"Role with name {name} already exists.")
            if permissions_boundary is not None:
                self._boundary_policy(conn, account_id, permissions_boundary)
            rid = new_id("AROA")
            conn.execute(t.iam_roles.insert().values(
                id=rid, account_id=account_id, name=name, name_lower=name.lower(), path=path,
                arn=role_arn(account_id, name, path), trust_policy=trust_policy, description=description or "",
                max_session_duration=max_session_duration, tags=json.dumps(tags or []), created_at=now,
                permissions_boundary=permissions_boundary))
            return _role(conn.execute(sa.select(t.iam_roles).where(t.iam_roles.c.id == rid)).first())

    @staticmethod
    def _find_role(conn, account_id: str, name: str):
        return conn.execute(sa.select(t.iam_roles).where(t.iam_roles.c.account_id == account_id,
                                                         t.iam_roles.c.name_lower == name.lower())).first()

    def _role_row(self, conn, account_id: str, name: str):
        row = self._find_role(conn, account_id, name)
        if row is None:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
        return row

    def get_role(self, account_id: str, name: str) -> dict:
        with self._db.read() as conn:
            return _role(self._role_row(conn, account_id, name))

    def find_role(self, account_id: str, name: str) -> dict | None:
        with self._db.read() as conn:
            row = self._find_role(conn, account_id, name)
            return _role(row) if row else None

    def list_roles(self, account_id: str, path_prefix: str = "/") -> list[dict]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t.iam_roles).where(t.iam_roles.c.account_id == account_id)
                                .order_by(t.iam_roles.c.name_lower)).all()
        return [_role(r) for r in rows if r.path.startswith(path_prefix or "/")]

    def update_trust_policy(self, account_id: str, name: str, trust_policy: str) -> None:
        _check_document(trust_policy, "trust")
        with self._begin() as conn:
            row = self._role_row(conn, account_id, name)
            conn.execute(t.iam_roles.update().where(t.iam_roles.c.id == row.id).values(trust_policy=trust_policy))

    def delete_role(self, account_id: str, name: str) -> None:
        with self._begin() as conn:
            row = self._role_row(conn, account_id, name)
            self._check_detached(conn, "role", row.id)
            conn.execute(t.iam_roles.delete().where(t.iam_roles.c.id == row.id))

    def trust_policy(self, account_id: str, role_name: str) -> tuple[dict, Policy] | None:
        role = self.find_role(account_id, role_name)
        if role is None:
            return None
        try:
            return role, parse_policy(role["AssumeRolePolicyDocument"], "trust", label=role["Arn"])
        except MalformedPolicy:
            return role, Policy(())
