"""The directory's records and helpers: IAM's ids and ARNs, document and path checks, the rows as
AWS's member names, and the helpers other iam/ modules run on their own connection (identity.py,
organizations.py: ensure_user, ensure_managed_policies, attach_by_arn).
"""
from __future__ import annotations

import json
import secrets
import string
import time

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.errors import (
    InvalidInput,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
)
from lambdalet.iam.managed_policies import AWS_MANAGED
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy
from lambdalet.iam.policy_validation import (
    check_identity_document,
    managed_quota_error,
    trust_quota_error,
)

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
