"""From an Invoke's FunctionName + Qualifier to the one version this invocation runs.

Reads through the control plane's resolver; alias routing (weighted) is decided here, per
invocation, as Lambda does.
"""
from __future__ import annotations

from lambdalet.invoke.invoker import Target
from lambdalet.models.context import RequestContext
from lambdalet.services.arns import Scope, function_arn, merge_qualifier, parse_function_ref
from lambdalet.services.concurrency import reserved_total
from lambdalet.services.resolver import FunctionResolver, FunctionVersion
from lambdalet.services.tags import read_tags
from lambdalet.sandbox.egress_policy import TAG as EGRESS_TAG
from lambdalet.models.errors import InvalidParameterValueException


class TargetResolver:
    """Resolutions are cached until the control plane writes anything (resolver.generation), so a
    warm invoke reads no rows and decrypts nothing; alias weights are still drawn per invocation."""

    def __init__(self, resolver: FunctionResolver, db, max_entries: int = 4096):
        self._resolver = resolver
        self._db = db
        self._max = max_entries
        self._cache: dict[tuple, tuple[int, FunctionVersion, int, str]] = {}

    def _lookup(self, ctx: RequestContext, function_name: str, qualifier: str | None) -> tuple[FunctionVersion, int, str]:
        key = (ctx.account_id, ctx.region, function_name, qualifier)
        generation = self._resolver.generation
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2], hit[3]
        fv = self._resolver.resolve_version(ctx.account_id, function_name, qualifier, ctx.region)
        with self._db.read() as conn:
            total = reserved_total(conn, Scope(ctx.account_id, fv.region))
            egress = read_tags(conn, fv.function_arn).get(EGRESS_TAG, "")   # the function's, for new environments
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (generation, fv, total, egress)
        return fv, total, egress

    def __call__(self, ctx: RequestContext, function_name: str, qualifier: str | None) -> Target:
        fv, total, egress = self._lookup(ctx, function_name, qualifier)
        if fv.routing is not None:
            chosen = fv.routing.pick()
            if chosen != fv.version:
                fv, total, egress = self._lookup(ctx, fv.function_name, chosen)
        if not fv.runtime or (not fv.handler and not fv.runtime.startswith("provided")):
            raise InvalidParameterValueException("The function has no runtime or handler configured.")
        # The handler's context shows the ARN the caller used: an alias or version stays in it.
        ref = merge_qualifier(parse_function_ref(Scope(ctx.account_id, fv.region), function_name), qualifier)
        return _target(fv, total, function_arn(fv.region, fv.account_id, fv.function_name, ref.qualifier), egress)


def _target(fv: FunctionVersion, total_reserved: int, invoked_arn: str, egress: str = "") -> Target:
    return Target(account_id=fv.account_id, function_name=fv.function_name, function_arn=fv.function_arn,
                  version=fv.version, runtime=fv.runtime or "", handler=fv.handler or "",
                  memory_mb=fv.memory_size, timeout_s=fv.timeout, ephemeral_mb=fv.ephemeral_storage_mb,
                  environment=dict(fv.environment), code_sha256=fv.code_sha256_hex, revision_id=fv.revision_id,
                  reserved_concurrency=fv.reserved_concurrency, total_reserved=total_reserved,
                  invoked_arn=invoked_arn, region=fv.region, role=fv.role or "",
                  code_kms_key_arn=fv.code_kms_key_arn or "", kms_key_arn=fv.kms_key_arn or "", layers=fv.layers,
                  log_format=fv.log_format, log_group=fv.log_group, app_log_level=fv.app_log_level,
                  system_log_level=fv.system_log_level, egress=egress, tenant_isolated=fv.tenant_isolated,
                  recursive_loop=fv.recursive_loop or "")
