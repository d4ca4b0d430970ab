"""GetAccountSettings: AWS's per-account, per-region limits and what is used of them."""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.services import code, records
from lambdalet.services.arns import Scope
from lambdalet.services.concurrency import reserved_total
from lambdalet.services.deps import Deps

F = records.F


def get_account_settings(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    scope = Scope.of(ctx)
    limit = deps.concurrent_executions_limit
    with deps.db.read() as conn:
        reserved = reserved_total(conn, scope)
        used = code.code_usage(conn, scope)
        count = conn.execute(sa.select(sa.func.count()).select_from(F).where(
            F.c.account_id == scope.account_id, F.c.region == scope.region)).scalar()
    return {
        "AccountLimit": {
            "TotalCodeSize": code.TOTAL_CODE_SIZE_LIMIT,
            "CodeSizeUnzipped": code.UNZIPPED_SIZE_LIMIT,
            "CodeSizeZipped": code.ZIPPED_SIZE_LIMIT,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - reserved,
        },
        "AccountUsage": {"TotalCodeSize": used, "FunctionCount": int(count or 0)},
    }
