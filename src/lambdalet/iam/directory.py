"""Users, roles and policies: persistence (iam/tables.py) and the lookups authorization needs.

Returned records are dicts keyed by AWS's member names (`UserName`, `RoleId`, `CreateDate` as
epoch seconds, ...), so iam_service.py stays thin. Names are unique per account regardless of
case. Access keys live in `access_keys` and are created by `IdentityStore` (it alone seals and
unseals secrets); this module only counts and lists them.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import string
import time
from typing import Any, Callable

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    InvalidInput,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
    UnmodifiableEntity,
)
from lambdalet.iam.managed_policies import ADMIN_POLICY_ARN, AWS_MANAGED  # noqa: F401  (re-exported)
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy
from lambdalet.iam.policy_validation import check_identity_document, inline_quota_error, managed_quota_error, \
    trust_quota_error
from lambdalet.iam.principals import PrincipalPolicies, load_principal
from lambdalet.store import schema

AWS_ACCOUNT = "aws"
_ID_ALPHABET = string.ascii_uppercase + string.digits
MAX_POLICY_VERSIONS = 5
MAX_MANAGED_POLICIES_PER_ENTITY = 20

def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


def user_arn(account_id: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account_id}:user{path}{name}"


def role_arn(account_id: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account_id}:role{path}{name}"


def policy_arn(account_id: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account_id}:policy{path}{name}"


def _tags(raw: str) -> list[dict]:
    try:
        return json.loads(raw or "[]")
    except ValueError:
        return []


def _check_document(document: str, kind: str) -> Policy:
    """kind: "trust", "managed" or "inline" (an inline policy's quota is the principal's total: put_inline)."""
    try:
        policy = parse_policy(document, "trust") if kind == "trust" else check_identity_document(document)
    except MalformedPolicy as e:
        raise MalformedPolicyDocument(str(e)) from None
    too_large = trust_quota_error(document) if kind == "trust" else \
        managed_quota_error(document) if kind == "managed" else None
    if too_large:
        raise LimitExceeded(too_large)
    return policy


def _check_path(path: str) -> str:
    path = path or "/"
    if not (path == "/" or (path.startswith("/") and path.endswith("/") and len(path) <= 512)):
        raise InvalidInput("The specified value for path is invalid. It must begin and end with / and contain "
                           "only alphanumeric characters and/or / characters.")
    return path


# ---------------------------------------------------------------- helpers on a connection


def ensure_managed_policies(conn, now: float | None = None) -> None:
    now = time.time() if now is None else now
    have = {r.name for r in conn.execute(sa.select(t.iam_policies.c.name)
                                         .where(t.iam_policies.c.account_id == AWS_ACCOUNT))}
    for name, (path, doc, description) in AWS_MANAGED.items():
        if name in have:
            continue
        pid = new_id("ANPA")
        conn.execute(t.iam_policies.insert().values(
            id=pid, account_id=AWS_ACCOUNT, name=name, name_lower=name.lower(), path=path,
            arn=f"arn:aws:iam::aws:policy{path}{name}", description=description, default_version="v1",
            next_version=2, tags="[]", created_at=now, updated_at=now))
        conn.execute(t.iam_policy_versions.insert().values(policy_id=pid, version_id="v1", document=json.dumps(doc),
                                                           created_at=now))


def ensure_user(conn, account_id: str, name: str, user_id: str, now: float | None = None) -> dict:
    """The user row for a key created outside IAM (the bootstrap administrator); idempotent."""
    row = conn.execute(sa.select(t.iam_users).where(t.iam_users.c.account_id == account_id,
                                                    t.iam_users.c.name_lower == name.lower())).first()
    if row is None:
        now = time.time() if now is None else now
        conn.execute(t.iam_users.insert().values(id=user_id, account_id=account_id, name=name, name_lower=name.lower(),
                                                 path="/", arn=user_arn(account_id, name), tags="[]", created_at=now))
        row = conn.execute(sa.select(t.iam_users).where(t.iam_users.c.id == user_id)).first()
    return _user(row)


def attach_by_arn(conn, principal_type: str, principal_id: str, arn: str, now: float | None = None) -> None:
    pol = conn.execute(sa.select(t.iam_policies.c.id).where(t.iam_policies.c.arn == arn)).first()
    if pol is None:
        raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
    a = t.iam_attachments.c
    exists = conn.execute(sa.select(a.policy_id).where(a.principal_type == principal_type,
                                                       a.principal_id == principal_id, a.policy_id == pol.id)).first()
    if not exists:
        conn.execute(t.iam_attachments.insert().values(principal_type=principal_type, principal_id=principal_id,
                                                       policy_id=pol.id, attached_at=time.time() if now is None else now))


def _boundary_out(out: dict, row) -> None:
    if getattr(row, "permissions_boundary", None):
        out["PermissionsBoundary"] = {"PermissionsBoundaryType": "Policy",
                                      "PermissionsBoundaryArn": row.permissions_boundary}


def _user(row) -> dict:
    out = {"Path": row.path, "UserName": row.name, "UserId": row.id, "Arn": row.arn, "CreateDate": row.created_at}
    _boundary_out(out, row)
    tags = _tags(row.tags)
    if tags:
        out["Tags"] = tags
    return out


def _role(row) -> dict:
    out = {"Path": row.path, "RoleName": row.name, "RoleId": row.id, "Arn": row.arn, "CreateDate": row.created_at,
           "AssumeRolePolicyDocument": row.trust_policy, "MaxSessionDuration": row.max_session_duration,
           "RoleLastUsed": {}}
    if row.description:
        out["Description"] = row.description
    _boundary_out(out, row)
    tags = _tags(row.tags)
    if tags:
        out["Tags"] = tags
    return out


def _policy(row, attachment_count: int, boundary_count: int = 0) -> dict:
    out = {"PolicyName": row.name, "PolicyId": row.id, "Arn": row.arn, "Path": row.path,
           "DefaultVersionId": row.default_version, "AttachmentCount": attachment_count,
           "PermissionsBoundaryUsageCount": boundary_count, "IsAttachable": True, "CreateDate": row.created_at,
           "UpdateDate": row.updated_at}
    if row.description:
        out["Description"] = row.description
    tags = _tags(row.tags)
    if tags:
        out["Tags"] = tags
    return out


class Directory:
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

    def transaction(self):
        return self._begin()

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

    def set_boundary(self, account_id: str, ptype: str, name: str, arn: str | None) -> None:
        """Put (arn) or delete (None) a user's or role's permissions boundary."""
        table = t.iam_users if ptype == "user" else t.iam_roles
        with self._begin() as conn:
            row = self._principal(conn, account_id, ptype, name)
            if arn is not None:
                self._boundary_policy(conn, account_id, arn)
            conn.execute(table.update().where(table.c.id == row.id).values(permissions_boundary=arn))

    @staticmethod
    def _boundary_count(conn, arn: str, account_id: str | None = None) -> int:
        n = 0
        for table in (t.iam_users, t.iam_roles):
            q = sa.select(sa.func.count()).select_from(table).where(table.c.permissions_boundary == arn)
            if account_id is not None:
                q = q.where(table.c.account_id == account_id)
            n += conn.execute(q).scalar()
        return n

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
        owners = {"All": [account_id, AWS_ACCOUNT], "AWS": [AWS_ACCOUNT], "Local": [account_id]}.get(scope or "All")
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

    # ---------------------------------------------------------------- attachments
    def _principal(self, conn, account_id: str, ptype: str, name: str):
        return self._user_row(conn, account_id, name) if ptype == "user" else self._role_row(conn, account_id, name)

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

    # ---------------------------------------------------------------- what authorization reads
    def principal_policies(self, account_id: str, principal_arn: str, access_key_id: str = "") -> PrincipalPolicies:
        """Identity policies, permissions boundary, session policies and tags of a user or role
        session (iam/principals.py: a session's role is found by the id it was issued for)."""
        with self._db.read() as conn:
            return load_principal(conn, account_id, principal_arn, access_key_id)

    def identity_policies(self, account_id: str, principal_arn: str, access_key_id: str = "") -> list[Policy]:
        return list(self.principal_policies(account_id, principal_arn, access_key_id).identity)

    def trust_policy(self, account_id: str, role_name: str) -> tuple[dict, Policy] | None:
        role = self.find_role(account_id, role_name)
        if role is None:
            return None
        try:
            return role, parse_policy(role["AssumeRolePolicyDocument"], "trust", label=role["Arn"])
        except MalformedPolicy:
            return role, Policy(())
