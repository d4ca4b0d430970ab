"""The data plane of an SQS event source mapping: pollers that receive batches, build the event Lambda
sends, invoke the function synchronously, and delete what succeeded.

Per enabled mapping, one `MappingPoller` runs worker threads (one batch in flight per worker):
- it starts with one worker and adds one whenever a worker received a full batch (a backlog), up to
  ScalingConfig.MaximumConcurrency (default `DEFAULT_MAX_CONCURRENCY`; never more than the host cap
  `worker_cap`); a worker that found the queue empty leaves unless it is the last one;
- a batch is gathered by long-polling the queue (10 messages per receive, as SQS allows) until
  BatchSize is reached, the MaximumBatchingWindowInSeconds has passed since the first message, or
  the event would exceed the 6 MB synchronous payload limit (with no window: one receive);
- received messages stay invisible for the queue's VisibilityTimeout, raised when needed to the
  function timeout + batching window + `VIS_MARGIN_S`, so a message never comes back while an
  invocation holding it may still run;
- records that no FilterCriteria filter matches are deleted without invoking (as Lambda does);
- on success the batch is deleted; with ReportBatchItemFailures only the records not named in the
  response's `batchItemFailures`; a function error, a timeout, or an invalid partial-failure response
  leaves every record to become visible again (and the queue's redrive policy moves a message to its
  dead-letter queue once it was received maxReceiveCount times). A throttled invocation gives its
  records back at once and the worker backs off.
FIFO queues (as Lambda documents): the queue hands out a message group only while none of its
messages is in flight, so batches of a group never overlap and arrive in order; a batch holds at most
10 records (no batching window). When a record fails, the records after it of the same group are not
deleted either (with ReportBatchItemFailures: "stop processing after the first failure and return all
failed and unprocessed messages"), and an event the payload limit split is not continued past a
failed part; they come back, in order, after the visibility timeout.
Authority: with a `permission` check (events/esm.py wires the function's execution role through
events/authority.py), a batch is received only while the role may ReceiveMessage, DeleteMessage and
GetQueueAttributes on the queue, and deleted only while it still may DeleteMessage; otherwise the
mapping reads nothing (LastProcessingResult "PROBLEM: ...") and tries again after PROBLEM_BACKOFF_S.
Configuration changes (`update`) apply from the next batch on; `stop` ends the workers after the
batch each is processing.
Sharing (esm_shares.py): with `shares`, a worker holds one of the platform's batch shares while it
gathers and processes a batch, so one account's mappings run at most its share of batches at once and
other accounts' workers are served round robin. While an account holding no share waits for one, a
worker does not hold one in a long poll: it receives without waiting and, finding nothing, waits
`poll_wait_s` without it.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from lambdalet.events.esm_shares import BatchShares
from lambdalet.events.filters import Filter, matches_any
from lambdalet.events.sources import InternalQueueSource, QueueSource, parse_sqs_arn, service_context
from lambdalet.models.errors import AwsError, TooManyRequestsException
from lambdalet.observe import metrics
from lambdalet.services import recursion

log = logging.getLogger("lambdalet.esm")

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_RECEIVE = 10                   # messages per SQS receive
POLL_WAIT_S = 2.0                  # one long poll; also the longest a stop waits for an idle worker
DEFAULT_MAX_CONCURRENCY = 5        # concurrent batches per mapping without ScalingConfig (2-core host)
WORKER_CAP = 32                    # host cap on concurrent batches per mapping, whatever MaximumConcurrency says
VIS_MARGIN_S = 5
PROBLEM_BACKOFF_S = 5.0            # function or queue missing: wait before trying again
THROTTLE_BACKOFF_S = 1.0
_ENVELOPE_BYTES = 64               # '{"Records":[' ... ']}' and separators, generously


@dataclass(frozen=True)
class MappingSpec:
    """What a poller needs to know about its mapping; replaced as a whole on update."""
    uuid: str
    account_id: str
    region: str
    function_name: str
    qualifier: str | None
    event_source_arn: str
    batch_size: int = 10
    window_s: int = 0
    report_failures: bool = False
    filters: tuple[Filter, ...] = ()
    max_concurrency: int | None = None

    @property
    def fifo(self) -> bool:
        return self.event_source_arn.endswith(".fifo")


# (spec, execution role ARN, SQS operation) -> None when allowed, else the LastProcessingResult text
Permission = Callable[[MappingSpec, str, str], "str | None"]
RECEIVE_NEEDS = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")


class FunctionCaller(Protocol):
    def resolve(self, spec: MappingSpec) -> Any: ...            # -> invoke.invoker.Target
    def invoke(self, spec: MappingSpec, target: Any, payload: bytes) -> Any: ...   # -> InvokeResult


LambdaletQueues = InternalQueueSource      # the former name; events/sources.py holds the queue sources now
__all__ = ["MappingPoller", "MappingSpec", "QueueSource", "FunctionCaller", "InvokerCaller", "LambdaletQueues",
           "parse_sqs_arn", "service_context", "sqs_record", "failed_item_ids", "fifo_unprocessed", "chunk_records",
           "filter_view"]


class InvokerCaller:
    """FunctionCaller over the platform's Invoker: its TargetResolver and run() (concurrency accounted)."""

    def __init__(self, invoker):
        self.invoker = invoker

    def resolve(self, spec: MappingSpec):
        return self.invoker.resolve(service_context(spec.account_id, spec.region), spec.function_name,
                                    spec.qualifier)

    def invoke(self, spec: MappingSpec, target, payload: bytes):
        return self.invoker.run(service_context(spec.account_id, spec.region), target, payload,
                                trace_header=_batch_trace(payload, target.function_arn))


