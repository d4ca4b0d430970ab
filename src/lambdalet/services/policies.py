"""Resource-based policies on functions: AddPermission, RemovePermission, GetPolicy.

One policy document per function and qualifier (a version or an alias; "" = the function itself),
stored as the JSON GetPolicy returns (`{"Version":"2012-10-17","Id":"default","Statement":[...]}`),
with its own RevisionId for the preconditions AddPermission/RemovePermission accept. Rows are
keyed by the function's internal id, so a function deleted and recreated under the same name
never inherits the old grants (the row also cascades away with the function; version and alias
policies are pruned when those are deleted).

Authorization reads them through `policy_for` (iam/request_map.py): a statement naming another
account (`Principal` = its id -> `arn:aws:iam::<id>:root`) is what lets that account's principals
reach the function, as in AWS.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, NamedTuple

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import (AwsError, InvalidParameterValueException, PreconditionFailedException,
                                     ResourceConflictException, ResourceNotFoundException)
from lambdalet.services import records
from lambdalet.services.arns import Scope, merge_qualifier, parse_function_ref
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error
from lambdalet.store import schema

P = schema.function_policies
MAX_POLICY_BYTES = 20480
_SID_RE = re.compile(r"[a-zA-Z0-9_-]{1,100}")
_ACTION_RE = re.compile(r"(lambda:[*]|lambda:[a-zA-Z]+|[*])")
_ACCOUNT_RE = re.compile(r"\d{12}")
_ORG_RE = re.compile(r"o-[a-z0-9]{10,32}")
_SOURCE_ARN_RE = re.compile(r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)")
# The function's (or alias's) RevisionId guards its policy: AWS points to GetFunction/GetAlias.
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
NO_POLICY = "No policy is associated with the given resource."
NOT_FOUND = "The resource you requested does not exist."


class PolicyLengthExceededException(AwsError):
    code, status, sender_fault = "PolicyLengthExceededException", 400, True


# ---------------------------------------------------------------- reading (also for authorization)


def _qualifier_key(qualifier: str | None) -> str:
    return "" if qualifier in (None, "", records.LATEST) else qualifier


def policy_row(conn, function_id: str, qualifier: str | None):
    return conn.execute(sa.select(P).where(P.c.function_id == function_id,
                                           P.c.qualifier == _qualifier_key(qualifier))).first()


def policy_for(conn, account_id: str, region: str, name: str, qualifier: str | None) -> str | None:
    """The policy document in force for a function ARN (qualified or not), or None. One query."""
    F = records.F
    row = conn.execute(sa.select(P.c.document).select_from(P.join(F, F.c.id == P.c.function_id))
                       .where(F.c.account_id == account_id, F.c.region == region, F.c.name == name,
                              P.c.qualifier == _qualifier_key(qualifier))).first()
    return row.document if row else None


def function_facts(db):
    """What authorization needs to know about a function ARN, for iam/request_map.py:
    (region, account, name, qualifier) -> (policy document or None, the function's tags)."""
    from lambdalet.services.arns import function_arn
    from lambdalet.services.tags import read_tags

    def facts(region: str, account_id: str, name: str, qualifier: str | None):
        with db.read() as conn:
            return (policy_for(conn, account_id, region, name, qualifier),
                    read_tags(conn, function_arn(region, account_id, name)))
    return facts


def prune(conn) -> None:
    """Drop the policies of versions and aliases that no longer exist (after a delete)."""
    V, A = records.V, records.A
    conn.execute(P.delete().where(
        P.c.qualifier != "",
        ~sa.exists().where(V.c.function_id == P.c.function_id, V.c.version == P.c.qualifier),
        ~sa.exists().where(A.c.function_id == P.c.function_id, A.c.name == P.c.qualifier)))


# ---------------------------------------------------------------- the operations


_ALIAS_NAME_RE = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9_-]+")


