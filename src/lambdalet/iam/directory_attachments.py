"""What a user or role holds: attached managed policies, inline policies and a permissions boundary.
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.directory_policies import ManagedPolicies
from lambdalet.iam.directory_roles import Roles
from lambdalet.iam.directory_rows import (
    MAX_MANAGED_POLICIES_PER_ENTITY,
    _check_document,
    attach_by_arn,
)
from lambdalet.iam.directory_users import Users
from lambdalet.iam.errors import (
    LimitExceeded,
    NoSuchEntity,
)
from lambdalet.iam.policy_validation import (
    inline_quota_error,
)


class Attachments(Users, Roles, ManagedPolicies):
    # ---------------------------------------------------------------- attachments
    def _principal(self, conn, account_id: str, ptype: str, name: str):
        return self._user_row(conn, account_id, name) if ptype == "user" else self._role_row(conn, account_id, name)

    def set_boundary(self, account_id: str, ptype: str, name: str, arn: str | None) -> None:
        """Put (arn) or delete (None) a user's or role's permissions boundary."""
        table = t.iam_users if ptype == "user" else t.iam_roles
        with self._begin() as conn:
            row = self._principal(conn, account_id, ptype, name)
            if arn is not None:
                self._boundary_policy(conn, account_id, arn)
            conn.execute(table.update().where(table.c.id == row.id).values(permissions_boundary=arn))

    def attach(self, account_id: str, ptype: str, name: str, arn: str) -> None:
        with self._begin() as conn:
            who = self._principal(conn, account_id, ptype, name)
            self._visible_policy(conn, account_id, arn, attachable=True)
            a = t.iam_attachments.c
            n = conn.execute(sa.select(sa.func.count()).select_from(t.iam_attachments)
                             .where(a.principal_type == ptype, a.principal_id == who.id)).scalar()
            if n >= MAX_MANAGED_POLICIES_PER_ENTITY:
                raise LimitExceeded(f"Cannot exceed quota for PoliciesPer{ptype.capitalize()}: "
                                    f"{MAX_MANAGED_POLICIES_PER_ENTITY}")
            attach_by_arn(conn, ptype, who.id, arn, self._clock())

    def detach(self, account_id: str, ptype: str, name: str, arn: str) -> None:
        with self._begin() as conn:
            who = self._principal(conn, account_id, ptype, name)
            row = self._visible_policy(conn, account_id, arn)
            a = t.iam_attachments.c
            res = conn.execute(t.iam_attachments.delete().where(a.principal_type == ptype, a.principal_id == who.id,
                                                                a.policy_id == row.id))
            if res.rowcount == 0:
                raise NoSuchEntity(f"Policy {arn} was not found.")

    def list_attached(self, account_id: str, ptype: str, name: str, path_prefix: str = "/") -> list[dict]:
        with self._db.read() as conn:
            who = self._principal(conn, account_id, ptype, name)
            a, p = t.iam_attachments.c, t.iam_policies.c
            rows = conn.execute(sa.select(p.name, p.arn, p.path).select_from(
                t.iam_attachments.join(t.iam_policies, p.id == a.policy_id))
                .where(a.principal_type == ptype, a.principal_id == who.id).order_by(p.name_lower)).all()
        return [{"PolicyName": r.name, "PolicyArn": r.arn} for r in rows if r.path.startswith(path_prefix or "/")]

    # ---------------------------------------------------------------- inline policies
    def put_inline(self, account_id: str, ptype: str, name: str, policy_name: str, document: str) -> None:
        _check_document(document, "inline")
        with self._begin() as conn:
            who = self._principal(conn, account_id, ptype, name)
            i = t.iam_inline_policies.c
            others = [r.document for r in conn.execute(sa.select(i.document).where(
                i.principal_type == ptype, i.principal_id == who.id, i.name != policy_name))]
            too_large = inline_quota_error(ptype, who.name, others + [document])
            if too_large:
                raise LimitExceeded(too_large)
            where = (i.principal_type == ptype, i.principal_id == who.id, i.name == policy_name)
            if conn.execute(sa.select(i.name).where(*where)).first():
                conn.execute(t.iam_inline_policies.update().where(*where)
                             .values(document=document, updated_at=self._clock()))
            else:
                conn.execute(t.iam_inline_policies.insert().values(principal_type=ptype, principal_id=who.id,
                                                                   name=policy_name, document=document,
                                                                   updated_at=self._clock()))

    def get_inline(self, account_id: str, ptype: str, name: str, policy_name: str) -> dict:
        with self._db.read() as conn:
            who = self._principal(conn, account_id, ptype, name)
            i = t.iam_inline_policies.c
            row = conn.execute(sa.select(t.iam_inline_policies).where(
                i.principal_type == ptype, i.principal_id == who.id, i.name == policy_name)).first()
        if row is None:
            raise NoSuchEntity(f"The {ptype} policy with name {policy_name} cannot be found.")
        key = "UserName" if ptype == "user" else "RoleName"
        return {key: who.name, "PolicyName": row.name, "PolicyDocument": row.document}

    def delete_inline(self, account_id: str, ptype: str, name: str, policy_name: str) -> None:
        with self._begin() as conn:
            who = self._principal(conn, account_id, ptype, name)
            i = t.iam_inline_policies.c
            res = conn.execute(t.iam_inline_policies.delete().where(
                i.principal_type == ptype, i.principal_id == who.id, i.name == policy_name))
            if res.rowcount == 0:
                raise NoSuchEntity(f"The {ptype} policy with name {policy_name} cannot be found.")

    def list_inline(self, account_id: str, ptype: str, name: str) -> list[str]:
        with self._db.read() as conn:
            who = self._principal(conn, account_id, ptype, name)
            i = t.iam_inline_policies.c
            return [r.name for r in conn.execute(sa.select(i.name).where(
                i.principal_type == ptype, i.principal_id == who.id).order_by(i.name))]
