"""Tags on functions and event source mappings (TagResource, UntagResource, ListTags, and Tags on
CreateFunction / CreateEventSourceMapping).

Tags are keyed by the unqualified function ARN (versions and aliases cannot be tagged, as in AWS) or
by the mapping's ARN (arn:aws:lambda:<region>:<account>:event-source-mapping:<uuid>).
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException, ResourceNotFoundException
from lambdalet.services import records
from lambdalet.services.arns import Scope, parse_function_ref
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error

MAX_TAGS = 50
_TAG_CHARS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
# Python's re has no \p{..}: letters/digits via \w minus '_', spaces via \s, plus AWS's punctuation.
_TAG_RE = re.compile(r"(?:[^\W_]|[\s_.:/=+\-@])*")
_RESOURCE_RE = re.compile(r"arn:(aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                          r"function:(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?")
_ESM_RE = re.compile(r"arn:(aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                     r"event-source-mapping:(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")
# events/esm.py owns the table; only its keys are read here (services/ does not import events/).
_MAPPINGS = sa.table("event_source_mappings", sa.column("uuid"), sa.column("account_id"), sa.column("region"),
                     sa.column("state"))
ESM_NOT_FOUND = "The resource you requested does not exist."
T = records.T


def validate_tags(tags) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidParameterValueException("Tags must be a map of strings.")
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise constraint_error(key, "tags.key", "Member must have length between 1 and 128")
        if not _TAG_RE.fullmatch(key):
            raise constraint_error(key, "tags.key", f"Member must satisfy regular expression pattern: {_TAG_CHARS}")
        if key.lower().startswith("aws:"):
            raise InvalidParameterValueException(f"Tag keys starting with 'aws:' are reserved for AWS use: {key}")
        if not isinstance(value, str) or len(value) > 256:
            raise constraint_error(value, f"tags.{key}", "Member must have length less than or equal to 256")
        if not _TAG_RE.fullmatch(value):
            raise constraint_error(value, f"tags.{key}", f"Member must satisfy regular expression pattern: {_TAG_CHARS}")
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValueException("Number of tags exceeds resource tag limit.")
    return dict(tags)


def read_tags(conn, arn: str) -> dict[str, str]:
    return {r.key: r.value for r in conn.execute(sa.select(T.c.key, T.c.value).where(T.c.resource_arn == arn)
                                                 .order_by(T.c.key))}


def write_tags(conn, arn: str, tags: dict[str, str]) -> None:
    if tags:
        conn.execute(T.delete().where(T.c.resource_arn == arn, T.c.key.in_(list(tags))))
        conn.execute(T.insert(), [{"resource_arn": arn, "key": k, "value": v} for k, v in tags.items()])


def delete_all(conn, arn: str) -> None:
    conn.execute(T.delete().where(T.c.resource_arn == arn))


def _changed(conn, fn) -> None:
    """Tags are part of the function: AWS gives $LATEST a new RevisionId when they change."""
    latest = records.find_version(conn, fn.id, records.LATEST)
    if latest is not None:
        records.touch_latest(conn, latest.id)


def _resource_for(deps: Deps, ctx: RequestContext, conn, resource, action: str):
    """-> (the ARN its tags are kept under, the function row or None for a mapping)."""
    m = _ESM_RE.fullmatch(resource) if isinstance(resource, str) else None
    if m is None:
        scope, fn = _function_for(deps, ctx, conn, resource, action)
        return scope.function_arn(fn.name), fn
    scope = Scope.of(ctx)
    uuid = m["uuid"].lower()
    row = conn.execute(sa.select(_MAPPINGS.c.uuid).where(
        _MAPPINGS.c.uuid == uuid, _MAPPINGS.c.account_id == m["account"], _MAPPINGS.c.region == m["region"],
        _MAPPINGS.c.state != "Deleting")).first()
    if row is None or (m["account"], m["region"]) != (scope.account_id, scope.region):
        raise ResourceNotFoundException(ESM_NOT_FOUND)
    return f"arn:aws:lambda:{m['region']}:{m['account']}:event-source-mapping:{uuid}", None


def _function_for(deps: Deps, ctx: RequestContext, conn, resource, action: str):
    """Resource must be an unqualified function ARN in the caller's scope -> (scope, function row)."""
    scope = Scope.of(ctx)
    if not isinstance(resource, str) or not _RESOURCE_RE.fullmatch(resource):
        raise constraint_error(resource, "resource", "Member must satisfy regular expression pattern: "
                               r"arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                               r"function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?")
    ref = parse_function_ref(scope, resource, caller_arn=ctx.caller.principal_arn, action=action)
    if ref.qualifier is not None:
        raise InvalidParameterValueException(
            "Tags on function aliases and versions are not supported. Please specify a function ARN.")
    return scope, records.require_function(conn, scope, ref.name)


def tag_resource(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    new = validate_tags(params.get("Tags"))
    if not new:           # AWS's (unhelpful) words for an empty Tags map
        raise InvalidParameterValueException("An error occurred and the request cannot be processed.")
    with deps.db.begin() as conn:
        arn, fn = _resource_for(deps, ctx, conn, params.get("Resource"), "TagResource")
        if len(set(read_tags(conn, arn)) | set(new)) > MAX_TAGS:
            raise InvalidParameterValueException("Number of tags exceeds resource tag limit.")
        write_tags(conn, arn, new)
        if fn is not None:
            _changed(conn, fn)
    return {}


def untag_resource(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    keys = params.get("TagKeys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and 1 <= len(k) <= 128 for k in keys):
        raise constraint_error(keys, "tagKeys", "Member must be a non-empty list of tag keys (1-128 characters)")
    with deps.db.begin() as conn:
        arn, fn = _resource_for(deps, ctx, conn, params.get("Resource"), "UntagResource")
        conn.execute(T.delete().where(T.c.resource_arn == arn, T.c.key.in_(keys)))
        if fn is not None:
            _changed(conn, fn)
    return {}


def list_tags(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        arn, _ = _resource_for(deps, ctx, conn, params.get("Resource"), "ListTags")
        return {"Tags": read_tags(conn, arn)}
