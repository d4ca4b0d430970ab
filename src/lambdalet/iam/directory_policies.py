"""Managed policies (customer and AWS-managed) and their versions (at most MAX_POLICY_VERSIONS).
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.directory_core import DirectoryCore
from lambdalet.iam.directory_rows import (
    AWS_ACCOUNT,
    MAX_POLICY_VERSIONS,
    _check_document,
    _check_path,
    _policy,
    new_id,
    policy_arn,
)
from lambdalet.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    NoSuchEntity,
    UnmodifiableEntity,
)


class ManagedPolicies(DirectoryCore):
    # ---------------------------------------------------------------- managed policies
    def create_policy(self, account_id: str, name: str, document: str, path: str = "/", description: str = "",
                      tags: list[dict] | None = None) -> dict:
        path = _check_path(path)
        _check_document(document, "managed")
        now = self._clock()
        with self._begin() as conn:
            p = t.iam_policies.c
            if conn.execute(sa.select(p.id).where(p.account_id == account_id, p.name_lower == name.lower())).first():
                raise EntityAlreadyExists(f"A policy called {name} already exists. Duplicate names are not allowed.")
            pid = new_id("ANPA")
            conn.execute(t.iam_policies.insert().values(
                id=pid, account_id=account_id, name=name, name_lower=name.lower(), path=path,
                arn=policy_arn(account_id, name, path), description=description or "", default_version="v1",
                next_version=2, tags=json.dumps(tags or []), created_at=now, updated_at=now))
            conn.execute(t.iam_policy_versions.insert().values(policy_id=pid, version_id="v1", document=document,
                                                               created_at=now))
            return _policy(conn.execute(sa.select(t.iam_policies).where(p.id == pid)).first(), 0)

    def _visible_policy(self, conn, account_id: str, arn: str, *, attachable: bool = False):
        p = t.iam_policies.c
        row = conn.execute(sa.select(t.iam_policies).where(p.arn == arn)).first()
        if row is None or row.account_id not in (account_id, AWS_ACCOUNT):
            if attachable:
                raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
            raise NoSuchEntity(f"Policy {arn} was not found.")
        return row

    def _attachment_count(self, conn, policy_id: str, account_id: str | None = None) -> int:
        a = t.iam_attachments.c
        q = sa.select(sa.func.count()).select_from(t.iam_attachments).where(a.policy_id == policy_id)
        if account_id is not None:   # AWS-managed policies: count only this account's attachments
            q = q.where(sa.or_(
                sa.and_(a.principal_type == "user",
                        a.principal_id.in_(sa.select(t.iam_users.c.id).where(t.iam_users.c.account_id == account_id))),
                sa.and_(a.principal_type == "role",
                        a.principal_id.in_(sa.select(t.iam_roles.c.id).where(t.iam_roles.c.account_id == account_id)))))
        return conn.execute(q).scalar()

    def get_policy(self, account_id: str, arn: str) -> dict:
        with self._db.read() as conn:
            row = self._visible_policy(conn, account_id, arn)
            return _policy(row, self._attachment_count(conn, row.id, account_id),
                           self._boundary_count(conn, row.arn, account_id))

    def list_policies(self, account_id: str, scope: str = "All", only_attached: bool = False,
                      path_prefix: str = "/") -> list[dict]:
        p = t.iam_policies.c
        owners: Any = {"All": [account_id, AWS_ACCOUNT], "AWS": [AWS_ACCOUNT], "Local": [account_id]}.get(scope or "All")
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t.iam_policies).where(p.account_id.in_(owners))
                                .order_by(p.name_lower)).all()
            out = []
            for r in rows:
                if not r.path.startswith(path_prefix or "/"):
                    continue
                n = self._attachment_count(conn, r.id, account_id)
                if only_attached and n == 0:
                    continue
                out.append(_policy(r, n))
        return out

    def delete_policy(self, account_id: str, arn: str) -> None:
        with self._begin() as conn:
            row = self._visible_policy(conn, account_id, arn)
            if row.account_id == AWS_ACCOUNT:
                raise UnmodifiableEntity(f"Cannot delete policy {arn} because it is an AWS managed policy.")
            if self._attachment_count(conn, row.id) or self._boundary_count(conn, row.arn):
                raise DeleteConflict("Cannot delete a policy attached to entities.")
            v = t.iam_policy_versions.c
            if conn.execute(sa.select(sa.func.count()).select_from(t.iam_policy_versions)
                            .where(v.policy_id == row.id)).scalar() > 1:
                raise DeleteConflict("This policy has more than one version. Before you delete a policy, you must "
                                     "delete the policy's versions. The default version is deleted with the policy.")
            conn.execute(t.iam_policy_versions.delete().where(v.policy_id == row.id))
            conn.execute(t.iam_policies.delete().where(t.iam_policies.c.id == row.id))

    def get_policy_version(self, account_id: str, arn: str, version_id: str) -> dict:
        with self._db.read() as conn:
            row = self._visible_policy(conn, account_id, arn)
            v = t.iam_policy_versions.c
            ver = conn.execute(sa.select(t.iam_policy_versions).where(v.policy_id == row.id,
                                                                      v.version_id == version_id)).first()
            if ver is None:
                raise NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
            return {"Document": ver.document, "VersionId": ver.version_id,
                    "IsDefaultVersion": ver.version_id == row.default_version, "CreateDate": ver.created_at}

    def list_policy_versions(self, account_id: str, arn: str) -> list[dict]:
        with self._db.read() as conn:
            row = self._visible_policy(conn, account_id, arn)
            v = t.iam_policy_versions.c
            vers = conn.execute(sa.select(t.iam_policy_versions).where(v.policy_id == row.id)
                                .order_by(v.created_at.desc())).all()
        return [{"VersionId": x.version_id, "IsDefaultVersion": x.version_id == row.default_version,
                 "CreateDate": x.created_at} for x in vers]

    def create_policy_version(self, account_id: str, arn: str, document: str, set_default: bool) -> dict:
        _check_document(document, "managed")
        now = self._clock()
        with self._begin() as conn:
            row = self._visible_policy(conn, account_id, arn)
            if row.account_id == AWS_ACCOUNT:
                raise UnmodifiableEntity(f"Cannot modify AWS managed policy {arn}.")
            v = t.iam_policy_versions.c
            n = conn.execute(sa.select(sa.func.count()).select_from(t.iam_policy_versions)
                             .where(v.policy_id == row.id)).scalar()
            if n >= MAX_POLICY_VERSIONS:
                raise LimitExceeded(f"A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you "
                                    "create a new version, you must delete an existing version.")
            vid = f"v{row.next_version}"
            conn.execute(t.iam_policy_versions.insert().values(policy_id=row.id, version_id=vid, document=document,
                                                               created_at=now))
            values: dict[str, Any] = {"next_version": row.next_version + 1, "updated_at": now}
            if set_default:
                values["default_version"] = vid
            conn.execute(t.iam_policies.update().where(t.iam_policies.c.id == row.id).values(**values))
            return {"VersionId": vid, "IsDefaultVersion": bool(set_default), "CreateDate": now}

    def set_default_policy_version(self, account_id: str, arn: str, version_id: str) -> None:
        with self._begin() as conn:
            row = self._visible_policy(conn, account_id, arn)
            if row.account_id == AWS_ACCOUNT:
                raise UnmodifiableEntity(f"Cannot modify AWS managed policy {arn}.")
            v = t.iam_policy_versions.c
            if not conn.execute(sa.select(v.version_id).where(v.policy_id == row.id, v.version_id == version_id)).first():
                raise NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
            conn.execute(t.iam_policies.update().where(t.iam_policies.c.id == row.id)
                         .values(default_version=version_id, updated_at=self._clock()))

    def delete_policy_version(self, account_id: str, arn: str, version_id: str) -> None:
        with self._begin() as conn:
            row = self._visible_policy(conn, account_id, arn)
            if row.account_id == AWS_ACCOUNT:
                raise UnmodifiableEntity(f"Cannot modify AWS managed policy {arn}.")
            if version_id == row.default_version:
                raise DeleteConflict("Cannot delete the default version of a policy.")
            v = t.iam_policy_versions.c
            res = conn.execute(t.iam_policy_versions.delete().where(v.policy_id == row.id, v.version_id == version_id))
            if res.rowcount == 0:
                raise NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
