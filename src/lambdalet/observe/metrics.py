"""Lambda's metric set, as Prometheus metrics (prometheus-client), in one registry of this process.

Names follow CloudWatch's AWS/Lambda metrics in Prometheus spelling (Invocations ->
lambdalet_invocations_total). Labels are bounded by what tenants have deployed: account, function,
resource (AWS's Resource dimension: the function's name, or name:qualifier as invoked) and
executed_version; never request ids or payload-derived values. Gauges that describe the present
(concurrency in use, live environments) are read at scrape time from the components that hold them
(`add_gauge_source`), so the warm path pays nothing for them."""
from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)
_FN = ("account", "function", "resource", "executed_version")
# Lambda durations run from a millisecond to 15 minutes.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_AGE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 21600 * 2)

INVOCATIONS = Counter("lambdalet_invocations", "Invocations that ran the function (errors included, throttles not).",
                      _FN, registry=REGISTRY)
ERRORS = Counter("lambdalet_errors", "Invocations that ended in a function error (Unhandled, timeouts, crashes).",
                 _FN, registry=REGISTRY)
THROTTLES = Counter("lambdalet_throttles", "Invocation requests refused for lack of concurrency (429).",
                    _FN, registry=REGISTRY)
DURATION = Histogram("lambdalet_duration_seconds", "Time the function's code ran per invocation.", _FN,
                     buckets=_DURATION_BUCKETS, registry=REGISTRY)
ASYNC_RECEIVED = Counter("lambdalet_async_events_received", "Events queued for asynchronous invocation.",
                         ("account", "function", "resource"), registry=REGISTRY)
ASYNC_AGE = Histogram("lambdalet_async_event_age_seconds", "Time from queueing an event to invoking it.",
                      ("account", "function"), buckets=_AGE_BUCKETS, registry=REGISTRY)
ASYNC_DROPPED = Counter("lambdalet_async_events_dropped",
                        "Events dropped without a successful invocation (after their dead-letter queue or "
                        "on-failure destination, if any).", ("account", "function", "reason"), registry=REGISTRY)
DEAD_LETTER_ERRORS = Counter("lambdalet_dead_letter_errors", "Events that could not be sent to the dead-letter queue.",
                             ("account", "function"), registry=REGISTRY)
DESTINATION_FAILURES = Counter("lambdalet_destination_delivery_failures",
                               "Invocation records that could not be sent to their destination.",
                               ("account", "function"), registry=REGISTRY)
ITERATOR_AGE = Histogram("lambdalet_iterator_age_seconds",
                         "Event source mappings: age of a batch's oldest record when the function is invoked.",
                         ("account", "function"), buckets=_AGE_BUCKETS, registry=REGISTRY)
COLD_START = Histogram("lambdalet_cold_start_seconds", "Time to create an environment and initialize its runtime.",
                       ("account", "function", "slot"), buckets=_DURATION_BUCKETS, registry=REGISTRY)
ENVIRONMENT_EVENTS = Counter("lambdalet_environment_events", "Environment lifecycle events (create, reap, crash).",
                             ("event", "reason"), registry=REGISTRY)
API_REQUESTS = Counter("lambdalet_api_requests", "API requests answered, by service, operation and HTTP status.",
                       ("service", "operation", "status"), registry=REGISTRY)


def resource_name(function_name: str, qualifier: str | None) -> str:
    """AWS's Resource dimension: the function's name, or name:qualifier when the caller named one."""
    return f"{function_name}:{qualifier}" if qualifier else function_name


def resource_of(function_name: str, invoked_arn: str) -> str:
    """resource_name from the ARN the caller invoked (arn:aws:lambda:region:account:function:name[:qualifier])."""
    parts = invoked_arn.split(":")
    return resource_name(function_name, parts[7] if len(parts) == 8 else None)


# (account, function, invoked ARN, version) -> its series' children: one dict lookup per invocation
# instead of three labels() calls (each a lock and a tuple). Bounded as the labels are.
_children: dict[tuple[str, str, str, str], tuple] = {}


def _series(target) -> tuple:
    key = (target.account_id, target.function_name, target.invoked_arn, target.version)
    found = _children.get(key)
    if found is None:
        labels = (target.account_id, target.function_name, resource_of(target.function_name, target.invoked_arn),
                  target.version)
        found = _children[key] = (INVOCATIONS.labels(*labels), ERRORS.labels(*labels),
                                  DURATION.labels(*labels), labels)
    return found


class Invocation:
    """One Invoker.run, measured: `with Invocation(target) as m: m.done(result)`. A throttle (429)
    counts as one; platform failures count nothing (AWS counts them in no metric either)."""
    __slots__ = ("series",)

    def __init__(self, target) -> None:
        self.series = _series(target)

    def __enter__(self) -> "Invocation":
        return self

    def done(self, result):
        invocations, errors, duration, _ = self.series
        invocations.inc()
        if result.function_error:
            errors.inc()
        if result.duration_ms is not None:
            duration.observe(result.duration_ms / 1000.0)
        return result

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None and getattr(exc, "code", None) == "TooManyRequestsException":
            THROTTLES.labels(*self.series[3]).inc()


def event_age(account_id: str, function_name: str, enqueued_at: float) -> None:
    ASYNC_AGE.labels(account_id, function_name).observe(max(0.0, time.time() - enqueued_at))


# name, help, label names, a function returning (label values, value) pairs
GaugeSource = tuple[str, str, tuple[str, ...], Callable[[], Iterable[tuple[tuple[str, ...], float]]]]


class _Gauges:
    """Gauges read at scrape time (concurrency in use, live environments)."""

    def __init__(self) -> None:
        self.sources: dict[str, GaugeSource] = {}

    def describe(self):
        return []          # names are not known before sources are added

    def collect(self):
        for name, doc, labels, read in list(self.sources.values()):
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            try:
                for values, value in read():
                    family.add_metric(list(values), value)
            except Exception:      # a component closing while scraped: leave its gauge empty
                pass
            yield family


_GAUGES = _Gauges()
REGISTRY.register(_GAUGES)


def add_gauge_source(name: str, doc: str, labels: tuple[str, ...],
                     read: Callable[[], Iterable[tuple[tuple[str, ...], float]]]) -> None:
    """A gauge whose samples `read()` gives at scrape time (the server's wiring adds them; one per name)."""
    _GAUGES.sources[name] = (name, doc, labels, read)


def iterator_age(account_id: str, function_name: str, records: list[dict]) -> None:
    """A mapping's batch about to be invoked: the age of its oldest record (SQS SentTimestamp, ms)."""
    sent = [int(r["attributes"]["SentTimestamp"]) for r in records
            if str(r.get("attributes", {}).get("SentTimestamp", "")).isdigit()]
    if sent:
        ITERATOR_AGE.labels(account_id, function_name).observe(max(0.0, time.time() - min(sent) / 1000.0))
