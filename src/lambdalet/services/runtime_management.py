"""Runtime management controls (Get/PutRuntimeManagementConfig).

AWS lets a function pick when its runtime version changes: Auto (default), FunctionUpdate, or
Manual with a RuntimeVersionArn it then keeps. Here each runtime identifier has one build, named by
views.runtime_version_arn, so the only runtime version that exists for a function is its runtime's:
Manual with any other ARN (another runtime's, another region's, an invented one) is refused as a
version that does not exist, rather than stored and silently not honoured.

Stored in the version's config (key "RuntimeManagementConfig"; PublishVersion copies it, as AWS's
published versions keep theirs). Changing it does not renew the RevisionId: nothing an environment
runs changes.
"""
from __future__ import annotations

from lambdalet.models.context import RequestContext
from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services import records
from lambdalet.services.arns import Scope, merge_qualifier, parse_function_ref
from lambdalet.services.deps import Deps
from lambdalet.services.views import runtime_version_arn

V = records.V
KEY = "RuntimeManagementConfig"
MODES = ("Auto", "Manual", "FunctionUpdate")


def _target(ctx: RequestContext, conn, params: dict, action: str):
    scope = Scope.of(ctx)
    ref = parse_function_ref(scope, params.get("FunctionName"), caller_arn=ctx.caller.principal_arn, action=action)
    ref = merge_qualifier(ref, params.get("Qualifier"))
    fn, row, _ = records.resolve(conn, scope, ref.name, ref.qualifier)
    return scope, fn, row, ref.qualifier


def _answer(scope: Scope, fn, qualifier: str | None, stored: dict) -> dict:
    # The ARN as the caller named the function; RuntimeVersionArn only in Manual mode (null otherwise).
    out = {"UpdateRuntimeOn": stored.get("UpdateRuntimeOn", "Auto"),
           "FunctionArn": scope.function_arn(fn.name, qualifier)}
    if out["UpdateRuntimeOn"] == "Manual" and stored.get("RuntimeVersionArn"):
        out["RuntimeVersionArn"] = stored["RuntimeVersionArn"]
    return out


def get_runtime_management_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        scope, fn, row, qualifier = _target(ctx, conn, params, "GetRuntimeManagementConfig")
        return _answer(scope, fn, qualifier, records.config_of(row).get(KEY, {}))


def put_runtime_management_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    mode, arn = params.get("UpdateRuntimeOn"), params.get("RuntimeVersionArn")
    if mode not in MODES:      # the protocol checked the enum; a direct call may not have
        raise InvalidParameterValueException(f"UpdateRuntimeOn must be one of {', '.join(MODES)}.")
    if mode != "Manual" and arn:
        raise InvalidParameterValueException(
            f"RuntimeVersionArn can only be set when UpdateRuntimeOn is Manual (got {mode}).")
    if mode == "Manual" and not arn:
        raise InvalidParameterValueException("RuntimeVersionArn is required when UpdateRuntimeOn is Manual.")
    with deps.db.begin() as conn:
        scope, fn, row, qualifier = _target(ctx, conn, params, "PutRuntimeManagementConfig")
        cfg = records.config_of(row)
        if mode == "Manual":
            runtime = cfg.get("Runtime") or ""
            if not runtime or arn != runtime_version_arn(scope.region, runtime):
                raise InvalidParameterValueException(
                    f"The runtime version {arn} does not exist or is not compatible with the function's runtime "
                    f"({runtime or 'none'}). The runtime version of {runtime or 'this function'} here is "
                    f"{runtime_version_arn(scope.region, runtime) if runtime else 'none'}.")
        stored = {"UpdateRuntimeOn": mode, **({"RuntimeVersionArn": arn} if mode == "Manual" else {})}
        cfg[KEY] = stored
        conn.execute(V.update().where(V.c.id == row.id).values(config=records.dump_config(cfg)))
    return _answer(scope, fn, qualifier, stored)