def _batch_trace(payload: bytes, function_arn: str) -> str:
    """The batch's records' AWSTraceHeader that counts the most invocations of the function: recursive
    loop detection through a queue (services/recursion.py). Parsed only when a record carries one."""
    if b'"AWSTraceHeader"' not in payload:
        return ""
    try:
        records = json.loads(payload).get("Records") or []
    except (ValueError, AttributeError):
        return ""
    traces = [r.get("attributes", {}).get("AWSTraceHeader") or "" for r in records if isinstance(r, dict)]
    return max(traces, key=lambda t: recursion.invocations_so_far(t, function_arn), default="")


# ------------------------------------------------------------------------------ the event

def sqs_record(message, region: str) -> dict:
    """One record of the event Lambda sends for SQS (a `queues.Message` in, the documented shape out)."""
    from lambdalet.queues.service import md5_of_attributes   # queues/ is below events/; imported lazily
    import hashlib
    system = message.system_attributes
    attributes = {k: system[k] for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                         "ApproximateFirstReceiveTimestamp") if k in system}
    for k in ("SequenceNumber", "MessageGroupId", "MessageDeduplicationId", "AWSTraceHeader",
              "DeadLetterQueueSourceArn"):
        if k in system:
            attributes[k] = system[k]
    msg_attrs = {}
    for name, a in (message.attributes or {}).items():
        entry: dict[str, Any] = {}
        if "BinaryValue" in a:
            entry["binaryValue"] = base64.b64encode(a["BinaryValue"]).decode()
        else:
            entry["stringValue"] = a.get("StringValue")
        entry.update({"stringListValues": [], "binaryListValues": [], "dataType": a["DataType"]})
        msg_attrs[name] = entry
    record: dict[str, Any] = {
        "messageId": message.message_id,
        "receiptHandle": message.receipt,
        "body": message.body.decode("utf-8", "replace"),
        "attributes": attributes,
        "messageAttributes": msg_attrs,
        "md5OfBody": hashlib.md5(message.body, usedforsecurity=False).hexdigest(),
    }
    if message.attributes:
        record["md5OfMessageAttributes"] = md5_of_attributes(message.attributes)
    record.update({"eventSource": "aws:sqs", "eventSourceARN": message.queue_arn, "awsRegion": region})
    return record


