"""What authorization needs to know about a caller, read from IAM's tables in one go.

    found = load_principal(conn, account_id, principal_arn, access_key_id)

- a user: its identity-based policies (attached managed + inline), its permissions boundary (the
  default version of the managed policy named by `permissions_boundary`) and its tags;
- a role session: the same for its role, looked up by the role's unique id (`AROA…`) recorded
  with the session, never by name — a role deleted (and maybe recreated under the same name) does
  not lend its policies to an old session's keys (`exists` is False then, and every request is
  refused) — plus what the session was created with: SourceIdentity, issue time, session
  policies (inline + managed ARNs) and session tags (which override the role's tags of the same key),
  and for Lambda's execution-role sessions the function they were issued to (lambda:SourceFunctionArn).

Pure reads on a connection; the caching lives in iam/authz.py (keyed by Directory.generation).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import sqlalchemy as sa

from lambdalet.iam import tables as t
from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy


@dataclass(frozen=True)
class PrincipalPolicies:
    exists: bool                                   # False: the user / the session's role is gone
    identity: tuple[Policy, ...] = ()
    boundary: Policy | None = None
    session_policies: tuple[Policy, ...] | None = None   # None: the session was given none
    tags: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)   # aws:SourceIdentity, aws:TokenIssueTime
    transitive_tags: Mapping[str, str] = field(default_factory=dict)   # passed on by role chaining


MISSING = PrincipalPolicies(False)


def tags_dict(raw: str | None) -> dict[str, str]:
    try:
        items = json.loads(raw or "[]")
    except ValueError:
        return {}
    return {x["Key"]: x.get("Value", "") for x in items if isinstance(x, dict) and "Key" in x}


def managed_document(conn, arn: str, label: str | None = None) -> Policy | None:
    """The default version of a managed policy, parsed; None when it does not exist (or no longer parses)."""
    p, v = t.iam_policies.c, t.iam_policy_versions.c
    row = conn.execute(sa.select(v.document).select_from(t.iam_policies.join(
        t.iam_policy_versions, sa.and_(v.policy_id == p.id, v.version_id == p.default_version)))
        .where(p.arn == arn)).first()
    if row is None:
        return None
    try:
        return parse_policy(row.document, "identity", label=label or arn)
    except MalformedPolicy:
        return None


def _identity(conn, ptype: str, principal_id: str) -> tuple[Policy, ...]:
    a, p, v, i = t.iam_attachments.c, t.iam_policies.c, t.iam_policy_versions.c, t.iam_inline_policies.c
    managed = conn.execute(sa.select(p.arn, v.document).select_from(
        t.iam_attachments.join(t.iam_policies, p.id == a.policy_id)
        .join(t.iam_policy_versions, sa.and_(v.policy_id == p.id, v.version_id == p.default_version)))
        .where(a.principal_type == ptype, a.principal_id == principal_id)).all()
    inline = conn.execute(sa.select(i.name, i.document).where(i.principal_type == ptype,
                                                              i.principal_id == principal_id)).all()
    out = []
    for label, doc in [(m.arn, m.document) for m in managed] + [(f"inline:{x.name}", x.document) for x in inline]:
        try:
            out.append(parse_policy(doc, "identity", label=label))
        except MalformedPolicy:     # only a hand-edited database could hold one
            continue
    return tuple(out)


def _boundary(conn, arn: str | None) -> Policy | None:
    if not arn:
        return None
    # A boundary whose policy vanished allows nothing (never everything): DeletePolicy refuses a
    # policy in use as a boundary, so this only guards a hand-edited database.
    return managed_document(conn, arn, label=f"boundary:{arn}") or Policy((), label=f"boundary:{arn}")


def _session(conn, access_key_id: str):
    s = t.iam_sessions.c
    return conn.execute(sa.select(t.iam_sessions).where(s.access_key_id == access_key_id)).first()


def _session_policies(conn, raw: str | None) -> tuple[Policy, ...] | None:
    if not raw:
        return None
    doc = json.loads(raw)
    out: list[Policy] = []
    if doc.get("Policy"):
        try:
            out.append(parse_policy(doc["Policy"], "identity", label="session-policy"))
        except MalformedPolicy:
            pass
    for arn in doc.get("PolicyArns") or ():
        found = managed_document(conn, arn, label=f"session-policy:{arn}")
        if found is not None:
            out.append(found)
    return tuple(out)


def load_principal(conn, account_id: str, principal_arn: str, access_key_id: str = "") -> PrincipalPolicies:
    parts = principal_arn.split(":", 5)
    if len(parts) != 6:
        return MISSING
    resource = parts[5]
    if resource.startswith("assumed-role/"):
        session = _session(conn, access_key_id) if access_key_id else None
        if session is None:
            return MISSING
        role = conn.execute(sa.select(t.iam_roles).where(t.iam_roles.c.id == session.role_id)).first()
        if role is None or role.account_id != account_id or role.name != resource.split("/")[1]:
            return MISSING     # deleted (or recreated: a new id) since the session was issued
        tag_doc = json.loads(session.tags) if session.tags else {}
        session_tags = tag_doc.get("Tags", {})
        context: dict[str, Any] = {"aws:TokenIssueTime": dt.datetime.fromtimestamp(session.created_at,
                                                                                   dt.timezone.utc)}
        if session.source_identity:
            context["aws:SourceIdentity"] = session.source_identity
        if session.source_function_arn:      # an execution-role session Lambda issued to this function
            context["lambda:SourceFunctionArn"] = session.source_function_arn
        return PrincipalPolicies(True, _identity(conn, "role", role.id), _boundary(conn, role.permissions_boundary),
                                 _session_policies(conn, session.session_policies),
                                 {**tags_dict(role.tags), **session_tags}, context,
                                 {k: v for k, v in session_tags.items() if k in set(tag_doc.get("Transitive", ()))})
    if resource.startswith("user/"):
        row = conn.execute(sa.select(t.iam_users).where(t.iam_users.c.arn == principal_arn)).first()
        if row is None:   # the ARN may have been written without the user's path
            row = conn.execute(sa.select(t.iam_users).where(
                t.iam_users.c.account_id == account_id,
                t.iam_users.c.name_lower == resource.rsplit("/", 1)[-1].lower())).first()
        if row is None or row.account_id != account_id:
            return MISSING
        return PrincipalPolicies(True, _identity(conn, "user", row.id), _boundary(conn, row.permissions_boundary),
                                 None, tags_dict(row.tags))
    if resource.startswith("role/"):     # a role ARN itself (tests and tools): no session facts
        row = conn.execute(sa.select(t.iam_roles).where(
            t.iam_roles.c.account_id == account_id,
            t.iam_roles.c.name_lower == resource.rsplit("/", 1)[-1].lower())).first()
        if row is None:
            return MISSING
        return PrincipalPolicies(True, _identity(conn, "role", row.id), _boundary(conn, row.permissions_boundary),
                                 None, tags_dict(row.tags))
    return MISSING
