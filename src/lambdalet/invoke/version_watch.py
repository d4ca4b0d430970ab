"""Which pooled environments still run what the control plane has: the pool's `watch` check.

An environment is keyed by (function, version, code digest, revision). When the function or version
is deleted, or $LATEST's code or configuration changes, no invocation will ever ask for that key
again; the pool destroys its idle environments as soon as this says so (invoke/pool.py)."""
from __future__ import annotations

from typing import Callable

from lambdalet.invoke.pool import PoolKey
from lambdalet.models.errors import ResourceNotFoundException
from lambdalet.services import records
from lambdalet.services.arns import Scope


def stale_keys(db) -> Callable[[list[PoolKey]], set[PoolKey]]:
    """check(keys) -> the keys whose version is gone or no longer has that code and revision."""
    def check(keys: list[PoolKey]) -> set[PoolKey]:
        stale: set[PoolKey] = set()
        with db.read() as conn:          # one snapshot for the whole batch
            for key in keys:
                _, _, _, region, account, _, name = key.function_arn.split(":", 6)
                try:
                    _, row, _ = records.resolve(conn, Scope(account, region), name, key.version)
                except ResourceNotFoundException:
                    stale.add(key)
                    continue
                if row.code_sha256 != key.code_sha256 or row.revision_id != key.revision_id:
                    stale.add(key)
        return stale
    return check
