"""Function URLs, the control plane: Create/Get/Update/Delete/ListFunctionUrlConfigs, as AWS answers them.

A URL belongs to a function's unpublished version ($LATEST: no qualifier) or to one of its aliases,
never to a version number (AWS's rule). Each gets a random 32-character url-id; AWS's endpoint is
`https://<url-id>.lambda-url.<region>.on.aws/`, lambdalet's is the same label under `.localhost`
on this server's own port (`https://<url-id>.lambda-url.<region>.localhost:<port>/`), also served
path-style as `https://<host>:<port>/lambda-url/<url-id>/` (api/function_url.py serves both).

InvokeMode RESPONSE_STREAM URLs stream the function's response as it writes it (api/function_url_stream.py).

`url_lookup(db)` is the data plane's read: url-id -> `UrlTarget` (one indexed query).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import (InvalidParameterValueException, ResourceConflictException,
                                     ResourceNotFoundException)
from lambdalet.services import paging, records, tenancy
from lambdalet.services.arns import Scope, VERSION_RE, merge_qualifier, parse_function_ref, require_unqualified
from lambdalet.services.validation import constraint_error
from lambdalet.store.function_url_tables import function_url_configs as U

AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
URL_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
URL_ID_RE = re.compile(r"[a-z0-9]{32}")
CORS_METHODS = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "*"})
MAX_LIST_ITEMS = 50

FUNCTION_NOT_FOUND = "Function does not exist"
URL_NOT_FOUND = "The resource you requested does not exist."
_QUALIFIER_PATTERN = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"
_VERSION_QUALIFIER_PATTERN = r"(^\$LATEST$)|((?!^[0-9]+$)([a-zA-Z0-9-_]+))"


def url_domain(region: str) -> str:
    """The parent domain of every URL host in a region; the server certificate covers `*.<this>`."""
    return f"lambda-url.{region}.localhost"


def url_host(url_id: str, region: str) -> str:
    return f"{url_id}.{url_domain(region)}"


def public_url(url_id: str, region: str, endpoint: str) -> str:
    """FunctionUrl for a server reachable at `endpoint` (scheme://host:port): same scheme and port."""
    parts = urlsplit(endpoint)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'https'}://{url_host(url_id, region)}{port}/"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class UrlTarget:
    """What the data plane needs to serve one URL."""
    url_id: str
    account_id: str
    region: str
    function_name: str
    qualifier: str | None            # None: $LATEST; else the alias name
    auth_type: str
    invoke_mode: str
    cors: dict | None

    @property
    def function_arn(self) -> str:
        return Scope(self.account_id, self.region).function_arn(self.function_name, self.qualifier)


def url_lookup(db) -> Callable[[str], UrlTarget | None]:
    F = records.F

    def lookup(url_id: str) -> UrlTarget | None:
        if not URL_ID_RE.fullmatch(url_id or ""):
            return None
        with db.read() as conn:
            row = conn.execute(sa.select(U, F.c.account_id, F.c.region, F.c.name)
                               .select_from(U.join(F, F.c.id == U.c.function_id))
                               .where(U.c.url_id == url_id)).first()
        if row is None:
            return None
        return UrlTarget(row.url_id, row.account_id, row.region, row.name, row.qualifier or None, row.auth_type,
                         row.invoke_mode, json.loads(row.cors) if row.cors else None)
    return lookup


# ---------------------------------------------------------------- validation


