"""Aliases: named pointers to a version, optionally splitting traffic with one more version.

Routing rules (AWS's): at most one additional version; its weight is in [0, 1]; both versions
must exist; the additional one must be a published version other than the primary, and an alias
that routes to two versions cannot point at $LATEST.
"""
from __future__ import annotations

import json
import re

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException, ResourceConflictException
from lambdalet.services import paging, records, views
from lambdalet.services.arns import VERSION_RE, Scope, parse_function_ref, require_unqualified
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error
from lambdalet.services.validation import description as check_description
from lambdalet.services.validation import revision_id as check_revision
from lambdalet.services.versions import check_revision_id

A, V = records.A, records.V
ALIAS_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
_ALIAS_RE = re.compile(r"(?![0-9]+$)[a-zA-Z0-9_-]{1,128}")


def _alias_name(value, field: str = "name") -> str:
    if not isinstance(value, str) or not _ALIAS_RE.fullmatch(value):
        raise constraint_error(value, field, f"Member must satisfy regular expression pattern: {ALIAS_PATTERN}")
    return value


def _version_member(value, field: str = "functionVersion") -> str:
    if not isinstance(value, str) or not (value == records.LATEST or VERSION_RE.fullmatch(value)):
        raise constraint_error(value, field, r"Member must satisfy regular expression pattern: (\$LATEST|[0-9]+)")
    return value


def _routing(value) -> dict[str, float]:
    """RoutingConfig -> {version: weight} (empty clears routing)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterValueException("RoutingConfig must be an object.")
    weights = value.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict):
        raise InvalidParameterValueException("AdditionalVersionWeights must be a map of version to weight.")
    if len(weights) > 1:
        raise InvalidParameterValueException("Number of items in AdditionalVersionWeights cannot be greater than 1")
    out = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,10}", version):
            raise constraint_error(version, "routingConfig.additionalVersionWeights",
                                   "Map keys must satisfy constraint: [Member must satisfy regular expression "
                                   "pattern: [0-9]+]")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise constraint_error(weight, "routingConfig.additionalVersionWeights",
                                   "Map value must satisfy constraint: [Member must have value between 0.0 and 1.0]")
        out[version] = float(weight)
    return out


def _check_targets(conn, scope: Scope, fn, primary: str, weights: dict[str, float]) -> None:
    if records.find_version(conn, fn.id, primary) is None:
        raise records.function_not_found(scope, fn.name, primary)
    for extra in weights:
        if primary == records.LATEST:
            raise InvalidParameterValueException("$LATEST is not supported for an alias pointing to more than 1 version")
        if extra == primary:
            raise InvalidParameterValueException(
                f"Invalid function version {extra}. Function version {extra} is already included in routing "
                "configuration.")
        if records.find_version(conn, fn.id, extra) is None:
            raise records.function_not_found(scope, fn.name, extra)


def _function(ctx: RequestContext, conn, params: dict, action: str):
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn, action=action)
    name = require_unqualified(ref)
    return scope, records.require_function(conn, scope, name)


def _require_alias(conn, scope: Scope, fn, name: str):
    row = records.find_alias(conn, fn.id, name)
    if row is None:
        raise records.alias_not_found(scope, fn.name, name)
    return row


def create_alias(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    name = _alias_name(params.get("Name"))
    primary = _version_member(params.get("FunctionVersion"))
    description = check_description(params.get("Description", ""))
    weights = _routing(params.get("RoutingConfig"))
    with deps.db.begin() as conn:
        scope, fn = _function(ctx, conn, params, "CreateAlias")
        if records.find_alias(conn, fn.id, name) is not None:
            raise ResourceConflictException(f"Alias already exists: {scope.function_arn(fn.name, name)}")
        _check_targets(conn, scope, fn, primary, weights)
        conn.execute(A.insert().values(function_id=fn.id, name=name, function_version=primary,
                                       description=description, routing=json.dumps(weights) if weights else None,
                                       revision_id=records.new_revision(), created_at=deps.clock()))
        return views.alias(scope, fn, records.find_alias(conn, fn.id, name))


def get_alias(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    name = _alias_name(params.get("Name"))
    with deps.db.read() as conn:
        scope, fn = _function(ctx, conn, params, "GetAlias")
        return views.alias(scope, fn, _require_alias(conn, scope, fn, name))


def update_alias(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    name = _alias_name(params.get("Name"))
    expected_rev = check_revision(params.get("RevisionId"))
    with deps.db.begin() as conn:
        scope, fn = _function(ctx, conn, params, "UpdateAlias")
        row = _require_alias(conn, scope, fn, name)
        check_revision_id(expected_rev, row)
        primary = _version_member(params["FunctionVersion"]) if params.get("FunctionVersion") is not None \
            else row.function_version
        description = check_description(params["Description"]) if "Description" in params else row.description
        weights = (_routing(params["RoutingConfig"]) if "RoutingConfig" in params
                   else json.loads(row.routing or "{}"))
        _check_targets(conn, scope, fn, primary, weights)
        conn.execute(A.update().where(A.c.id == row.id).values(
            function_version=primary, description=description, routing=json.dumps(weights) if weights else None,
            revision_id=records.new_revision()))
        return views.alias(scope, fn, records.find_alias(conn, fn.id, name))


def delete_alias(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    name = _alias_name(params.get("Name"))
    with deps.db.begin() as conn:
        scope, fn = _function(ctx, conn, params, "DeleteAlias")
        # AWS: deleting an alias that does not exist succeeds
        conn.execute(A.delete().where(A.c.function_id == fn.id, A.c.name == name))
    return {}


def list_aliases(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    version = params.get("FunctionVersion")
    if version is not None:
        _version_member(version)
    limit = paging.max_items(params)
    after = paging.decode_marker(params.get("Marker"), "aliases")
    with deps.db.read() as conn:
        scope, fn = _function(ctx, conn, params, "ListAliases")
        q = sa.select(A).where(A.c.function_id == fn.id)
        if version is not None:
            q = q.where(A.c.function_version == version)
        if after is not None:
            if len(after) != 1 or not isinstance(after[0], str):
                raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
            q = q.where(A.c.name > after[0])
        rows = conn.execute(q.order_by(A.c.name).limit(limit + 1)).all()
    rows, marker = paging.page(rows, limit, "aliases", lambda r: [r.name])
    out = {"Aliases": [views.alias(scope, fn, r) for r in rows]}
    if marker:
        out["NextMarker"] = marker
    return out
