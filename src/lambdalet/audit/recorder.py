"""The audit writer: requests hand their facts to `submit` (a queue put, never blocking); one
background thread turns them into CloudTrail records, chains, seals and inserts them in batches
(one transaction per batch), and writes a signed digest every `digest_every` events or
`digest_interval_s` seconds, and once more on `close()`.

Nothing is lost on a clean shutdown: `close()` drains the queue, commits, writes the final digest
and only then returns. A failing database is retried (with backoff) rather than dropping events;
the in-memory chain state moves only after a commit. A crash loses what was still queued (at
most one batch window, typically milliseconds) — the chain stays valid, and a verifier reports
the events after the last digest as covered by the hash chain only.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa

from lambdalet.audit import chain, digests, records
from lambdalet.audit.tables import audit_digests, audit_events

log = logging.getLogger("lambdalet.audit")

_STOP = object()


@dataclass
class _Marker:
    done: threading.Event = field(default_factory=threading.Event)
    digest: bool = False


@dataclass(frozen=True)
class ChainState:
    last_seq: int
    last_hash: bytes
    digest_number: int
    digest_last_seq: int
    digest_signature: str | None


def read_state(conn) -> ChainState:
    row = conn.execute(sa.select(audit_events.c.seq, audit_events.c.hash)
                       .order_by(audit_events.c.seq.desc()).limit(1)).first()
    d = conn.execute(sa.select(audit_digests).order_by(audit_digests.c.number.desc()).limit(1)).first()
    return ChainState(row.seq if row else 0, bytes.fromhex(row.hash) if row else chain.GENESIS,
                      d.number if d else 0, d.last_seq if d else 0, d.signature if d else None)


class AuditRecorder:
    def __init__(self, db, keyring, audit_dir: Path, *, data_events: bool = False, digest_every: int = 500,
                 digest_interval_s: float = 60.0, batch_max: int = 256,
                 resolve_account: Callable[[str], str | None] | None = None,
                 refused_per_s: float = 50.0, refused_burst: int = 500,
                 clock: Callable[[], float] = time.time):
        self.db = db
        self.keyring = keyring
        self.audit_dir = Path(audit_dir)
        self.data_events = data_events
        self.digest_every = max(1, int(digest_every))
        self.digest_interval_s = float(digest_interval_s)
        self.batch_max = max(1, int(batch_max))
        self.resolve_account = resolve_account
        self.clock = clock
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()          # serialises writes (thread vs. post-close fallback)
        self._qlock = threading.Lock()         # orders submit's put against close's STOP (never held long)
        self._closed = False
        self._key = None
        self._fingerprint = ""
        self._state: ChainState | None = None
        self._undigested_since: float | None = None
        self.written = 0
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
        self._key = digests.load_or_create_signing_key(self.audit_dir, self.keyring)
        self._fingerprint = digests.fingerprint(self._key.public_key())
        with self.db.read() as conn:
            self._state = read_state(conn)
        if self._state.last_seq > self._state.digest_last_seq:   # a crash before the last digest
            self._undigested_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lambdalet-audit-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 60.0) -> None:
        """Drain, commit, write the final digest, stop the thread. Idempotent."""
        with self._qlock:
            if self._closed:
                return
            self._closed = True
            if self._thread is not None:
                self._q.put(_STOP)      # after every item already queued
        if self._thread is not None:
            self._thread.join(timeout)
        if self._suppressed_pending:
            log.warning("audit: %d refused requests were not recorded (rate limit)", self._suppressed_pending)
            if self._thread.is_alive():
                log.error("audit writer did not finish within %.0fs; queued events may be lost", timeout)

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
    def submit(self, *, service: str | None, operation: str | None, ctx: Any | None, params: dict | None,
               result: dict | None, error: BaseException | None, source_ip: str = "", user_agent: str = "",
               access_key_id: str | None = None, request_id: str | None = None, region: str | None = None,
               event_time: float | None = None) -> None:
        """Queue one call's facts; returns at once. Data events are dropped here unless enabled."""
        if records.is_data_event(service, operation) and not self.data_events:
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
                    return
                self._tokens -= 1
                suppressed, self._suppressed_pending = self._suppressed_pending, 0
        item = dict(service=service, operation=operation, ctx=ctx, params=params, result=result, error=error,
                    source_ip=source_ip, user_agent=user_agent, access_key_id=access_key_id,
                    request_id=request_id, region=region,
                    event_time=self.clock() if event_time is None else event_time, suppressed=suppressed)
        with self._qlock:
            if not self._closed and self._thread is not None:
                self._q.put(item)
                return
        # After close (a request that outlived the server's drain): write it synchronously.
        try:
            self._write_batch([item])
            self._maybe_digest(force=True)
        except Exception:
            log.exception("audit: could not record %s after shutdown", operation)

    # ---- the writer thread ----
    def _run(self) -> None:
        stop = False
        while not stop:
            timeout = None
            if self._undigested_since is not None:
                timeout = max(0.0, self._undigested_since + self.digest_interval_s - time.monotonic())
            try:
                first = self._q.get(timeout=timeout)
            except queue.Empty:
                first = None
            items, markers = [], []
            pending = [first] if first is not None else []
            while pending:
                obj = pending.pop()
                if obj is _STOP:
                    stop = True
                elif isinstance(obj, _Marker):
                    markers.append(obj)
                else:
                    items.append(obj)
                if len(items) < self.batch_max and not stop:
                    try:
                        pending.append(self._q.get_nowait())
                    except queue.Empty:
                        pass
            if stop:      # take everything submitted before close()
                while True:
                    try:
                        obj = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(obj, _Marker):
                        markers.append(obj)
                    elif obj is not _STOP:
                        items.append(obj)
            try:
                while items:     # batches end at digest boundaries, so digests cover N events each
                    st = self._state
                    room = self.digest_every - (st.last_seq - st.digest_last_seq)
                    n = max(1, min(self.batch_max, room))
                    chunk, items = items[:n], items[n:]
                    self._retrying(self._write_batch, chunk, stopping=stop)
                    if items:
                        self._retrying(self._maybe_digest, stopping=stop)
                self._retrying(self._maybe_digest, stopping=stop,
                               force=stop or any(m.digest for m in markers))
            except Exception:
                log.exception("audit writer: giving up on %d events", len(items))
            for m in markers:
                m.done.set()

    def _retrying(self, fn, *args, stopping: bool, **kw) -> None:
        delay, attempts = 0.05, 0
        while True:
            try:
                return fn(*args, **kw)
            except Exception:
                attempts += 1
                if stopping and attempts >= 20:
                    raise
                log.exception("audit writer: write failed (attempt %d); retrying in %.1fs", attempts, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _build(self, item: dict) -> dict:
        ctx = item["ctx"]
        caller = getattr(ctx, "caller", None)
        account = None
        if caller is None and item["access_key_id"] and self.resolve_account is not None:
            try:
                account = self.resolve_account(item["access_key_id"]) or ""
            except Exception:
                account = ""
        kw = dict(service=item["service"], operation=item["operation"], caller=caller,
                  params=item["params"], result=item["result"], error=item["error"],
                  source_ip=item["source_ip"], user_agent=item["user_agent"],
                  access_key_id=item["access_key_id"] or getattr(caller, "access_key_id", None),
                  request_id=item["request_id"] or getattr(ctx, "request_id", None),
                  region=item["region"] or getattr(ctx, "region", None), event_time=item["event_time"],
                  account_id=account)
        try:
            record = records.build_record(**kw)
        except Exception:   # a bug must not cost the event: keep what is certainly serialisable
            log.exception("audit: could not build the record of %s; recording it without parameters",
                          item["operation"])
            kw.update(params=None, result=None, caller=None)
            record = records.build_record(**kw)
        if item.get("suppressed"):
            record["additionalEventData"] = {"refusedRequestsNotRecordedBefore": item["suppressed"]}
        return record

    def _write_batch(self, items: list[dict]) -> None:
        if not items:
            return
        with self._lock:
            state = self._state
            for item in items:          # built once: a retried batch keeps its eventIDs
                if "_record" not in item:
                    item["_record"] = self._build(item)
            built = [item["_record"] for item in items]
            seq, h = state.last_seq, state.last_hash
            rows = []
            for record in built:
                seq += 1
                doc = chain.event_document(seq, record)
                h = chain.next_hash(h, doc)
                cols = records.index_columns(record)
                sealed = chain.seal_event(self.keyring, cols["event_id"], doc)
                rows.append(dict(seq=seq, hash=h.hex(), body_sealed=sealed, **cols))
            with self.db.begin() as conn:
                conn.execute(audit_events.insert(), rows)
            self._state = ChainState(seq, h, state.digest_number, state.digest_last_seq, state.digest_signature)
            self.written += len(rows)
            if self._undigested_since is None:
                self._undigested_since = time.monotonic()

    def _maybe_digest(self, *, force: bool = False) -> None:
        with self._lock:
            state = self._state
            pending = state.last_seq - state.digest_last_seq
            if pending <= 0:
                self._undigested_since = None
                return
            due = (pending >= self.digest_every or force or (
                self._undigested_since is not None
                and time.monotonic() - self._undigested_since >= self.digest_interval_s))
            if not due:
                return
            d = digests.Digest(state.digest_number + 1, state.digest_last_seq + 1, state.last_seq,
                               state.last_hash.hex(), self.clock(), state.digest_signature, self._fingerprint)
            body, sig = digests.sign(self._key, d)
            with self.db.begin() as conn:
                conn.execute(audit_digests.insert().values(number=d.number, first_seq=d.first_seq,
                                                           last_seq=d.last_seq, created_at=d.time,
                                                           body=body, signature=sig))
            self._state = ChainState(state.last_seq, state.last_hash, d.number, d.last_seq, sig)
            self._undigested_since = None