def _target(conn, ctx: RequestContext, params: dict, action: str, *, missing=None):
    """(scope, function row, qualifier or None, resource ARN the statements name, the row whose
    RevisionId guards the policy: $LATEST's, the alias's or the version's).
    missing: the error for a function that does not exist (AWS's words differ per operation)."""
    scope = Scope.of(ctx)
    ref = merge_qualifier(parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn,
                                             action=action), params.get("Qualifier"))
    fn = records.find_function(conn, scope, ref.name)
    if fn is None:
        raise missing(scope, ref.name) if missing else records.function_not_found(scope, ref.name)
    if ref.qualifier in (None, records.LATEST):
        guard = _Guard(records.V, records.find_version(conn, fn.id, records.LATEST))
        return scope, fn, None, scope.function_arn(fn.name), guard
    if _ALIAS_NAME_RE.fullmatch(ref.qualifier):
        alias = records.find_alias(conn, fn.id, ref.qualifier)
        if alias is None:
            raise records.alias_not_found(scope, fn.name, ref.qualifier)
        guard = _Guard(records.A, alias)
    else:
        version = records.find_version(conn, fn.id, ref.qualifier)
        if version is None:
            raise records.function_not_found(scope, fn.name, ref.qualifier)
        guard = _Guard(None, version)          # published versions are immutable rows: never touched
    return scope, fn, ref.qualifier, scope.function_arn(fn.name, ref.qualifier), guard


class _Guard(NamedTuple):
    """The row whose RevisionId guards a policy, and its table (None: never changes)."""
    table: sa.Table | None
    row: Any

    @property
    def revision_id(self) -> str:
        return self.row.revision_id


def _touch(conn, guard: _Guard) -> None:
    """A policy change is a change of the function (or alias): it gets a new RevisionId."""
    if guard.table is not None:
        conn.execute(guard.table.update().where(guard.table.c.id == guard.row.id)
                     .values(revision_id=records.new_revision()))


def _no_policy_for(scope: Scope, name: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"No policy found for: {scope.function_arn(name)}")


def _principal(value) -> dict | str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise constraint_error(value, "principal", r"Member must satisfy regular expression pattern: [^\s]+")
    if value == "*":
        return "*"
    if _ACCOUNT_RE.fullmatch(value):
        return {"AWS": f"arn:aws:iam::{value}:root"}
    if value.startswith("arn:"):
        return {"AWS": value}
    if re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com(\.cn)?", value):
        return {"Service": value}
    raise InvalidParameterValueException("The provided principal was invalid. Please check the principal and "
                                         "try again.")


def _conditions(params: dict) -> dict:
    cond: dict[str, dict] = {}

    def add(op: str, key: str, value: str) -> None:
        cond.setdefault(op, {})[key] = value

    if params.get("SourceAccount") is not None:
        if not _ACCOUNT_RE.fullmatch(str(params["SourceAccount"])):
            raise constraint_error(params["SourceAccount"], "sourceAccount",
                                   r"Member must satisfy regular expression pattern: ^\d{12}$")
        add("StringEquals", "AWS:SourceAccount", params["SourceAccount"])
    if params.get("EventSourceToken") is not None:
        add("StringEquals", "lambda:EventSourceToken", params["EventSourceToken"])
    if params.get("PrincipalOrgID") is not None:
        if not _ORG_RE.fullmatch(str(params["PrincipalOrgID"])):
            raise constraint_error(params["PrincipalOrgID"], "principalOrgID",
                                   "Member must satisfy regular expression pattern: ^o-[a-z0-9]{10,32}$")
        add("StringEquals", "aws:PrincipalOrgID", params["PrincipalOrgID"])
    if params.get("FunctionUrlAuthType") is not None:
        if params["FunctionUrlAuthType"] not in ("NONE", "AWS_IAM"):
            raise constraint_error(params["FunctionUrlAuthType"], "functionUrlAuthType",
                                   "Member must satisfy enum value set: [NONE, AWS_IAM]")
        add("StringEquals", "lambda:FunctionUrlAuthType", params["FunctionUrlAuthType"])
    if params.get("InvokedViaFunctionUrl"):
        add("Bool", "lambda:InvokedViaFunctionUrl", "true")
    if params.get("SourceArn") is not None:
        if not _SOURCE_ARN_RE.fullmatch(str(params["SourceArn"])):
            raise constraint_error(params["SourceArn"], "sourceArn", "Member must satisfy regular expression "
                                   r"pattern: arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:"
                                   r"(\d{12})?:(.*)")
        add("ArnLike", "AWS:SourceArn", params["SourceArn"])
    return cond


