"""Delivery of queued Event invocations: a dispatcher thread claims messages from the internal
queues (one per account and function; round robin over accounts, then over an account's functions)
for a small pool of worker threads, each of which runs one event
through `Invoker.run` (the same concurrency accounting as a synchronous Invoke) and handles the
outcome completely before acknowledging it.

The workers serve every account, so they are shared fairly (issue 21.7; fair_queue.py): workers take
events round robin over accounts, then over an account's functions; one account runs at most
`account_cap` events at once (a quarter of the workers stays for the others) and holds at most
`account_buffer` claimed events, so its backlog never fills the buffer, and an event enqueued for an
idle account wakes the dispatcher at once. Another account's event waits at most about one
invocation of the account ahead of it. Within an account the same holds between its functions: each
has its own internal queue (a deep backlog of one is never claimed ahead of the others), runs at most
`function_cap` events and holds at most `function_buffer`.

Which queues to claim from is one read per round (the earliest visibility time of each internal
queue, an index seek each), so idle or deleted functions' queues cost no write transaction.

Database work is batched (acks.py): the dispatcher claims up to a buffer's worth of events per
transaction (refilling when half the buffer is free, or at once when the workers ran dry), and
applies the acks/nacks recorded by the workers since its last round in one transaction before each
claim. Outcomes:

- success -> OnSuccess destination (if any), then ack;
- throttled (TooManyRequestsException) -> nack with a backoff delay, not counted as an attempt;
- function error -> a new message with attempts+1 after AWS's backoff (about 1 min, then 2 min;
  times `retry_scale`), then ack of the old one; when MaximumRetryAttempts are used up ->
  OnFailure destination + DeadLetterConfig, then ack;
- older than MaximumEventAgeInSeconds (times `retry_scale`) -> the failure path, EventAgeExceeded;
- a platform fault (environment could not start, database trouble) -> nack, tried again later.

Every send happens before the ack, so a kill -9 at any point leaves the event queued (delivered
again: at-least-once; duplicates are possible, loss is not). On start, messages that a previous
process had claimed are made visible again at once (one server per data dir, see server.lock).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa

from lambdalet.events.acks import BatchedAcks, ImmediateAcks
from lambdalet.events.async_invoke import (INTERNAL_ACCOUNT, QUEUE_PREFIX, AsyncInvocations, account_of_queue,
                                           internal_context)
from lambdalet.events.fair_queue import FairQueue
from lambdalet.events.destinations import (EVENT_AGE_EXCEEDED, RETRIES_EXHAUSTED, SUCCESS, Destinations,
                                           error_message_of, invocation_record)
from lambdalet.events.invoke_config import EffectiveConfig, EventInvokeConfigs
from lambdalet.events.messages import EventMessage, last_error_of
from lambdalet.models.errors import (AwsError, InvalidParameterValueException, RecursiveInvocationException,
                                     ResourceNotFoundException, TooManyRequestsException)
from lambdalet.observe import lifecycle, metrics
from lambdalet.queues.service import MAX_CLAIM
from lambdalet.queues.tables import sqs_messages, sqs_queues

log = logging.getLogger("lambdalet.events")

FIRST_RETRY_DELAY_S = 60          # AWS: about 1 minute, then about 2 minutes
MAX_THROTTLE_DELAY_S = 300        # AWS: throttled events are retried with backoff up to 5 minutes
PLATFORM_RETRY_DELAY_S = 10
VISIBILITY_MARGIN_S = 60
RECURSION_DETECTED = "RecursiveInvocationDetected"   # an event stopped by recursive loop detection


@dataclass
class PollerStats:
    succeeded: int = 0
    failed: int = 0               # failure path taken (retries exhausted / too old)
    retried: int = 0
    throttled: int = 0
    platform_errors: int = 0
    dropped: int = 0              # function gone, payload gone, undecodable
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class EventPoller:
    def __init__(self, events: AsyncInvocations, configs: EventInvokeConfigs, destinations: Destinations, invoker,
                 dead_letter_of: Callable[[EventMessage], str | None], *, workers: int = 16,
                 retry_scale: float = 1.0, claim_visibility_s: int = 120, idle_wait_s: float = 0.5):
        self.events = events
        self.queues = events.queues
        self.configs = configs
        self.destinations = destinations
        self.invoker = invoker
        self.dead_letter_of = dead_letter_of
        self.workers = max(1, int(workers))
        self.retry_scale = float(retry_scale)
        self.claim_visibility_s = int(claim_visibility_s)
        self.idle_wait_s = idle_wait_s
        # Claimed and not yet settled: one wave running plus one buffered, refilled half at a time;
        # one account at most `account_buffer` of it, `account_cap` of it running; one function less.
        self.account_cap = max(1, self.workers - max(1, self.workers // 4))
        self.account_buffer = self.account_cap + max(2, self.account_cap // 2)
        self.function_cap = max(1, self.account_cap - max(1, self.account_cap // 4))
        # one function leaves room in its account's buffer for the account's other functions
        self.function_buffer = min(self.account_buffer - 1, self.function_cap + max(2, self.function_cap // 2))
        self.capacity = min(2 * self.workers + 4, self.workers + MAX_CLAIM) + self.account_buffer
        self.refill_at = max(1, (self.capacity - self.workers) // 2 + 1)
        self.stats = PollerStats()
        self._wake = threading.Event()
        self.acks = BatchedAcks(self.queues, events.drop_payloads, on_record=self._wake.set)
        self._immediate = ImmediateAcks(self.queues, events.drop_payloads)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._outstanding = 0
        # claimed, not yet handled: per account and per internal queue (ARN)
        self._held: dict[str, int] = {}
        self._held_queue: dict[str, int] = {}
        self._woken = False                      # an enqueue since the last claim round
        self._work = FairQueue(self.account_cap, self.function_cap)
        self._threads: list[threading.Thread] = []
        self._rr = 0
        events.on_enqueued(self.wake)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        released = self.release_orphans()
        if released:
            log.info("%d queued event(s) claimed by a previous server process are deliverable again", released)
        try:
            self.events.collect_orphans()
        except Exception:
            log.exception("collecting orphaned event payloads")
        t = threading.Thread(target=self._dispatch_loop, name="event-dispatcher", daemon=True)
        self._threads.append(t)
        for i in range(self.workers):
            self._threads.append(threading.Thread(target=self._work_loop, name=f"event-worker-{i}", daemon=True))
        for t in self._threads:
            t.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop claiming, let running invocations finish (up to `timeout`), give back what is buffered."""
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for m, *_ in self._work.close():
            self.acks.nack(m.receipt, 0)
        self.acks.flush()          # what finished, and what was buffered (given back)
        still = [t.name for t in self._threads if t.is_alive()]
        if still:
            log.warning("event workers still running at shutdown (their events will be delivered again): %s", still)

    def wake(self, arn: str) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()
        self._wake.set()

    def release_orphans(self) -> int:
        """Make internal-queue messages claimed by a dead process receivable now (not after their
        visibility timeout). Only this process polls these queues: the data dir lock guarantees it."""
        db = self.events.db
        now = time.time()
        q, m = sqs_queues, sqs_messages
        ids = sa.select(q.c.id).where(q.c.account_id == INTERNAL_ACCOUNT, q.c.name.startswith(QUEUE_PREFIX))
        with db.begin() as conn:
            res = conn.execute(sa.update(m).where(m.c.queue_id.in_(ids), m.c.receive_count > 0, m.c.visible_at > now)
                               .values(visible_at=now))
        return res.rowcount or 0

    # ------------------------------------------------------------------ dispatcher
    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self.acks.flush()
            with self._cond:
                while not self._stop.is_set() and not self._refill_due() and not self.acks.pending():
                    self._cond.wait(0.5)
                free = self.capacity - self._outstanding
                refill = self._refill_due()
            if self._stop.is_set():
                break
            if not refill:           # woke only to settle
                continue
            self._wake.clear()
            with self._cond:
                self._woken = False
            got = self._claim_round(free)
            if not got and not self.acks.pending():
                self._wake.wait(self.idle_wait_s)
        for m, *_ in self._work.close():     # buffered, never started: given back (close() flushes)
            self.acks.nack(m.receipt, 0)

    def _refill_due(self) -> bool:
        """Claim when half the buffer is free, or now if the workers have nothing they may take, or
        an event was just enqueued (its account may be idle: it must not wait for the others)."""
        free = self.capacity - self._outstanding
        return free >= self.refill_at or (free > 0 and (self._woken or not self._work.runnable()))

    def ready_queues(self) -> dict[str, list[str]]:
        """Internal queues with a receivable message now, by account: one read (the earliest
        visibility time per queue is an index seek on (queue_id, visible_at))."""
        q, m = sqs_queues, sqs_messages
        earliest = sa.select(sa.func.min(m.c.visible_at)).where(m.c.queue_id == q.c.id).scalar_subquery()
        with self.events.db.read() as conn:
            rows = conn.execute(sa.select(q.c.region, q.c.name, earliest.label("at")).where(
                q.c.account_id == INTERNAL_ACCOUNT, q.c.name.startswith(QUEUE_PREFIX))).all()
        now = time.time()
        ready: dict[str, list[str]] = {}
        for r in rows:
            if r.at is not None and r.at <= now:
                arn = f"arn:aws:sqs:{r.region}:{INTERNAL_ACCOUNT}:{r.name}"
                ready.setdefault(account_of_queue(r.name), []).append(arn)
        return ready

    def _claim_round(self, free: int) -> int:
        """Claim transactions for the ready queues, round robin over accounts and then over each
        account's functions, sharing `free` between accounts, then between an account's functions."""
        got = 0
        try:
            ready = self.ready_queues()
        except Exception:
            log.exception("reading the internal queues failed")
            self._stop.wait(1.0)
            return 0
        self._rr += 1
        accounts = _rotated(sorted(ready), self._rr)
        for i, account in enumerate(accounts):
            if free <= 0 or self._stop.is_set():
                break
            room = min(-(-free // (len(accounts) - i)), self.account_buffer - self._held.get(account, 0))
            arns = _rotated(sorted(ready[account]), self._rr)
            for j, arn in enumerate(arns):
                if room <= 0 or self._stop.is_set():      # this account's buffer is full: the others' turn
                    break
                share = min(-(-room // (len(arns) - j)), self.function_buffer - self._held_queue.get(arn, 0))
                if share <= 0:
                    continue
                n = self._claim(account, arn, share)
                room -= n
                free -= n
                got += n
        return got

    def _claim(self, account: str, arn: str, n: int) -> int:
        try:
            msgs = self.queues.claim(arn, min(MAX_CLAIM, n), self.claim_visibility_s, 0)
        except AwsError as e:
            log.warning("claim from %s failed: %s", arn, e.message)
            return 0
        except Exception:
            log.exception("claim from %s failed", arn)
            self._stop.wait(1.0)
            return 0
        if msgs:
            now = time.monotonic()
            with self._cond:
                self._outstanding += len(msgs)
                self._held[account] = self._held.get(account, 0) + len(msgs)
                self._held_queue[arn] = self._held_queue.get(arn, 0) + len(msgs)
            for m in msgs:
                self._work.put((account, _function_of(m)), (m, now, arn))
        return len(msgs)

    # ------------------------------------------------------------------ workers
    def _work_loop(self) -> None:
        while True:
            got = self._work.get()
            if got is None:
                return
            lane, (m, claimed_at, arn) = got
            if self._stop.is_set():            # give it back: delivered by the next server
                self.acks.nack(m.receipt, 0)
                self._done(lane, arn)
                continue
            try:
                self.process(m, claimed_at, self.acks)
            except Exception:
                self.stats.add("platform_errors")
                log.exception("event message %s: unexpected failure; it will be delivered again", m.message_id)
                self.acks.nack(m.receipt, PLATFORM_RETRY_DELAY_S)
            finally:
                self._done(lane, arn)

    def _done(self, lane, arn: str) -> None:
        self._work.done(lane)
        with self._cond:
            self._outstanding -= 1
            for counts, key in ((self._held, lane[0]), (self._held_queue, arn)):
                n = counts.get(key, 0) - 1
                if n > 0:
                    counts[key] = n
                else:
                    counts.pop(key, None)
            self._cond.notify_all()

    def _scaled(self, seconds: float, minimum: int = 0) -> int:
        return max(minimum, int(math.ceil(seconds * self.retry_scale)))

    # ------------------------------------------------------------------ one event
    def process(self, m, claimed_at: float | None = None, acks=None) -> str:
        """Handle one claimed message completely; returns what happened (for tests). Its ack or nack
        goes to `acks` (the running poller's batch); by default it is applied before returning."""
        claimed_at = time.monotonic() if claimed_at is None else claimed_at
        acks = acks or self._immediate
        try:
            msg = EventMessage.decode(m.body)
        except (ValueError, KeyError, TypeError) as e:
            log.error("undecodable event message %s dropped: %s", m.message_id, e)
            self.stats.add("dropped")
            acks.ack(m.receipt)
            return "dropped"
        payload = self.events.load_payload(msg)
        if payload is None:
            log.error("event %s of %s: its payload is gone; dropped", msg.request_id, msg.qualified_arn)
            self.stats.add("dropped")
            acks.ack(m.receipt)
            return "dropped"
        cfg = self.configs.effective(msg.account_id, msg.region, msg.function_name, msg.qualifier)
        if time.time() - msg.enqueued_at > cfg.max_event_age_s * self.retry_scale:
            last = msg.last_error or {}
            self._fail(acks, m, msg, payload, cfg, EVENT_AGE_EXCEEDED, msg.attempts, last.get("v"),
                       last.get("fe"), last.get("p"))
            return EVENT_AGE_EXCEEDED
        ctx = internal_context(msg.account_id, msg.region, msg.request_id)
        try:
            target = self.invoker.resolve(ctx, msg.function_name, msg.qualifier)
        except (ResourceNotFoundException, InvalidParameterValueException) as e:
            log.warning("event %s of %s dropped: %s", msg.request_id, msg.qualified_arn, e.message)
            metrics.ASYNC_DROPPED.labels(msg.account_id, msg.function_name, "FunctionNotFound").inc()
            self.stats.add("dropped")
            acks.ack(m.receipt, msg.payload_ref)
            return "dropped"
        needed = int(target.timeout_s) + VISIBILITY_MARGIN_S
        if time.monotonic() - claimed_at + needed > self.claim_visibility_s:
            self.queues.nack(m.receipt, needed)        # extends the claim to cover this invocation
        metrics.event_age(msg.account_id, msg.function_name, msg.enqueued_at)
        try:
            result = self.invoker.run(ctx, target, payload, msg.client_context, tenant_id=msg.tenant_id,
                                      trace_header=msg.trace)
        except RecursiveInvocationException:     # AWS: not invoked; to the DLQ / on-failure destination
            self._fail(acks, m, msg, payload, cfg, RECURSION_DETECTED, msg.attempts, target.version, None, None,
                       role=target.role)
            return RECURSION_DETECTED
        except TooManyRequestsException:
            self.stats.add("throttled")
            backoff = min(MAX_THROTTLE_DELAY_S, 2 ** min(max(m.receive_count - 1, 0), 9))
            acks.nack(m.receipt, self._scaled(backoff, minimum=1))
            return "throttled"
        except AwsError as e:
            if self._stop.is_set():
                return "stopped"
            self.stats.add("platform_errors")
            log.error("event %s of %s: %s; will retry", msg.request_id, msg.qualified_arn, e.message)
            acks.nack(m.receipt, self._scaled(PLATFORM_RETRY_DELAY_S, minimum=1))
            return "platform_error"
        attempts = msg.attempts + 1
        if not result.function_error:
            if cfg.on_success:
                record = invocation_record(msg, payload, SUCCESS, attempts, executed_version=target.version,
                                           response=result.payload)
                self.destinations.send_record(msg, cfg.on_success, record, role=target.role)
            self.stats.add("succeeded")
            acks.ack(m.receipt, msg.payload_ref)
            return SUCCESS
        if attempts <= cfg.max_retry_attempts:
            delay = self._scaled(FIRST_RETRY_DELAY_S * 2 ** (attempts - 1))
            self.events.enqueue(msg.retried(attempts, last_error_of(result.function_error, target.version,
                                                                    result.payload)), delay_s=delay)
            lifecycle.event_outcome("retry", msg, attempt=attempts, delay_s=delay, error=result.function_error)
            self.stats.add("retried")
            acks.ack(m.receipt)           # the retry message carries the payload (reference) on
            return "retried"
        self._fail(acks, m, msg, payload, cfg, RETRIES_EXHAUSTED, attempts, target.version,
                   result.function_error, result.payload, role=target.role)
        return RETRIES_EXHAUSTED

    def _fail(self, acks, m, msg: EventMessage, payload: bytes, cfg: EffectiveConfig, condition: str, invoke_count: int,
              executed_version: str | None, function_error: str | None, response, role: str | None = None) -> None:
        """`role`: the invoked version's execution role (None: Destinations looks it up), whose authority
        the record and the dead-letter message are sent with."""
        if cfg.on_failure:
            record = invocation_record(msg, payload, condition, invoke_count, executed_version=executed_version,
                                       function_error=function_error, response=response)
            sent = self.destinations.send_record(msg, cfg.on_failure, record, role=role)
            lifecycle.event_outcome("on-failure-destination", msg, condition=condition, attempts=invoke_count,
                                    destination=cfg.on_failure, delivered=sent)
        try:
            dlq = self.dead_letter_of(msg)
        except (ResourceNotFoundException, InvalidParameterValueException):
            dlq = None
        if dlq:
            fallback = {EVENT_AGE_EXCEEDED: "Event age exceeded MaximumEventAgeInSeconds",
                        RECURSION_DETECTED: "Recursive invocation detected"}.get(condition, "Function error")
            sent = self.destinations.send_dead_letter(msg, dlq, payload, 200, error_message_of(response, fallback),
                                                      role=role)
            lifecycle.event_outcome("dead-letter", msg, condition=condition, attempts=invoke_count, queue=dlq,
                                    delivered=sent)
        if not cfg.on_failure and not dlq:
            lifecycle.event_outcome("discarded", msg, condition=condition, attempts=invoke_count)
        metrics.ASYNC_DROPPED.labels(msg.account_id, msg.function_name, condition).inc()
        self.stats.add("failed")
        acks.ack(m.receipt, msg.payload_ref)


def _rotated(items: list, n: int) -> list:
    if not items:
        return items
    k = n % len(items)
    return items[k:] + items[:k]


def _function_of(m) -> str:
    """The function an event is for (fairness between an account's functions); "" if undecodable
    (process() drops it)."""
    try:
        return EventMessage.decode(m.body).function_name
    except (ValueError, KeyError, TypeError):
        return ""
