"""Published versions: immutable copies of $LATEST (PublishVersion, ListVersionsByFunction).

A version row is written once and never updated; the data plane can cache it by (function, version).
Publishing an unchanged $LATEST returns the newest existing version instead of a copy, as AWS does.
"""
from __future__ import annotations

import json

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import (InvalidParameterValueException, PreconditionFailedException,
                                     ResourceConflictException)
from lambdalet.services import paging, records, states, views
from lambdalet.services.arns import VERSION_RE, Scope, parse_function_ref, require_unqualified
from lambdalet.services.deps import Deps
from lambdalet.services.envvars import open_env, seal_env
from lambdalet.services.validation import description as check_description
from lambdalet.services.validation import revision_id as check_revision

F, V = records.F, records.V
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")


def check_revision_id(expected: str | None, row) -> None:
    if expected is not None and expected != row.revision_id:
        raise PreconditionFailedException(REVISION_MISMATCH)


def _content(deps: Deps, fn, row) -> tuple:
    """What makes two versions 'the same' for publishing: code, config (minus Description), env."""
    cfg = records.config_of(row)
    cfg.pop("Description", None)
    return row.code_sha256, records.dump_config(cfg), open_env(deps.keyring, fn.id, row.version, row.env_sealed)


def publish(deps: Deps, conn, fn, latest, description: str | None = None, *, state: str = "Active"):
    """Inside the caller's write transaction: -> the version row (new, or the unchanged newest).
    state: Pending when published with a create or update still in progress (services/states.py)."""
    newest = conn.execute(sa.select(V).where(V.c.function_id == fn.id, V.c.version != records.LATEST)
                          .order_by(V.c.version_num.desc()).limit(1)).first()
    if newest is not None and _content(deps, fn, newest) == _content(deps, fn, latest):
        return newest
    # FOR UPDATE: two publishers on PostgreSQL must not take the same number (SQLite: BEGIN IMMEDIATE).
    number = conn.execute(sa.select(F.c.next_version).where(F.c.id == fn.id).with_for_update()).scalar_one()
    conn.execute(F.update().where(F.c.id == fn.id).values(next_version=number + 1))
    version = str(number)
    cfg = records.config_of(latest)
    if description is not None:
        cfg["Description"] = description
    # Re-seal under the new version's AAD: a sealed value is bound to exactly one version row.
    env = open_env(deps.keyring, fn.id, records.LATEST, latest.env_sealed)
    conn.execute(V.insert().values(
        function_id=fn.id, version=version, version_num=number, config=records.dump_config(cfg),
        env_sealed=seal_env(deps.keyring, fn.id, version, env, cfg.get("KMSKeyArn")), code_sha256=latest.code_sha256,
        code_size=latest.code_size, revision_id=records.new_revision(), last_modified=deps.clock(),
        state=state, last_update_status="Successful"))
    records.touch_latest(conn, latest.id)
    return records.find_version(conn, fn.id, version)


def publish_version(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn,
                             action="PublishVersion")
    name = require_unqualified(ref)
    description = check_description(params["Description"]) if "Description" in params else None
    expected_rev = check_revision(params.get("RevisionId"))
    if params.get("PublishTo"):
        raise InvalidParameterValueException("lambdalet does not support PublishTo.")
    with deps.db.begin() as conn:
        fn = records.require_function(conn, scope, name)
        states.settle(conn, fn.id)     # publishing reads $LATEST's code: its create or update completes first
        latest = records.find_version(conn, fn.id, records.LATEST)
        sha = params.get("CodeSha256")
        if sha is not None and sha != views.code_sha256_b64(latest.code_sha256):
            raise InvalidParameterValueException(
                f"CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST "
                f"({views.code_sha256_b64(latest.code_sha256)}). Please try again with the CodeSHA256 in $LATEST.")
        check_revision_id(expected_rev, latest)
        row = publish(deps, conn, fn, latest, description)
        return views.configuration(scope, fn, row, open_env(deps.keyring, fn.id, row.version, row.env_sealed))


def list_versions_by_function(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn,
                             action="ListVersionsByFunction")
    name = require_unqualified(ref)
    limit = paging.max_items(params)
    after = paging.decode_marker(params.get("Marker"), "versions")
    with deps.db.read() as conn:
        fn = records.require_function(conn, scope, name)
        q = sa.select(V).where(V.c.function_id == fn.id)
        if after is not None:
            q = q.where(V.c.version_num > int(after[0]))
        rows = conn.execute(q.order_by(V.c.version_num).limit(limit + 1)).all()
        rows, marker = paging.page(rows, limit, "versions", lambda r: [r.version_num])
        items = [views.configuration(scope, fn, r, open_env(deps.keyring, fn.id, r.version, r.env_sealed),
                                     listed=True, qualified_latest=True) for r in rows]
    out = {"Versions": items}
    if marker:
        out["NextMarker"] = marker
    return out


def delete_version(deps: Deps, conn, scope: Scope, fn, qualifier: str) -> None:
    """DeleteFunction with a Qualifier: one published version, unless an alias still routes to it."""
    if qualifier == records.LATEST:
        raise InvalidParameterValueException("$LATEST version cannot be deleted without deleting the function.")
    if not VERSION_RE.fullmatch(qualifier):
        raise InvalidParameterValueException(
            f"Qualifier {qualifier} is not a version number: use DeleteAlias to delete an alias.")
    row = records.find_version(conn, fn.id, qualifier)
    if row is None:          # AWS: deleting a version that does not exist succeeds
        return
    users = [a.name for a in conn.execute(sa.select(records.A).where(records.A.c.function_id == fn.id))
             if a.function_version == qualifier or qualifier in json.loads(a.routing or "{}")]
    if users:
        raise ResourceConflictException(
            f"Unable to delete version because the following aliases reference it: [{', '.join(sorted(users))}]")
    conn.execute(V.delete().where(V.c.id == row.id))