def _statement(params: dict, resource_arn: str) -> dict:
    sid = params.get("StatementId")
    if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
        raise constraint_error(sid, "statementId", "Member must satisfy regular expression pattern: "
                               "([a-zA-Z0-9-_.]+)")
    action = params.get("Action")
    if not isinstance(action, str) or not _ACTION_RE.fullmatch(action):
        raise constraint_error(action, "action", "Member must satisfy regular expression pattern: "
                               "(lambda:[*]|lambda:[a-zA-Z]+|[*])")
    st = {"Sid": sid, "Effect": "Allow", "Principal": _principal(params.get("Principal")), "Action": action,
          "Resource": resource_arn}
    cond = _conditions(params)
    if cond:
        st["Condition"] = cond
    return st


def _check_revision(guard, params: dict) -> None:
    """AddPermission's and RemovePermission's RevisionId is the function's (or alias's), as GetPolicy
    reports it."""
    wanted = params.get("RevisionId")
    if wanted and guard.revision_id != wanted:
        raise PreconditionFailedException(REVISION_MISMATCH)


def add_permission(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.begin() as conn:
        _scope, fn, qualifier, arn, guard = _target(conn, ctx, params, "AddPermission")
        if params.get("Qualifier") == records.LATEST or (qualifier is None and
                                                           str(params.get("FunctionName", "")).endswith(":$LATEST")):
            raise InvalidParameterValueException("We currently do not support adding policies for $LATEST.")
        statement = _statement(params, arn)
        row = policy_row(conn, fn.id, qualifier)
        _check_revision(guard, params)
        doc = json.loads(row.document) if row else {"Version": "2012-10-17", "Id": "default", "Statement": []}
        if any(s.get("Sid") == statement["Sid"] for s in doc["Statement"]):
            raise ResourceConflictException(f"The statement id ({statement['Sid']}) provided already exists. Please "
                                            "provide a new statement id, or remove the existing statement.")
        doc["Statement"].append(statement)
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) > MAX_POLICY_BYTES:
            raise PolicyLengthExceededException(f"The final policy size ({len(text.encode())}) is bigger than the "
                                                f"limit ({MAX_POLICY_BYTES}).")
        values = {"document": text, "revision_id": records.new_revision(), "updated_at": time.time()}
        if row is None:
            conn.execute(P.insert().values(function_id=fn.id, qualifier=_qualifier_key(qualifier), **values))
        else:
            conn.execute(P.update().where(P.c.function_id == fn.id, P.c.qualifier == row.qualifier).values(**values))
        _touch(conn, guard)
    return {"Statement": json.dumps(statement, separators=(",", ":"))}


def remove_permission(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    sid = params.get("StatementId")
    with deps.db.begin() as conn:
        _scope, fn, qualifier, _arn, guard = _target(conn, ctx, params, "RemovePermission", missing=_no_policy_for)
        row = policy_row(conn, fn.id, qualifier)
        if row is None:
            raise ResourceNotFoundException(NO_POLICY)
        _check_revision(guard, params)
        doc = json.loads(row.document)
        kept = [s for s in doc["Statement"] if s.get("Sid") != sid]
        if len(kept) == len(doc["Statement"]):
            raise ResourceNotFoundException(f"Statement {sid} is not found in resource policy.")
        where = (P.c.function_id == fn.id, P.c.qualifier == row.qualifier)
        if kept:
            doc["Statement"] = kept
            conn.execute(P.update().where(*where).values(document=json.dumps(doc, separators=(",", ":")),
                                                         revision_id=records.new_revision(), updated_at=time.time()))
        else:
            conn.execute(P.delete().where(*where))
        _touch(conn, guard)
    return {}


def get_policy(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        try:
            _scope, fn, qualifier, _arn, guard = _target(conn, ctx, params, "GetPolicy")
        except ResourceNotFoundException as e:
            if not e.message.startswith("Function not found") or not params.get("Qualifier"):
                raise
            raise ResourceNotFoundException(NOT_FOUND) from None    # a version that does not exist
        row = policy_row(conn, fn.id, qualifier)
    if row is None:
        raise ResourceNotFoundException(NOT_FOUND)
    return {"Policy": row.document, "RevisionId": guard.revision_id}
