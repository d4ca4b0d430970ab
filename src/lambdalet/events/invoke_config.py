"""Event invoke configuration (Put/Get/Update/Delete/ListFunctionEventInvokeConfigs), stored per
function + qualifier, and the effective settings the pollers read (cached briefly in memory).

A destination is accepted only if the function's execution role (of the version or alias configured)
may deliver to it, as AWS checks: sqs:SendMessage on a queue, lambda:InvokeFunction on a function;
otherwise InvalidParameterValueException "The function's execution role does not have permissions to
call SendMessage on <arn>". Delivery checks again (destinations.py)."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from lambdalet.events.tables import event_invoke_configs
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException, ResourceNotFoundException
from lambdalet.services import paging, records
from lambdalet.services.arns import Scope, function_arn, merge_qualifier, parse_function_ref
from lambdalet.services.validation import constraint_error
from lambdalet.store import schema

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE_S = 21_600
RETRY_RANGE = (0, 2)
AGE_RANGE = (60, 21_600)
LIST_MAX = 50
CACHE_TTL_S = 2.0

SQS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,80})$")
FIFO_SQS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,75}\.fifo$")
LAMBDA_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([a-zA-Z0-9_-]{1,64})"
                        r"(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$")
ANY_ARN = re.compile(r"^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9-]+):([a-z0-9-]*):(\d{12})?:(.+)$")
FUNCTION_MISSING = "The function doesn't exist."


@dataclass(frozen=True)
class EffectiveConfig:
    max_retry_attempts: int = DEFAULT_RETRIES
    max_event_age_s: int = DEFAULT_MAX_AGE_S
    on_success: str | None = None
    on_failure: str | None = None


DEFAULTS = EffectiveConfig()


class EventInvokeConfigs:
    def __init__(self, db, queues, clock=time.time, *, authority=None):
        self.db = db
        self.queues = queues
        self.clock = clock
        self.authority = authority  # events/authority.RoleAuthority: destinations checked as the function's role
        self._cache: dict[tuple, tuple[float, EffectiveConfig]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ operations
    def put_function_event_invoke_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._target(ctx, params)
        try:
            role = self._role(scope, name, qualifier)
        except ResourceNotFoundException:
            raise ResourceNotFoundException(FUNCTION_MISSING) from None     # AWS's words here
        values = self._validated(ctx, params, require_one=True, role=role,
                                 own={scope.function_arn(name), scope.function_arn(name, qualifier)})
        with self.db.begin() as conn:
            fn = self._require(conn, scope, name, qualifier)
            conn.execute(sa.delete(event_invoke_configs).where(event_invoke_configs.c.function_id == fn.id,
                                                               event_invoke_configs.c.qualifier == qualifier))
            row = {"function_id": fn.id, "qualifier": qualifier, "last_modified": self.clock(),
                   "max_retry_attempts": None, "max_event_age_s": None, "on_success": None, "on_failure": None}
            row.update(values)
            conn.execute(sa.insert(event_invoke_configs).values(**row))
        self._invalidate()
        return _view(scope, fn.name, row)

    def update_function_event_invoke_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._target(ctx, params)
        values = self._validated(ctx, params, require_one=False, role=self._role(scope, name, qualifier))
        with self.db.begin() as conn:
            fn = self._require(conn, scope, name, qualifier)
            current = self._row(conn, fn.id, qualifier)
            if current is None:
                raise _no_config(scope, fn.name, qualifier)
            row = dict(current._mapping)
            row.update(values)
            row["last_modified"] = self.clock()
            conn.execute(sa.update(event_invoke_configs).where(
                event_invoke_configs.c.function_id == fn.id, event_invoke_configs.c.qualifier == qualifier)
                .values(**{k: v for k, v in row.items() if k not in ("function_id", "qualifier")}))
        self._invalidate()
        return _view(scope, fn.name, row)

    def get_function_event_invoke_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._target(ctx, params)
        with self.db.read() as conn:
            fn = self._require(conn, scope, name, qualifier)
            row = self._row(conn, fn.id, qualifier)
        if row is None:
            raise _no_config(scope, fn.name, qualifier)
        return _view(scope, fn.name, row._mapping)

    def delete_function_event_invoke_config(self, ctx: RequestContext, params: dict) -> dict:
        scope, name, qualifier = self._target(ctx, params)
        with self.db.begin() as conn:
            fn = self._require(conn, scope, name, qualifier)
            res = conn.execute(sa.delete(event_invoke_configs).where(
                event_invoke_configs.c.function_id == fn.id, event_invoke_configs.c.qualifier == qualifier))
            if res.rowcount == 0:
                raise _no_config(scope, fn.name, qualifier)
        self._invalidate()
        return {}

    def list_function_event_invoke_configs(self, ctx: RequestContext, params: dict) -> dict:
        scope = Scope.of(ctx)
        ref = parse_function_ref(scope, params["FunctionName"], action="ListFunctionEventInvokeConfigs")
        limit = paging.max_items(params, default=LIST_MAX, limit=LIST_MAX)
        after = paging.decode_marker(params.get("Marker"), "eic")
        t = event_invoke_configs
        with self.db.read() as conn:
            fn = records.require_function(conn, scope, ref.name)
            stmt = sa.select(t).where(t.c.function_id == fn.id).order_by(t.c.qualifier).limit(limit + 1)
            if after:
                stmt = stmt.where(t.c.qualifier > str(after[0]))
            rows = conn.execute(stmt).all()
        page, marker = paging.page(rows, limit, "eic", lambda r: [r.qualifier])
        out: dict = {"FunctionEventInvokeConfigs": [_view(scope, fn.name, r._mapping) for r in page]}
        if marker:
            out["NextMarker"] = marker
        return out

    # ------------------------------------------------------------------ for the pollers
    def effective(self, account_id: str, region: str, function_name: str, qualifier: str | None) -> EffectiveConfig:
        key = (account_id, region, function_name, qualifier or records.LATEST)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        f, t = schema.functions, event_invoke_configs
        with self.db.read() as conn:
            row = conn.execute(sa.select(t).join(f, f.c.id == t.c.function_id).where(
                f.c.account_id == account_id, f.c.region == region, f.c.name == function_name,
                t.c.qualifier == key[3])).first()
        cfg = DEFAULTS if row is None else EffectiveConfig(
            DEFAULT_RETRIES if row.max_retry_attempts is None else row.max_retry_attempts,
            DEFAULT_MAX_AGE_S if row.max_event_age_s is None else row.max_event_age_s,
            row.on_success, row.on_failure)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, cfg)
        return cfg

    def _invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    # ------------------------------------------------------------------ validation
    def _target(self, ctx: RequestContext, params: dict) -> tuple[Scope, str, str]:
        scope = Scope.of(ctx)
        ref = merge_qualifier(parse_function_ref(scope, params["FunctionName"], action="EventInvokeConfig"),
                              params.get("Qualifier"))
        return scope, ref.name, ref.qualifier or records.LATEST

    @staticmethod
    def _require(conn, scope: Scope, name: str, qualifier: str):
        fn, _, _ = records.resolve(conn, scope, name, None if qualifier == records.LATEST else qualifier)
        return fn

    def _role(self, scope: Scope, name: str, qualifier: str) -> str:
        """The execution role of the version `qualifier` names (the alias's version for an alias)."""
        with self.db.read() as conn:
            _, version, _ = records.resolve(conn, scope, name, None if qualifier == records.LATEST else qualifier)
        return str(records.config_of(version).get("Role") or "")

    @staticmethod
    def _row(conn, function_id: str, qualifier: str):
        t = event_invoke_configs
        return conn.execute(sa.select(t).where(t.c.function_id == function_id, t.c.qualifier == qualifier)).first()

    def _validated(self, ctx: RequestContext, params: dict, *, require_one: bool, role: str = "",
                   own: set[str] = frozenset()) -> dict:
        """own: the ARNs naming the configured function itself (AWS refuses it as its own destination)."""
        out: dict = {}
        if params.get("MaximumRetryAttempts") is not None:
            out["max_retry_attempts"] = _int_range(params["MaximumRetryAttempts"], "maximumRetryAttempts", *RETRY_RANGE)
        if params.get("MaximumEventAgeInSeconds") is not None:
            out["max_event_age_s"] = _int_range(params["MaximumEventAgeInSeconds"], "maximumEventAgeInSeconds",
                                                *AGE_RANGE)
        dc = params.get("DestinationConfig")
        if dc is not None:
            for member, column in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
                if member in dc:
                    arn = (dc.get(member) or {}).get("Destination") or ""
                    if arn in own:
                        raise InvalidParameterValueException(
                            "You can't specify the function as a destination for itself.")
                    out[column] = self.check_destination(ctx, arn, f"destinationConfig.{member[0].lower()}{member[1:]}",
                                                         role=role)
        if require_one and not out:
            raise InvalidParameterValueException(
                "You must specify at least one of error handling or destination setting.")
        return out

    def check_destination(self, ctx: RequestContext, arn: str, field: str, *, role: str | None = None) -> str | None:
        """Format like AWS, existence for lambdalet's own resources (same account), and (with `role`)
        the execution role's permission to deliver there."""
        if arn == "":
            return None
        if len(arn) > 350 or not ANY_ARN.match(arn):
            raise constraint_error(arn, f"{field}.destination",
                                   "Member must satisfy regular expression pattern: "
                                   "arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)")
        if FIFO_SQS_ARN.match(arn):      # AWS: "When using an Amazon SQS queue as a destination, FIFO queues cannot be used."
            raise InvalidParameterValueException(fifo_refusal(arn))
        m = SQS_ARN.match(arn)
        if m:
            region, account, name = m.groups()
            if account != ctx.account_id:
                raise InvalidParameterValueException(
                    f"The destination {arn} belongs to another account; lambdalet delivers only to the "
                    f"function owner's queues.")
            try:
                self.queues.queue_arn(account, name, region=region)
            except Exception:
                raise InvalidParameterValueException(f"The destination queue {arn} does not exist.") from None
            self._check_role(role, "sqs:SendMessage", arn, ctx.region)
            return arn
        m = LAMBDA_ARN.match(arn)
        if m:
            region, account, name, qualifier = m.groups()
            if account != ctx.account_id or region != ctx.region:
                raise InvalidParameterValueException(
                    f"The destination {arn} must be a function of the same account and region.")
            with self.db.read() as conn:
                try:
                    records.resolve(conn, Scope(account, region), name,
                                    None if qualifier in (None, records.LATEST) else qualifier)
                except ResourceNotFoundException:
                    raise InvalidParameterValueException(
                        f"The destination function {arn} does not exist.") from None
            self._check_role(role, "lambda:InvokeFunction", arn, ctx.region)
            return arn
        service = ANY_ARN.match(arn).group(2)
        raise InvalidParameterValueException(
            f"lambdalet cannot deliver to '{service}' destinations ({arn}); use an SQS queue ARN or a Lambda "
            f"function ARN.")


    def _check_role(self, role: str | None, action: str, arn: str, region: str) -> None:
        if self.authority is None or role is None:
            return
        if not self.authority.role_may(role, action, arn, region=region).allowed:
            raise InvalidParameterValueException(
                f"The function's execution role does not have permissions to call {action.split(':')[1]} on {arn}")


def fifo_refusal(arn: str) -> str:
    """Asynchronous invocation destinations and dead-letter queues must be standard SQS queues."""
    return f"The target {arn} is a FIFO queue; Lambda sends asynchronous invocation records only to standard queues."


def _int_range(value, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, field, "Member must be an integer")
    if value < lo:
        raise constraint_error(value, field, f"Member must have value greater than or equal to {lo}")
    if value > hi:
        raise constraint_error(value, field, f"Member must have value less than or equal to {hi}")
    return value


def _no_config(scope: Scope, name: str, qualifier: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(
        f"The function {function_arn(scope.region, scope.account_id, name, qualifier)} doesn't have an "
        f"EventInvokeConfig")


def _view(scope: Scope, name: str, row) -> dict:
    out: dict = {"LastModified": row["last_modified"],
                 "FunctionArn": function_arn(scope.region, scope.account_id, name, row["qualifier"]),
                 "DestinationConfig": {
                     "OnSuccess": {"Destination": row["on_success"]} if row["on_success"] else {},
                     "OnFailure": {"Destination": row["on_failure"]} if row["on_failure"] else {}}}
    if row["max_retry_attempts"] is not None:
        out["MaximumRetryAttempts"] = row["max_retry_attempts"]
    if row["max_event_age_s"] is not None:
        out["MaximumEventAgeInSeconds"] = row["max_event_age_s"]
    return out
