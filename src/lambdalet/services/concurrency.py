"""Reserved concurrency (Put/Get/DeleteFunctionConcurrency).

AWS keeps at least 100 executions unreserved per account and region, so that functions without
a reservation can always run; a reservation that would leave less is refused.
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services import records
from lambdalet.services.arns import Scope, parse_function_ref
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error

F = records.F
MIN_UNRESERVED = 100


def reserved_total(conn, scope: Scope, excluding: str | None = None) -> int:
    q = sa.select(sa.func.coalesce(sa.func.sum(F.c.reserved_concurrency), 0)).where(
        F.c.account_id == scope.account_id, F.c.region == scope.region)
    if excluding is not None:
        q = q.where(F.c.id != excluding)
    return int(conn.execute(q).scalar() or 0)


def _function(ctx: RequestContext, conn, params: dict, action: str):
    """Reserved concurrency belongs to the function: AWS refuses a version or alias (even $LATEST)
    and names a missing function by its $LATEST ARN."""
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn, action=action)
    if ref.qualifier is not None:
        raise InvalidParameterValueException(
            "This operation is permitted on Lambda functions only. Aliases and versions do not support this "
            "operation. Please specify either a function name or an unqualified function ARN.")
    fn = records.find_function(conn, scope, ref.name)
    if fn is None:
        raise records.function_not_found(scope, ref.name, records.LATEST)
    return scope, fn


def put_function_concurrency(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    value = params.get("ReservedConcurrentExecutions")
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint_error(value, "reservedConcurrentExecutions", "Member must not be null")
    if value < 0:
        raise constraint_error(value, "reservedConcurrentExecutions",
                               "Member must have value greater than or equal to 0")
    with deps.db.begin() as conn:
        scope, fn = _function(ctx, conn, params, "PutFunctionConcurrency")
        others = reserved_total(conn, scope, excluding=fn.id)
        if deps.concurrent_executions_limit - others - value < MIN_UNRESERVED:
            raise InvalidParameterValueException(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}].")
        conn.execute(F.update().where(F.c.id == fn.id).values(reserved_concurrency=value))
    return {"ReservedConcurrentExecutions": value}


def get_function_concurrency(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        _, fn = _function(ctx, conn, params, "GetFunctionConcurrency")
    return {} if fn.reserved_concurrency is None else {"ReservedConcurrentExecutions": fn.reserved_concurrency}


def delete_function_concurrency(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.begin() as conn:
        _, fn = _function(ctx, conn, params, "DeleteFunctionConcurrency")
        conn.execute(F.update().where(F.c.id == fn.id).values(reserved_concurrency=None))
    return {}
