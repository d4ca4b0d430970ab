"""The audit writer: requests hand their facts to `submit` (a queue put, never blocking); one
background thread turns them into CloudTrail records, chains, seals and inserts them in batches
(one transaction per batch), and signs a digest every `digest_interval_s` seconds even when idle,
after every `digest_every` events, and once more (`final`) on `close()`.

The guarantee, and how it is kept (docs/threat-model.md, "The audit trail"):
- A call answered as a success is in the trail. Its submit carries `on_done`, called with True
  once its row committed or False if it cannot be; the API hook (api/audit_hook.py) waits for it
  before answering and answers `ServiceException` (500, retried by every SDK) on False. So a crash,
  a full disk or a failing database can cost the record of a call only if that call was not
  answered as a success. Why wait rather than write in the call's own transaction: the record
  needs the call's outcome (response elements, error), services own their transactions, and the
  writer's group commit keeps the cost to one shared commit per batch.
- While the writer is failing (its last write did not commit) or its queue is nearly full,
  `admit` is False and the hook refuses recorded calls BEFORE they run, with the same error: no
  state changes that then cannot be recorded.
- The queue is bounded in bytes (`max_queue_bytes`): it holds slim facts (audit/facts.py: no
  blobs, an exception's code and message only), and an item that does not fit is refused (its
  call fails as above) instead of growing memory.
- Records of calls that failed anyway (errors, refused signatures) are not waited for; when one
  cannot be written it is counted and reported in the log (`lost_unawaited`).
- A write is retried for `batch_deadline_s`, at most once per `_FAILING_RETRY_S`, then its batch is
  given up (its waiters told False). `close`
  drains for at most `close_timeout_s`, writes the final digest, and logs what could not be
  written: a shutdown on a failing disk takes seconds, not minutes.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lambdalet.audit import digests, facts, records
from lambdalet.audit.trail_writer import ChainState, TrailWriter, read_state

__all__ = ["AuditRecorder", "ChainState", "read_state"]

log = logging.getLogger("lambdalet.audit")

_STOP = object()
_FAILING_RETRY_S = 0.5
_FAILING_CLOSE_S = 2.0
_ITEM_BASE_BYTES = 1024          # the item dict, the context, the record built from it


@dataclass
class _Marker:
    done: threading.Event = field(default_factory=threading.Event)
    digest: bool = False


class AuditRecorder:
    def __init__(self, db, keyring, audit_dir: Path, *, data_events: bool = False, digest_every: int = 500,
                 digest_interval_s: float = 3600.0, digest_dir: Path | None = None, batch_max: int = 256,
                 max_queue_bytes: int = 16 << 20, batch_deadline_s: float = 5.0, close_timeout_s: float = 10.0,
                 resolve_account: Callable[[str], str | None] | None = None,
                 refused_per_s: float = 50.0, refused_burst: int = 500,
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.keyring = keyring
        self.audit_dir = Path(audit_dir)
        self.data_events = data_events
        self.digest_every = max(1, int(digest_every))
        self.digest_interval_s = max(0.05, float(digest_interval_s))
        self.digest_dir = Path(digest_dir) if digest_dir is not None else None
        self.batch_max = max(1, int(batch_max))
        self.max_queue_bytes = int(max_queue_bytes)
        self.batch_deadline_s = float(batch_deadline_s)
        self.close_timeout_s = float(close_timeout_s)
        self.resolve_account = resolve_account
        self.clock = clock
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._qlock = threading.Lock()         # submit's accounting vs. close's STOP (never held long)
        self._closed = False
        self._stop_deadline: float | None = None
        self._writer: TrailWriter | None = None
        self._next_digest = float("inf")
        self.queued_bytes = 0
        self.failing = False
        self._last_failed_attempt = 0.0
        self.written = 0
        self.lost_awaited = 0          # records whose call was answered with an error because of it
        self.lost_unawaited = 0        # records of calls that had failed (or were refused) anyway
        # Refused (unauthenticated) requests cost an attacker nothing: a token bucket bounds how
        # fast they can grow the trail; the next recorded refusal carries the count dropped before it.
        self.refused_per_s = float(refused_per_s)
        self.refused_burst = float(refused_burst)
        self._tokens = float(refused_burst)
        self._tokens_at = time.monotonic()
        self.suppressed = 0
        self._suppressed_pending = 0

    # ---- lifecycle ----
    def start(self) -> "AuditRecorder":
        key = digests.load_or_create_signing_key(self.audit_dir, self.keyring)
        self._writer = TrailWriter(self.db, self.keyring, key, digest_dir=self.digest_dir,
                                   interval_s=self.digest_interval_s, resolve_account=self.resolve_account,
                                   clock=self.clock)
        self._writer.adopt_orphan_files()
        self._next_digest = self._writer.next_due()
        self._thread = threading.Thread(target=self._run, name="lambdalet-audit-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Drain (for at most `timeout`, default close_timeout_s), commit, write the final digest,
        stop the thread, and say loudly what could not be written. Idempotent."""
        budget = self.close_timeout_s if timeout is None else float(timeout)
        if self.failing:     # already failing: a few more attempts, not a long wait on a dead disk
            budget = min(budget, _FAILING_CLOSE_S)
        with self._qlock:
            if self._closed:
                return
            self._closed = True
            self._stop_deadline = time.monotonic() + budget
            if self._thread is not None:
                self._q.put(_STOP)      # after every item already queued
        if self._thread is not None:
            self._thread.join(budget + 2.0)
            if self._thread.is_alive():
                log.error("audit writer did not finish within %.0fs; what it still held is lost", budget)
        if self._suppressed_pending:
            log.warning("audit: %d refused requests were not recorded (rate limit)", self._suppressed_pending)
        if self.lost_awaited or self.lost_unawaited:
            log.error("AUDIT RECORDS LOST: %d could not be written: %d of calls answered with ServiceException "
                      "because of it, %d of calls that had failed or were refused anyway; no call answered as a "
                      "success lacks its record", self.lost_awaited + self.lost_unawaited, self.lost_awaited,
                      self.lost_unawaited)

    def flush(self, timeout: float | None = 10.0, *, digest: bool = False) -> bool:
        """Wait until everything submitted so far is committed (and, with digest=True, sealed by a
        digest). False on timeout or if the writer is not running."""
        if self._thread is None or not self._thread.is_alive():
            return False
        marker = _Marker(digest=digest)
        self._q.put(marker)
        return marker.done.wait(timeout)

    @property
    def public_key_path(self) -> Path:
        return self.audit_dir / digests.PUBLIC_FILE

    # ---- the request path ----
    def recorded(self, service: str | None, operation: str | None) -> bool:
        """Whether a call of this operation is written to the trail."""
        return self.data_events or not records.is_data_event(service, operation)

    def admit(self, service: str | None, operation: str | None) -> bool:
        """False when a recorded call should not run now: its record could not be kept (the writer is
        failing, or its queue is over three quarters full)."""
        if not self.recorded(service, operation) or self._closed:
            return True
        return not self.failing and self.queued_bytes < self.max_queue_bytes * 3 // 4

    def submit(self, *, service: str | None, operation: str | None, ctx: Any | None, params: dict | None,
               result: dict | None, error: BaseException | None, source_ip: str = "", user_agent: str = "",
               access_key_id: str | None = None, request_id: str | None = None, region: str | None = None,
               event_time: float | None = None, on_done: Callable[[bool], None] | None = None) -> None:
        """Queue one call's facts; returns at once. `on_done(committed)` is called (from the writer
        thread, or here) once the record is in the trail or cannot be. Data events are dropped here
        unless enabled (on_done(True): nothing is owed)."""
        if not self.recorded(service, operation):
            _call(on_done, True)
            return
        suppressed = 0
        if ctx is None:
            with self._qlock:
                now = time.monotonic()
                self._tokens = min(self.refused_burst, self._tokens + (now - self._tokens_at) * self.refused_per_s)
                self._tokens_at = now
                if self._tokens < 1:
                    self.suppressed += 1
                    self._suppressed_pending += 1
                    _call(on_done, False)
                    return
                self._tokens -= 1
                suppressed, self._suppressed_pending = self._suppressed_pending, 0
        slim_params = facts.slim(params) if params is not None else None
        slim_result = (facts.slim(result) if result is not None and error is None
                       and not records.is_read_only(operation) else None)     # the record keeps no more
        item = dict(service=service, operation=operation, ctx=ctx, params=slim_params, result=slim_result,
                    error=facts.ErrorFacts.of(error), source_ip=source_ip, user_agent=user_agent,
                    access_key_id=access_key_id, request_id=request_id, region=region,
                    event_time=self.clock() if event_time is None else event_time, suppressed=suppressed,
                    on_done=on_done)
        item["_bytes"] = _ITEM_BASE_BYTES + facts.size(slim_params) + facts.size(slim_result)
        with self._qlock:
            running = not self._closed and self._thread is not None
            if running:
                if self.queued_bytes + item["_bytes"] > self.max_queue_bytes:
                    running = None                 # refused: over the bound
                else:
                    self.queued_bytes += item["_bytes"]
                    self._q.put(item)
                    return
        if running is None:
            self._settle([item], False, reason="the audit queue is full")
            return
        # After close (a request that outlived the server's drain): write it synchronously, once.
        try:
            self._writer.write_events([item])
            self._writer.write_digest(final=True)
            ok = True
        except Exception:
            log.exception("audit: could not record %s after shutdown", operation)
            ok = False
        self._settle([item], ok, accounted=False)

    # ---- the writer thread ----
    def _run(self) -> None:
        stop = False
        while not stop:
            timeout = max(0.0, self._next_digest - time.monotonic())
            try:
                first = self._q.get(timeout=timeout)
            except queue.Empty:
                first = None
            items, markers, stop = self._take(first)
            try:
                self._write(items)
                if stop and not self._attempt(lambda: self._writer.write_digest(final=True)):
                    log.error("audit: the final digest could not be written; `lambdalet audit verify` will report "
                              "the trail's end as a gap (as after a crash)")
                elif (self._writer.pending >= self.digest_every or time.monotonic() >= self._next_digest
                      or (self._writer.pending and any(m.digest for m in markers))):
                    self._digest()
            except Exception:          # never let the thread die: its waiters would hang
                log.exception("audit writer: unexpected error")
                self._settle(items, False)
            for m in markers:
                m.done.set()

    def _take(self, first) -> tuple[list[dict], list[_Marker], bool]:
        items, markers, stop = [], [], False
        obj = first
        while obj is not None:
            if obj is _STOP:
                stop = True
            elif isinstance(obj, _Marker):
                markers.append(obj)
            else:
                items.append(obj)
            if len(items) >= self.batch_max and not stop and not self.failing:
                break
            try:
                obj = self._q.get_nowait()
            except queue.Empty:
                obj = None
        return items, markers, stop

    def _write(self, items: list[dict]) -> None:
        while items:     # batches end at digest boundaries, so count digests cover N events each
            room = self.digest_every - self._writer.pending
            chunk, items = items[:max(1, min(len(items), room))], items[max(1, min(len(items), room)):]
            ok = self._attempt(lambda: self._writer.write_events(chunk))
            self._settle(chunk, ok, reason="the trail's store is failing")
            if not ok:
                self._settle(items, False, reason="the trail's store is failing")
                return
            if self._writer.pending >= self.digest_every:
                self._digest()

    def _digest(self) -> None:
        if self._attempt(lambda: self._writer.write_digest()):
            self._next_digest = time.monotonic() + self.digest_interval_s
        else:
            self._next_digest = time.monotonic() + 1.0     # retried soon; verify allows the slack

    def _attempt(self, fn) -> bool:
        """Run one write, retrying until the batch deadline (or a close's deadline); attempts are
        paced to one per _FAILING_RETRY_S while failing, and a batch that starts while the store is
        already failing gets one attempt (its waiters learn at once). True if it committed."""
        single = self.failing
        deadline = time.monotonic() + self.batch_deadline_s
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
        while True:
            if self.failing:
                wait = self._last_failed_attempt + _FAILING_RETRY_S - time.monotonic()
                if wait > 0:
                    if time.monotonic() + wait > deadline:
                        return False
                    time.sleep(wait)
            if time.monotonic() > deadline:
                return False
            try:
                fn()
            except Exception as e:
                self._last_failed_attempt = time.monotonic()
                if not self.failing:
                    self.failing = True
                    log.error("audit writer: write failed (%s); recorded calls are refused until it recovers",
                              e, exc_info=True)
                if single:
                    return False
                continue
            if self.failing:
                self.failing = False
                log.warning("audit writer: writes succeed again; recorded calls are accepted")
            return True

    def _settle(self, items: list[dict], ok: bool, *, reason: str = "", accounted: bool = True) -> None:
        """Release the items' bytes and tell their waiters; count what is lost."""
        items = [i for i in items if not i.get("_settled")]
        if not items:
            return
        for i in items:
            i["_settled"] = True
        if accounted:
            with self._qlock:
                self.queued_bytes -= sum(i["_bytes"] for i in items)
        if ok:
            self.written += len(items)
        else:
            awaited = sum(1 for i in items if i["on_done"] is not None)
            self.lost_awaited += awaited
            self.lost_unawaited += len(items) - awaited
            log.error("audit: %d record(s) not written (%s): %d call(s) answered ServiceException instead, "
                      "%d of calls that had failed anyway", len(items), reason or "write failed", awaited,
                      len(items) - awaited)
        for i in items:
            _call(i["on_done"], ok)


def _call(fn, ok: bool) -> None:
    if fn is None:
        return
    try:
        fn(ok)
    except Exception:
        log.exception("audit: a completion callback failed")