def filter_view(record: dict) -> dict:
    """What FilterCriteria patterns see: the record, with the body parsed when it is JSON."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return record
    return {**record, "body": body}


def failed_item_ids(payload: bytes, batch_ids: set[str]) -> set[str] | None:
    """The records a ReportBatchItemFailures response names; None = the whole batch failed.

    As Lambda documents: an empty/null response or batchItemFailures is complete success; invalid
    JSON, an itemIdentifier that is missing, null, empty or not in the batch is complete failure."""
    text = payload.decode("utf-8", "replace").strip() if payload else ""
    if not text or text == "null":
        return set()
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if doc is None or doc == {} or doc == "":
        return set()
    if not isinstance(doc, dict):
        return None
    items = doc.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    failed = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        ident = item.get("itemIdentifier")
        if not isinstance(ident, str) or not ident or ident not in batch_ids:
            return None
        failed.add(ident)
    return failed


def fifo_unprocessed(records: list[dict], failed: set[str]) -> set[str]:
    """FIFO: a failed record and every later record of its message group (records are in order)."""
    stopped: set[str] = set()
    out = set(failed)
    for r in records:
        group = r["attributes"].get("MessageGroupId")
        if group in stopped or r["messageId"] in failed:
            stopped.add(group)
            out.add(r["messageId"])
    return out


def chunk_records(records: list[dict], limit: int = MAX_SYNC_PAYLOAD) -> list[tuple[list[dict], bytes]]:
    """Split records into events that each fit the synchronous payload limit (normally one)."""
    out: list[tuple[list[dict], bytes]] = []
    current: list[dict] = []
    size = _ENVELOPE_BYTES
    for r in records:
        n = len(json.dumps(r, separators=(",", ":")).encode()) + 1
        if current and size + n > limit:
            out.append((current, _event(current)))
            current, size = [], _ENVELOPE_BYTES
        current.append(r)
        size += n
    if current:
        out.append((current, _event(current)))
    return out


def _event(records: list[dict]) -> bytes:
    return json.dumps({"Records": records}, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------ the poller

@dataclass
class PollerStats:
    batches: int = 0            # invocations made
    deleted: int = 0            # records deleted after success
    filtered: int = 0           # records dropped (and deleted) by FilterCriteria
    failed: int = 0             # records left for redelivery
    throttled: int = 0
    last_problem: str = ""      # e.g. "PROBLEM: Function not found" (AWS's LastProcessingResult wording)
    last_result: str = "No records processed"


class MappingPoller:
    def __init__(self, spec: MappingSpec, source: QueueSource, caller: FunctionCaller, *,
                 worker_cap: int = WORKER_CAP, poll_wait_s: float = POLL_WAIT_S, vis_margin_s: int = VIS_MARGIN_S,
                 sleep: Callable[[float], None] | None = None, permission: Permission | None = None,
                 shares: BatchShares | None = None):
        self._spec = spec
        self.shares = shares
        self.permission = permission
        self.source = source
        self.caller = caller
        self.worker_cap = max(1, worker_cap)
        self.poll_wait_s = poll_wait_s
        self.vis_margin_s = vis_margin_s
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._sleep = sleep or self._stop.wait
        self._in_flight = 0

    # ---- control
    @property
    def spec(self) -> MappingSpec:
        return self._spec

    def update(self, spec: MappingSpec) -> None:
        self._spec = spec      # read once per batch by every worker

    @property
    def max_workers(self) -> int:
        return max(1, min(self._spec.max_concurrency or DEFAULT_MAX_CONCURRENCY, self.worker_cap))

    def start(self) -> None:
        self._spawn()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers to finish (after stop). True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                workers = list(self._workers)
            if not workers:
                return True
            for t in workers:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                t.join(remaining)
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._workers

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def worker_count(self) -> int:
        with self._lock:
            return len(self._workers)

    def _spawn(self) -> bool:
        with self._lock:
            if self._stop.is_set() or len(self._workers) >= self.max_workers:
                return False
            t = threading.Thread(target=self._run, name=f"esm-{self._spec.uuid[:8]}-{len(self._workers)}",
                                 daemon=True)
            self._workers.add(t)
        t.start()
        return True

    def _leave_if_extra(self) -> bool:
        """An idle worker leaves unless it is the last one (or above the current maximum)."""
        me = threading.current_thread()
        with self._lock:
            if len(self._workers) > 1:
                self._workers.discard(me)
                return True
        return False

    def _run(self) -> None:
        me = threading.current_thread()
        try:
            while not self._stop.is_set():
                account = self._spec.account_id
                if self.shares is not None and not self.shares.acquire(account, self._spec.uuid, self._stop):
                    return
                briefly = self.shares is not None and self.shares.starving()
                try:
                    outcome = self.poll_once(0.0 if briefly else None)
                except Exception:
                    log.exception("event source mapping %s: poller error", self._spec.uuid)
                    outcome = "problem"
                finally:
                    if self.shares is not None:
                        self.shares.release(account)
                if outcome in ("empty", "throttled") and self._leave_if_extra():
                    return
                if outcome == "empty" and briefly:
                    self._sleep(self.poll_wait_s)      # the long poll it did not make, without a share
                if outcome == "problem":
                    self._sleep(PROBLEM_BACKOFF_S)
                elif outcome == "throttled":
                    self._sleep(THROTTLE_BACKOFF_S)
                elif outcome == "full":
                    self._spawn()
                with self._lock:
                    too_many = len(self._workers) > self.max_workers
                    if too_many:
                        self._workers.discard(me)
                        return
        finally:
            with self._lock:
                self._workers.discard(me)

    # ---- one batch
    def poll_once(self, wait_s: float | None = None) -> str:
        """Gather and process one batch, long-polling `wait_s` (default `poll_wait_s`) for its first
        messages. -> "empty" | "partial" | "full" | "throttled" | "problem"."""
        spec = self._spec
        try:
            target = self.caller.resolve(spec)
        except AwsError as e:
            self._problem(spec, f"PROBLEM: Function call failed: {e.code}: {e.message}")
            return "problem"
        for op in RECEIVE_NEEDS:
            problem = self._denied(spec, target, op)
            if problem:
                self._problem(spec, problem)
                return "problem"
        try:
            queue_vt = self.source.visibility_timeout(spec.event_source_arn)
            visibility = max(queue_vt, int(target.timeout_s) + spec.window_s + self.vis_margin_s)
            messages = self._gather(spec, visibility, self.poll_wait_s if wait_s is None else wait_s)
        except AwsError as e:
            self._problem(spec, f"PROBLEM: Queue {spec.event_source_arn} is not available: {e.message}")
            return "problem"
        if not messages:
            return "empty"
        full = len(messages) >= min(spec.batch_size, MAX_RECEIVE)
        result = self.process(spec, target, messages)
        if result == "throttled":
            return "throttled"
        return "full" if full else "partial"

    def _gather(self, spec: MappingSpec, visibility: int, wait_s: float) -> list:
        arn = spec.event_source_arn
        got = self.source.claim(arn, min(MAX_RECEIVE, spec.batch_size), visibility, wait_s)
        if not got or spec.window_s <= 0:
            return list(got)
        messages = list(got)
        size = sum(_approx_size(m) for m in messages)
        deadline = time.monotonic() + spec.window_s
        while len(messages) < spec.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or size + MAX_RECEIVE * 300_000 > MAX_SYNC_PAYLOAD:
                break
            more = self.source.claim(arn, min(MAX_RECEIVE, spec.batch_size - len(messages)), visibility,
                                     min(remaining, self.poll_wait_s))
            messages += more
            size += sum(_approx_size(m) for m in more)
        return messages

    def process(self, spec: MappingSpec, target, messages: list) -> str:
        region = (parse_sqs_arn(spec.event_source_arn) or (spec.region,))[0]
        records = [sqs_record(m, region) for m in messages]
        if spec.filters:
            kept, dropped = [], []
            for r in records:
                if matches_any(list(spec.filters), filter_view(r)):
                    kept.append(r)
                else:
                    dropped.append(r["receiptHandle"])
            self._ack_many(dropped)
            self.stats.filtered += len(dropped)
            records = kept
        outcome = "ok"
        chunks = chunk_records(records)
        for i, (chunk, payload) in enumerate(chunks):
            outcome = self._invoke_chunk(spec, target, chunk, payload)
            if outcome in ("failed", "partial") and spec.fifo and i + 1 < len(chunks):
                # Later parts hold later messages of the failed groups: leave them for redelivery.
                rest = [r for later, _ in chunks[i + 1:] for r in later]
                self._fail(rest, "PROBLEM: Function call failed")
                return outcome
            if outcome == "throttled":
                # Not invoked: give this chunk and the ones not yet sent back to the queue at once.
                for rest, _ in chunks[i:]:
                    for r in rest:
                        self._nack(r["receiptHandle"])
                self.stats.throttled += 1
                return "throttled"
        return outcome

    def _invoke_chunk(self, spec: MappingSpec, target, chunk: list[dict], payload: bytes) -> str:
        metrics.iterator_age(spec.account_id, spec.function_name, chunk)
        try:
            result = self.caller.invoke(spec, target, payload)
        except TooManyRequestsException:
            return "throttled"
        except AwsError as e:
            self._fail(chunk, f"PROBLEM: Function call failed: {e.code}")
            return "failed"
        self.stats.batches += 1
        if result.function_error:
            self._fail(chunk, "PROBLEM: Function call failed")
            return "failed"
        if spec.report_failures:
            failed = failed_item_ids(result.payload, {r["messageId"] for r in chunk})
            if failed is None:
                self._fail(chunk, "PROBLEM: Function returned an invalid batchItemFailures response")
                return "failed"
            if spec.fifo:
                failed = fifo_unprocessed(chunk, failed)
        else:
            failed = set()
        done = [r["receiptHandle"] for r in chunk if r["messageId"] not in failed]
        problem = self._denied(spec, target, "DeleteMessage")     # revoked while the function ran?
        if problem:
            self._problem(spec, problem)
            self.stats.failed += len(chunk)
            return "failed"
        self._ack_many(done)
        self.stats.failed += len(chunk) - len(done)
        self.stats.deleted += len(done)
        self.stats.last_result = "OK"
        return "partial" if failed else "ok"

    def _denied(self, spec: MappingSpec, target, op: str) -> str | None:
        if self.permission is None:
            return None
        return self.permission(spec, str(getattr(target, "role", "") or ""), op)

    def _fail(self, chunk: list[dict], why: str) -> None:
        # Records stay in flight until their visibility timeout ends, then come back (or are redriven).
        self.stats.failed += len(chunk)
        self.stats.last_result = why

    def _ack(self, receipt: str) -> None:
        try:
            self.source.ack(receipt)
        except Exception:
            log.exception("event source mapping %s: delete failed", self._spec.uuid)

    def _ack_many(self, receipts: list[str]) -> None:
        """Delete records (one DeleteMessageBatch per 10 on an external queue); a failed delete only
        means the record comes back after its visibility timeout."""
        if not receipts:
            return
        many = getattr(self.source, "ack_many", None)
        if many is None:
            for r in receipts:
                self._ack(r)
            return
        try:
            many(receipts)
        except Exception:
            log.exception("event source mapping %s: delete failed", self._spec.uuid)

    def _nack(self, receipt: str) -> None:
        try:
            self.source.nack(receipt, 0)
        except Exception:
            log.debug("event source mapping %s: could not release a message", self._spec.uuid, exc_info=True)

    def _problem(self, spec: MappingSpec, text: str) -> None:
        if self.stats.last_problem != text:
            log.warning("event source mapping %s: %s", spec.uuid, text)
        self.stats.last_problem = text
        self.stats.last_result = text


def _approx_size(message) -> int:
    size = len(message.body) * 2 + 1024
    for name, a in (message.attributes or {}).items():
        size += len(name) + len(str(a.get("StringValue") or "")) + len(a.get("BinaryValue") or b"") * 2
    return size
