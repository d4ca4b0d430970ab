"""Log lines (and counters) for what happens to execution environments and to Event invocations.

Environments (logger lambdalet.environment): create (from scratch or by claiming a pre-isolated
slot), thaw and freeze (DEBUG: one of each per warm invocation), reap (with why: idle TTL, maximum
lifetime, version changed, evicted for room, shutdown...) and crash (with why: timeout, out of
memory, runtime exit, init error). Events (logger lambdalet.events): retries, dead-letter and
on-failure destination moves, drops. Fields are ids, names and reasons only."""
from __future__ import annotations

import logging

from lambdalet.observe import metrics

env_log = logging.getLogger("lambdalet.environment")
event_log = logging.getLogger("lambdalet.events")


def _spec_fields(spec) -> dict:
    return {"env_id": spec.env_id, "account": spec.account_id, "function": spec.function_name,
            "version": spec.function_version}


def created(spec, cold_start_ms: float | None, claimed_slot: bool) -> None:
    seconds = (cold_start_ms or 0.0) / 1000.0
    metrics.COLD_START.labels(spec.account_id, spec.function_name, "claimed" if claimed_slot else "none").observe(seconds)
    event = "claim" if claimed_slot else "create"
    metrics.ENVIRONMENT_EVENTS.labels(event, "").inc()
    if env_log.isEnabledFor(logging.INFO):
        env_log.info("environment-%s", event, extra={"fields": {**_spec_fields(spec), "cold_start_ms": cold_start_ms}})


def paused(spec, event: str) -> None:
    """thaw / freeze: the warm path's own steps, logged at DEBUG only."""
    if env_log.isEnabledFor(logging.DEBUG):
        env_log.debug("environment-%s", event, extra={"fields": _spec_fields(spec)})


def crashed(spec, kind: str, detail: str, request_id: str = "") -> None:
    """kind: timeout | oom | exit | init | died_idle (the metric's label); detail: the log's words."""
    metrics.ENVIRONMENT_EVENTS.labels("crash", kind).inc()
    fields = {**_spec_fields(spec), "reason": kind, "detail": detail}
    if request_id:
        fields["request_id"] = request_id
    env_log.warning("environment-crash", extra={"fields": fields})


def reaped(spec, reason: str) -> None:
    """An environment destroyed by the platform (not by its own failure)."""
    metrics.ENVIRONMENT_EVENTS.labels("reap", reason).inc()
    if spec is not None and env_log.isEnabledFor(logging.INFO):
        env_log.info("environment-reap", extra={"fields": {**_spec_fields(spec), "reason": reason}})


def event_outcome(kind: str, msg, level: int = logging.INFO, **fields) -> None:
    """An Event invocation's retry, dead-letter or destination move, or drop."""
    if event_log.isEnabledFor(level):
        event_log.log(level, "event-%s", kind, extra={"fields": {
            "request_id": msg.request_id, "account": msg.account_id, "function": msg.function_name,
            "qualifier": msg.qualifier or "$LATEST", **fields}})
