"""Wires what the server tells about itself (observe/) to the components that know it: the gauges
read at scrape time and the activity snapshot `lambdalet status` reads."""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.config import Settings
from lambdalet.events.async_invoke import INTERNAL_ACCOUNT
from lambdalet.invoke.invoker import Invoker
from lambdalet.observe.activity import ActivitySnapshots
from lambdalet.observe.metrics import add_gauge_source
from lambdalet.queues.tables import sqs_queues
from lambdalet.store import schema
from lambdalet.store.db import Database


def wire_observability(settings: Settings, db: Database, invoker: Invoker) -> ActivitySnapshots:
    limiter, pool = invoker.limiter, invoker.pool
    add_gauge_source("lambdalet_concurrent_executions", "Invocations running now, per function.",
                     ("account", "function"), lambda: limiter.in_use()[0].items())
    add_gauge_source("lambdalet_unreserved_concurrent_executions",
                     "Invocations running now of functions without reserved concurrency, per account.",
                     ("account",), lambda: ((( a,), n) for a, n in limiter.in_use()[1].items()))
    add_gauge_source("lambdalet_environments", "Live execution environments: idle (frozen) or busy.",
                     ("state",), lambda: (((state,), n) for state, n in pool.counts().items()))
    add_gauge_source("lambdalet_environment_memory_mb", "MemorySize of the live environments, summed.", (),
                     lambda: [((), pool.charged_mb())])

    def functions() -> int:
        with db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(schema.functions)).scalar_one())

    def queues() -> int:
        with db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sqs_queues)
                                    .where(sqs_queues.c.account_id != INTERNAL_ACCOUNT)).scalar_one())

    def concurrency() -> dict:
        by_function, _ = limiter.in_use()
        by_account: dict[str, int] = {}
        for (account, _name), n in by_function.items():
            by_account[account] = by_account.get(account, 0) + n
        return {"in_use": sum(by_account.values()), "account_limit": limiter.account_limit, "by_account": by_account}

    return ActivitySnapshots(settings.activity_file, {
        "functions": functions, "queues": queues, "environments": pool.counts, "concurrency": concurrency,
        "environment_memory_mb": pool.charged_mb})