def _auth_type(value, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidParameterValueException("1 validation error detected: Value null at 'authType' failed to "
                                                 "satisfy constraint: Member must not be null")
        return None
    if value not in AUTH_TYPES:
        raise constraint_error(value, "authType", "Member must satisfy enum value set: [NONE, AWS_IAM]")
    return value


def _invoke_mode(value) -> str | None:
    if value is None:
        return None
    if value not in INVOKE_MODES:
        raise constraint_error(value, "invokeMode", "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]")
    return value


def _strings(value, field: str, max_items: int, min_len: int, max_len: int) -> list[str]:
    if len(value) > max_items:
        raise constraint_error(value, field, f"Member must have length less than or equal to {max_items}")
    for item in value:
        if not min_len <= len(item) <= max_len:
            raise constraint_error(value, field, "Member must satisfy constraint: [Member must have length less "
                                   f"than or equal to {max_len}, Member must have length greater than or equal "
                                   f"to {min_len}]")
    return list(value)


def _cors(value) -> dict | None:
    """The Cors structure as configured (types were checked against the model by the protocol)."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    if "AllowCredentials" in value:
        out["AllowCredentials"] = value["AllowCredentials"]
    if "AllowHeaders" in value:
        out["AllowHeaders"] = _strings(value["AllowHeaders"], "cors.allowHeaders", 100, 0, 1024)
    if "AllowMethods" in value:
        methods = _strings(value["AllowMethods"], "cors.allowMethods", 6, 0, 6)
        bad = [m for m in methods if m.upper() not in CORS_METHODS]
        if bad:
            raise InvalidParameterValueException(f"Invalid CORS AllowMethods value: {bad[0]}. Valid values are "
                                                 "GET, PUT, POST, PATCH, DELETE, HEAD and *.")
        out["AllowMethods"] = methods
    if "AllowOrigins" in value:
        out["AllowOrigins"] = _strings(value["AllowOrigins"], "cors.allowOrigins", 100, 1, 253)
    if "ExposeHeaders" in value:
        out["ExposeHeaders"] = _strings(value["ExposeHeaders"], "cors.exposeHeaders", 100, 0, 1024)
    if "MaxAge" in value:
        age = value["MaxAge"]
        if not 0 <= age <= 86400:
            raise constraint_error(age, "cors.maxAge", "Member must have value between 0 and 86400")
        out["MaxAge"] = age
    return out


def _url_qualifier(qualifier: str | None) -> str | None:
    """$LATEST is the unqualified function; version numbers are refused, as AWS refuses them."""
    if qualifier is None:
        return None
    if qualifier == records.LATEST:
        raise constraint_error(qualifier, "qualifier", f"Member must satisfy regular expression pattern: "
                               f"{_QUALIFIER_PATTERN}")
    if VERSION_RE.fullmatch(qualifier):
        raise constraint_error(qualifier, "qualifier", f"Member must satisfy regular expression pattern: "
                               f"{_VERSION_QUALIFIER_PATTERN}")
    return qualifier


# ---------------------------------------------------------------- the operations


class FunctionUrlService:
    """The five operations; bound into the Lambda API next to LambdaService (server/bindings.py)."""

    def __init__(self, db, clock: Callable[[], float] = time.time, *, endpoint: str | None = None):
        self.db = db
        self.clock = clock
        # This server's own https://host:port (known once its socket is bound); None (unit harnesses):
        # a URL is reported on the endpoint the request came in on.
        self.endpoint = endpoint

    # ---- helpers ----
    def _ref(self, ctx: RequestContext, params: dict, action: str):
        scope = Scope.of(ctx)
        ref = merge_qualifier(parse_function_ref(scope, params.get("FunctionName"),
                                                 caller_arn=ctx.caller.principal_arn, action=action),
                              params.get("Qualifier"))
        return scope, ref.name, _url_qualifier(ref.qualifier)

    def _view(self, ctx: RequestContext, scope: Scope, fn_name: str, row, *, with_modified: bool = True,
              with_mode: bool = True) -> dict:
        """with_mode: Get and List answer InvokeMode; Create and Update echo it only when it was given."""
        out = {"FunctionUrl": public_url(row.url_id, scope.region, self.endpoint or ctx.base_url),
               "FunctionArn": scope.function_arn(fn_name, row.qualifier or None),
               "AuthType": row.auth_type,
               "CreationTime": _iso(row.created_at)}
        if with_mode:
            out["InvokeMode"] = row.invoke_mode
        if row.cors is not None:
            out["Cors"] = json.loads(row.cors)
        if with_modified:
            out["LastModifiedTime"] = _iso(row.last_modified)
        return out

    @staticmethod
    def _row(conn, function_id: str, qualifier: str | None):
        return conn.execute(sa.select(U).where(U.c.function_id == function_id,
                                               U.c.qualifier == (qualifier or ""))).first()

    @staticmethod
    def _alias(conn, fn, qualifier: str | None, message: str):
        if qualifier is None:
            return None
        alias = records.find_alias(conn, fn.id, qualifier)
        if alias is None:
            raise ResourceNotFoundException(message)
        return alias

    @staticmethod
    def _function(conn, scope: Scope, name: str, message: str):
        fn = records.find_function(conn, scope, name)
        if fn is None:
            raise ResourceNotFoundException(message)
        return fn

    # ---- operations ----
    def create_function_url_config(self, ctx: RequestContext, params: dict) -> dict:
        auth_type = _auth_type(params.get("AuthType"), required=True)
        invoke_mode = _invoke_mode(params.get("InvokeMode")) or "BUFFERED"
        cors = _cors(params.get("Cors"))
        scope, name, qualifier = self._ref(ctx, params, "CreateFunctionUrlConfig")
        now = self.clock()
        with self.db.begin() as conn:
            fn = self._function(conn, scope, name, FUNCTION_NOT_FOUND)
            if self._row(conn, fn.id, qualifier) is not None:
                raise ResourceConflictException(
                    f"Failed to create function url config for [functionArn = {scope.function_arn(name, qualifier)}]."
                    " Error message:  FunctionUrlConfig exists for this Lambda function")
            alias = self._alias(conn, fn, qualifier, FUNCTION_NOT_FOUND)
            latest = records.find_version(conn, fn.id, records.LATEST)   # TenancyConfig is set once, at create
            if latest is not None:
                tenancy.refuse_feature(records.config_of(latest), "Function URLs")
            url_id = "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))
            conn.execute(U.insert().values(url_id=url_id, function_id=fn.id, qualifier=qualifier or "",
                                           alias_id=alias.id if alias is not None else None, auth_type=auth_type,
                                           invoke_mode=invoke_mode, cors=json.dumps(cors) if cors is not None else None,
                                           created_at=now, last_modified=now))
            row = self._row(conn, fn.id, qualifier)
        return self._view(ctx, scope, fn.name, row, with_modified=False, with_mode="InvokeMode" in params)

    def get_function_url_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._ref(ctx, params, "GetFunctionUrlConfig")
        with self.db.read() as conn:
            fn = self._function(conn, scope, name, URL_NOT_FOUND)
            row = self._row(conn, fn.id, qualifier)
        if row is None:
            raise ResourceNotFoundException(URL_NOT_FOUND)
        return self._view(ctx, scope, fn.name, row)

    def update_function_url_config(self, ctx: RequestContext, params: dict) -> dict:
        auth_type = _auth_type(params.get("AuthType"), required=False)
        invoke_mode = _invoke_mode(params.get("InvokeMode"))
        cors = _cors(params.get("Cors"))
        scope, name, qualifier = self._ref(ctx, params, "UpdateFunctionUrlConfig")
        with self.db.begin() as conn:
            fn = self._function(conn, scope, name, FUNCTION_NOT_FOUND)
            self._alias(conn, fn, qualifier, FUNCTION_NOT_FOUND)
            row = self._row(conn, fn.id, qualifier)
            if row is None:
                raise ResourceNotFoundException(URL_NOT_FOUND)
            changes: dict[str, Any] = {"last_modified": self.clock()}
            if auth_type is not None:
                changes["auth_type"] = auth_type
            if invoke_mode is not None:
                changes["invoke_mode"] = invoke_mode
            if cors is not None:         # a Cors member replaces the whole configuration
                changes["cors"] = json.dumps(cors)
            conn.execute(U.update().where(U.c.url_id == row.url_id).values(**changes))
            row = self._row(conn, fn.id, qualifier)
        return self._view(ctx, scope, fn.name, row, with_mode=invoke_mode is not None)

    def delete_function_url_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._ref(ctx, params, "DeleteFunctionUrlConfig")
        with self.db.begin() as conn:
            fn = self._function(conn, scope, name, URL_NOT_FOUND)
            row = self._row(conn, fn.id, qualifier)
            if row is None:
                raise ResourceNotFoundException(URL_NOT_FOUND)
            # A NONE URL's public permission stays in the function's policy, as AWS leaves it.
            conn.execute(U.delete().where(U.c.url_id == row.url_id))
        return {}

    def list_function_url_configs(self, ctx: RequestContext, params: dict) -> dict:
        limit = paging.max_items(params, default=MAX_LIST_ITEMS, limit=MAX_LIST_ITEMS)
        after = paging.decode_marker(params.get("Marker"), "function-urls")
        scope = Scope.of(ctx)
        name = require_unqualified(parse_function_ref(scope, params.get("FunctionName"),
                                                      caller_arn=ctx.caller.principal_arn,
                                                      action="ListFunctionUrlConfigs"), allow_latest=True)
        with self.db.read() as conn:
            fn = self._function(conn, scope, name, FUNCTION_NOT_FOUND)
            q = sa.select(U).where(U.c.function_id == fn.id)
            if after is not None:
                if len(after) != 1 or not isinstance(after[0], str):
                    raise InvalidParameterValueException("Invalid Marker: the marker is not one this API returned.")
                q = q.where(U.c.qualifier > after[0])
            rows = conn.execute(q.order_by(U.c.qualifier).limit(limit + 1)).all()
        rows, marker = paging.page(rows, limit, "function-urls", lambda r: [r.qualifier])
        out: dict[str, Any] = {"FunctionUrlConfigs": [self._view(ctx, scope, fn.name, r) for r in rows]}
        if marker:
            out["NextMarker"] = marker
        return out
