"""Function logs at rest: groups, streams, and events sealed in batches.

Write path (`LogSink`, one per execution environment): the sandbox hands the sink every byte the
environment logs, START/END/REPORT lines included. The sink splits the bytes into events at "\n"
(the newline stays in the message, as in Lambda's own log events), stamps each event with its
arrival time in epoch ms (never decreasing within a stream) and appends it to an in-memory buffer;
that is all the invoke path ever does, so it never waits on the database. A background flusher
writes the buffers every FLUSH_INTERVAL_S, at once after a REPORT line, on `close()` and when the
store closes; a flush is one write transaction that creates the group and stream on first use
(as AWS does for /aws/lambda/NAME) and appends one `log_batches` row per run of events.
A partial line is held until its newline, a platform line (START/END/REPORT, the timeout and
exit lines) or PARTIAL_LINE_WAIT_S has passed; lines over MAX_EVENT_BYTES are split.

At rest: each batch is ONE keyring envelope of zlib-compressed JSON `[[timestamp, message], ...]`;
its AAD binds account, region, group name, stream name and the sequence range, so rows cannot be
moved between streams, accounts or positions. Nothing of a message is stored in plain text.

Positions: every event of a stream has an ordinal (`seq`, from `log_streams.next_seq`);
GetLogEvents' f/ and b/ tokens are ordinals. FilterLogEvents orders a group's events by
(timestamp, stream id, seq) and its token is the first key not yet consumed.

Retention: a group's `retentionInDays` (PutRetentionPolicy) is enforced by a maintenance pass every
MAINTENANCE_INTERVAL_S, which also caps each group at `max_group_bytes` of message bytes (default
1 GiB) by deleting its oldest batches. Each flush also applies quotas.py: a log rate per function and
stored bytes per account. Events still in a buffer when the process is killed
(at most ~FLUSH_INTERVAL_S of output) are lost; a clean shutdown (`close()`) writes them.
"""
from __future__ import annotations

import collections
import heapq
import json
import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lambdalet.logs.platform import is_report
from lambdalet.logs.quotas import LogQuotas, RateLimiter, dropped_line
from lambdalet.logs.tables import log_batches, log_groups, log_streams
from lambdalet.store.db import Database

log = logging.getLogger("lambdalet.logs")

MAX_EVENT_BYTES = 262_144 - 26          # AWS's event size limit (256 KiB including 26 bytes overhead)
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_SPAN_MS = 60_000              # a batch never spans more: time-range queries rely on it
FLUSH_INTERVAL_S = 0.2
# A REPORT line wakes the flusher, which then waits this long so that the invocations ending meanwhile
# share one transaction: one per invocation cost the server ~1.2 ms of CPU (SQL, seal) and, holding
# the GIL while the next response was being sent, most of a warm Invoke's latency over the API floor.
REPORT_COALESCE_S = 0.05
PARTIAL_LINE_WAIT_S = 1.0
MAX_BUFFER_BYTES = 16 * 1024 * 1024     # per sink, while the database is unavailable; oldest dropped
MAINTENANCE_INTERVAL_S = 60.0
DEFAULT_MAX_GROUP_BYTES = 1 << 30
DAY_MS = 86_400_000

GROUP_NAME_RE = re.compile(r"[\.\-_/#A-Za-z0-9]{1,512}")
STREAM_NAME_RE = re.compile(r"[^:*]{1,512}", re.S)

# Chunks the platform itself emits: a pending partial line of the function ends before them.
# (platform.py: text lines, JSON records of LogFormat=JSON, the timeout / exit lines)
_PLATFORM_CHUNK = re.compile(rb"(?:START|END|REPORT|INIT_START) RequestId: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                             rb'|\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","type":"platform\.')


@dataclass(frozen=True)
class StreamKey:
    account_id: str
    region: str
    group: str
    stream: str


@dataclass(frozen=True)
class Group:
    id: int
    account_id: str
    region: str
    name: str
    created_ms: int
    retention_days: int | None
    stored_bytes: int


@dataclass(frozen=True)
class Stream:
    id: int
    group_id: int
    name: str
    created_ms: int
    first_event_ms: int | None
    last_event_ms: int | None
    last_ingestion_ms: int | None
    next_seq: int
    stored_bytes: int


@dataclass(frozen=True)
class Event:
    stream_id: int
    stream_name: str
    seq: int
    timestamp: int
    message: str
    ingestion_time: int

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.timestamp, self.stream_id, self.seq)

    @property
    def event_id(self) -> str:
        # 56 digits like AWS's; stable across calls (clients de-duplicate on it when following).
        return f"{self.timestamp:020d}{self.stream_id:012d}{self.seq:024d}"


def _aad(key: StreamKey, first_seq: int, last_seq: int) -> bytes:
    return json.dumps(["lambdalet-logs-v1", key.account_id, key.region, key.group, key.stream,
                       first_seq, last_seq], separators=(",", ":")).encode()


def _utf8_cut(buf: bytes | bytearray, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 sequence (falls back to limit)."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


class LogSink:
    """Callable with the environment's output (bytes); `platform()` with the platform's own lines, which
    alone pass the rate limit (a function printing "START RequestId: ..." gets no such pass). Never
    blocks on I/O. `close()` hands what is left to the flusher."""

    def __init__(self, store: "LogStore", key: StreamKey):
        self.key = key
        self._store = store
        self._lock = threading.Lock()
        self._partial = bytearray()
        self._partial_since = 0.0
        # (ts, message, bytes, from the platform)
        self._events: collections.deque[tuple[int, str, int, bool]] = collections.deque()
        self._buffered = 0
        self._last_ts = 0
        self.dropped = 0
        self.closed = False

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        urgent = False
        with self._lock:
            ts = self._stamp()
            if self._partial and _PLATFORM_CHUNK.match(data):
                self._add(bytes(self._partial), ts)
                self._partial.clear()
            had_partial = bool(self._partial)
            self._partial += data
            start = 0
            while True:
                nl = self._partial.find(b"\n", start)
                if nl < 0:
                    break
                line = bytes(self._partial[start:nl + 1])
                start = nl + 1
                self._add(line, ts)
                if is_report(line):
                    urgent = True
            if start:
                del self._partial[:start]
            while len(self._partial) > MAX_EVENT_BYTES:
                cut = _utf8_cut(self._partial, MAX_EVENT_BYTES)
                self._add(bytes(self._partial[:cut]), ts)
                del self._partial[:cut]
            if not self._partial:
                self._partial_since = 0.0
            elif start or not had_partial:
                self._partial_since = time.monotonic()
        self._store._mark_dirty(self, urgent)

    def platform(self, data: bytes) -> None:
        """Lines the platform wrote (sandbox/host.py: START/END/REPORT or their JSON records, the timeout
        and exit lines): they end a pending partial line of the function and are marked as the platform's."""
        if not data:
            return
        urgent = False
        with self._lock:
            ts = self._stamp()
            if self._partial:
                self._add(bytes(self._partial), ts)
                self._partial.clear()
                self._partial_since = 0.0
            for line in data.splitlines(keepends=True):
                self._add(line, ts, True)
                urgent = urgent or is_report(line)
        self._store._mark_dirty(self, urgent)

    def close(self) -> None:
        """The environment is gone: its last partial line becomes an event; the flusher writes it
        shortly (does not wait for the database)."""
        with self._lock:
            self.closed = True
        self._store._mark_dirty(self, True)

    def flush(self) -> None:
        """Write everything buffered now (waits for the database: not for the invoke path)."""
        self._store._flush([self], force_partial=self.closed)

    # --- internals (lock held) ---
    def _stamp(self) -> int:
        ts = max(int(self._store.clock() * 1000), self._last_ts)
        self._last_ts = ts
        return ts

    def _add(self, line: bytes, ts: int, platform: bool = False) -> None:
        while line:
            cut = len(line) if len(line) <= MAX_EVENT_BYTES else _utf8_cut(line, MAX_EVENT_BYTES)
            piece, line = line[:cut], line[cut:]
            self._events.append((ts, piece.decode("utf-8", "replace"), len(piece), platform))
            self._buffered += len(piece)
        while self._buffered > MAX_BUFFER_BYTES and self._events:
            self._buffered -= self._events.popleft()[2]
            self.dropped += 1

    def _take(self, force_partial: bool) -> tuple[list[tuple[int, str, int]], bool]:
        """Everything ready to write, and whether a partial line is still pending."""
        with self._lock:
            if self._partial and (force_partial or self.closed
                                  or time.monotonic() - self._partial_since >= PARTIAL_LINE_WAIT_S):
                self._add(bytes(self._partial), self._stamp())
                self._partial.clear()
                self._partial_since = 0.0
            events = list(self._events)
            self._events.clear()
            self._buffered = 0
            return events, bool(self._partial)

    def _put_back(self, events: list[tuple[int, str, int]]) -> None:
        with self._lock:
            self._events.extendleft(reversed(events))
            self._buffered += sum(e[2] for e in events)
            while self._buffered > MAX_BUFFER_BYTES and self._events:
                self._buffered -= self._events.popleft()[2]
                self.dropped += 1


_STREAM_UPDATE = log_streams.update().where(log_streams.c.id == sa.bindparam("b_id")).values(
    next_seq=sa.bindparam("b_next_seq"), first_event_ms=sa.bindparam("b_first"), last_event_ms=sa.bindparam("b_last"),
    last_ingestion_ms=sa.bindparam("b_ingestion"), stored_bytes=log_streams.c.stored_bytes + sa.bindparam("b_added"))
_GROUP_GROW = log_groups.update().where(log_groups.c.id == sa.bindparam("b_id")).values(
    stored_bytes=log_groups.c.stored_bytes + sa.bindparam("b_added"))


class _FlushBatch:
    """One flush's writes, issued together (executemany): every new log batch in one INSERT, every
    stream's update in one UPDATE, each group (a function's environments share it) looked up and grown
    once. SQLAlchemy's per-statement cost, not SQLite, was most of the flusher's CPU per invocation."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str], list[int]] = {}   # group -> [id, bytes added]
        self.streams_seen: set[tuple[int, str]] = set()
        self.state: dict[StreamKey, tuple[int, int, int, int | None, int | None]] = {}   # what the cache learns
        self.batches: list[dict] = []
        self.streams: list[dict] = []

    def write(self, conn: Connection) -> None:
        if self.batches:
            conn.execute(log_batches.insert(), self.batches)
        if self.streams:
            conn.execute(_STREAM_UPDATE, self.streams)
        grown = [{"b_id": gid, "b_added": added} for gid, added in self.groups.values() if added]
        if grown:
            conn.execute(_GROUP_GROW, grown)
        for entry in self.groups.values():
            entry[1] = 0
        self.batches, self.streams, self.streams_seen = [], [], set()


class LogStore:
    def __init__(self, db: Database, keyring, *, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = FLUSH_INTERVAL_S, max_group_bytes: int = DEFAULT_MAX_GROUP_BYTES,
                 maintenance_interval_s: float = MAINTENANCE_INTERVAL_S, background: bool = True,
                 quotas: LogQuotas = LogQuotas(), headroom=None):
        self.db = db
        self.headroom = headroom      # store/headroom.DiskHeadroom: below its low-water mark logs are dropped
        self.quotas = quotas
        self._rate = RateLimiter(quotas)
        self._account_bytes: dict[str, int] = {}   # stored message bytes per account (flusher's view)
        self.keyring = keyring
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.max_group_bytes = max_group_bytes
        self.maintenance_interval_s = maintenance_interval_s
        self._lock = threading.Lock()
        self._dirty: dict[int, LogSink] = {}
        self._write_lock = threading.Lock()    # one take+write at a time: keeps each stream's order
        # Each stream's (group id, stream id, next seq, first/last event ms) as this process last wrote
        # it: a flush then needs no SELECT per stream. Read and changed only inside write transactions;
        # a delete here clears it, and so does any failed flush (e.g. another server sharing a
        # PostgreSQL database deleted the group: the retry looks everything up again).
        self._streams: dict[StreamKey, tuple[int, int, int, int | None, int | None]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_error_log = 0.0
        self._last_drop_log = float("-inf")
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
            self._thread.start()

    # ---------------------------------------------------------------- write side
    def sink(self, account_id: str, region: str, log_group: str, log_stream: str) -> LogSink:
        if not GROUP_NAME_RE.fullmatch(log_group):
            raise ValueError(f"invalid log group name {log_group!r}")
        if not STREAM_NAME_RE.fullmatch(log_stream):
            raise ValueError(f"invalid log stream name {log_stream!r}")
        return LogSink(self, StreamKey(account_id, region, log_group, log_stream))

    def flush(self) -> None:
        """Write every buffered event now, partial lines included (tests, shutdown)."""
        with self._lock:
            sinks = list(self._dirty.values())
            self._dirty.clear()
        self._flush(sinks, force_partial=True)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def _mark_dirty(self, sink: LogSink, urgent: bool) -> None:
        with self._lock:
            self._dirty[id(sink)] = sink
        if urgent:
            self._wake.set()

    def _run(self) -> None:
        next_maintenance = time.monotonic() + min(5.0, self.maintenance_interval_s)
        while not self._stop.is_set():
            if self._wake.wait(self.flush_interval_s):
                self._stop.wait(REPORT_COALESCE_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    sinks = list(self._dirty.values())
                    self._dirty.clear()
                if sinks:
                    self._flush(sinks, force_partial=False)
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + self.maintenance_interval_s
                    self.purge()
            except Exception:      # never let the flusher die
                self._log_error("log flusher iteration failed")

    def _log_error(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.exception(what)

    def _flush(self, sinks: list[LogSink], *, force_partial: bool) -> None:
        with self._write_lock:
            work = []
            for sink in sinks:
                events, partial_left = sink._take(force_partial)
                if events:
                    events = self._within_headroom(sink.key, self._rate_limited(sink.key, events))
                if events:
                    work.append((sink, events))
                if partial_left:
                    self._mark_dirty(sink, False)   # look again when the partial line is due
            if not work:
                return
            ingestion = int(self.clock() * 1000)
            try:
                with self.db.begin() as conn:
                    batch = _FlushBatch()
                    for sink, events in work:
                        self._append(conn, sink.key, events, ingestion, batch)
                    batch.write(conn)
                    self._streams.update(batch.state)      # in the transaction: a delete cannot interleave
                    for sink, _ in work:
                        if sink.closed:                    # the environment is gone: nothing more to write
                            self._streams.pop(sink.key, None)
            except Exception:
                self._streams.clear()
                self._log_error("writing function logs failed; will retry")
                for sink, events in work:
                    sink._put_back(events)
                    self._mark_dirty(sink, False)
                return
            added: dict[str, int] = {}
            for sink, events in work:
                added[sink.key.account_id] = added.get(sink.key.account_id, 0) + sum(e[2] for e in events)
                if sink.dropped:
                    log.warning("log stream %s of %s: %d events dropped: its %d MiB buffer was full (output "
                                "arrived faster than it could be written, or the database was unavailable)",
                                sink.key.stream, sink.key.group, sink.dropped, MAX_BUFFER_BYTES >> 20)
                    sink.dropped = 0
            for account_id, size in added.items():
                self._charge_account(account_id, size)

    def _rate_limited(self, key: StreamKey, events: list[tuple[int, str, int]]) -> list[tuple[int, str, int]]:
        kept, dropped, size = self._rate.admit((key.account_id, key.region, key.group), events)
        if dropped:
            line = dropped_line(dropped, size, self.quotas.rate_bytes_per_s)
            kept.append((events[-1][0], line, len(line)))
            log.warning("log group %s of account %s: %d events (%d bytes) dropped over its rate limit",
                        key.group, key.account_id, dropped, size)
        return kept

    def _within_headroom(self, key: StreamKey, events: list[tuple[int, str, int]]) -> list[tuple[int, str, int]]:
        """A low data disk takes function logs first, before state: below the low-water mark a stream
        gets one line per flush saying what was dropped; below the critical mark, nothing at all."""
        room = self.headroom
        if room is None or room.logs_accepted() or not events:
            return events
        size = sum(e[2] for e in events)
        room.count_dropped_logs(size)
        if self._should_say_dropped():
            log.warning("function logs dropped: %s (e.g. %d bytes of %s)", room.describe(), size, key.group)
        if not room.writes_accepted():
            return []
        line = (f"lambdalet: {len(events)} log events ({size} bytes) were dropped: the platform's data disk is low "
                f"on space ({room.state.free_bytes >> 20} MiB free).\n")
        return [(events[-1][0], line, len(line))]

    def _should_say_dropped(self) -> bool:
        now = time.monotonic()
        if now - self._last_drop_log < 30:
            return False
        self._last_drop_log = now
        return True

    def _charge_account(self, account_id: str, size: int) -> None:
        """Count a flush against the account's stored bytes; past the quota, delete its oldest batches."""
        total = self._account_bytes.get(account_id)
        if total is None:
            with self.db.read() as conn:
                total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(log_groups.c.stored_bytes), 0))
                                     .where(log_groups.c.account_id == account_id)).scalar()
        else:
            total += size
        self._account_bytes[account_id] = total
        if total > self.quotas.account_bytes:
            self._trim_account(account_id, total)

    def _trim_account(self, account_id: str, total: int) -> None:
        g, b = log_groups, log_batches
        excess, doomed, touched = total - self.quotas.account_bytes * 9 // 10, [], set()
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(b.c.id, b.c.group_id, b.c.plain_bytes).join(g, g.c.id == b.c.group_id)
                                .where(g.c.account_id == account_id).order_by(b.c.first_ts, b.c.id))
            for bid, gid, size in rows:
                if excess <= 0:
                    break
                doomed.append(bid)
                touched.add(gid)
                excess -= size
            for i in range(0, len(doomed), 500):
                conn.execute(b.delete().where(b.c.id.in_(doomed[i:i + 500])))
            for gid in touched:
                self._recount(conn, gid)
            self._account_bytes[account_id] = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(g.c.stored_bytes), 0)).where(g.c.account_id == account_id)
            ).scalar()
        log.warning("account %s: %d oldest log batches deleted to stay within its %d MiB of stored logs",
                    account_id, len(doomed), self.quotas.account_bytes >> 20)

    def _ensure_group(self, conn: Connection, key: StreamKey, now_ms: int) -> int:
        g = log_groups
        gid = conn.execute(sa.select(g.c.id).where(g.c.account_id == key.account_id, g.c.region == key.region,
                                                   g.c.name == key.group)).scalar()
        if gid is None:
            gid = conn.execute(g.insert().values(account_id=key.account_id, region=key.region, name=key.group,
                                                 created_ms=now_ms, stored_bytes=0)).inserted_primary_key[0]
        return gid

    def _append(self, conn: Connection, key: StreamKey, events: list[tuple[int, str, int]], ingestion: int,
                batch: "_FlushBatch | None" = None) -> None:
        """Append to one stream. With `batch` the writes are queued there (the caller writes them once
        for the whole flush); without, they are written here."""
        own = batch is None
        batch = _FlushBatch() if own else batch
        gkey = (key.account_id, key.region, key.group)
        known = batch.state.get(key) or self._streams.get(key)
        if known is not None:
            gid, sid, seq, first_ms, last_ms = known
            batch.groups.setdefault(gkey, [gid, 0])
        else:
            if gkey not in batch.groups:
                batch.groups[gkey] = [self._ensure_group(conn, key, ingestion), 0]
            gid = batch.groups[gkey][0]
            sid, seq, first_ms, last_ms = self._stream_row(conn, gid, key.stream, ingestion)
        total = 0
        for chunk in _chunks(events):
            size = sum(e[2] for e in chunk)
            plain = json.dumps([[e[0], e[1]] for e in chunk], ensure_ascii=False,
                               separators=(",", ":")).encode()
            last = seq + len(chunk) - 1
            sealed = self.keyring.seal(zlib.compress(plain, 6), _aad(key, seq, last))
            batch.batches.append(dict(
                group_id=gid, stream_id=sid, first_seq=seq, last_seq=last, first_ts=chunk[0][0],
                last_ts=chunk[-1][0], ingestion_ms=ingestion, event_count=len(chunk), plain_bytes=size,
                data_sealed=sealed))
            seq = last + 1
            total += size
        first_ms = events[0][0] if first_ms is None else min(first_ms, events[0][0])
        last_ms = events[-1][0] if last_ms is None else max(last_ms, events[-1][0])
        if (gid, key.stream) in batch.streams_seen:
            batch.write(conn)       # the same stream twice: one UPDATE per stream and executemany
        batch.streams_seen.add((gid, key.stream))
        batch.streams.append(dict(b_id=sid, b_next_seq=seq, b_first=first_ms, b_last=last_ms,
                                  b_ingestion=ingestion, b_added=total))
        batch.state[key] = (gid, sid, seq, first_ms, last_ms)
        batch.groups[gkey][1] += total
        if own:
            batch.write(conn)

    @staticmethod
    def _stream_row(conn: Connection, gid: int, name: str, now_ms: int) -> tuple[int, int, int | None, int | None]:
        """(id, next seq, first event ms, last event ms) of a stream, created if missing."""
        s = log_streams
        row = conn.execute(sa.select(s.c.id, s.c.next_seq, s.c.first_event_ms, s.c.last_event_ms)
                           .where(s.c.group_id == gid, s.c.name == name)).first()
        if row is None:
            sid = conn.execute(s.insert().values(group_id=gid, name=name, created_ms=now_ms, next_seq=0,
                                                 stored_bytes=0)).inserted_primary_key[0]
            return sid, 0, None, None
        return row.id, row.next_seq, row.first_event_ms, row.last_event_ms

    # ---------------------------------------------------------------- retention
    def purge(self, now_ms: int | None = None) -> int:
        """Apply retention policies and the per-group size cap; returns the batches deleted."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        g, b = log_groups, log_batches
        deleted = 0
        with self.db.begin() as conn:
            touched: set[int] = set()
            for gid, days in conn.execute(sa.select(g.c.id, g.c.retention_days)
                                          .where(g.c.retention_days.is_not(None))).all():
                n = conn.execute(b.delete().where(b.c.group_id == gid, b.c.last_ts < now_ms - days * DAY_MS)).rowcount
                if n:
                    deleted += n
                    touched.add(gid)
            for gid, stored in conn.execute(sa.select(g.c.id, g.c.stored_bytes)
                                            .where(g.c.stored_bytes > self.max_group_bytes)).all():
                excess, doomed = stored - self.max_group_bytes, []
                for bid, size in conn.execute(sa.select(b.c.id, b.c.plain_bytes).where(b.c.group_id == gid)
                                              .order_by(b.c.first_ts, b.c.id)):
                    if excess <= 0:
                        break
                    doomed.append(bid)
                    excess -= size
                for i in range(0, len(doomed), 500):
                    deleted += conn.execute(b.delete().where(b.c.id.in_(doomed[i:i + 500]))).rowcount
                touched.add(gid)
            for gid in touched:
                self._recount(conn, gid)
        self._account_bytes.clear()       # counted again from the groups on the next flush
        return deleted

    @staticmethod
    def _recount(conn: Connection, gid: int) -> None:
        b, s, g = log_batches, log_streams, log_groups
        per_stream = (sa.select(sa.func.coalesce(sa.func.sum(b.c.plain_bytes), 0))
                      .where(b.c.stream_id == s.c.id).scalar_subquery())
        conn.execute(s.update().where(s.c.group_id == gid).values(stored_bytes=per_stream))
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(b.c.plain_bytes), 0))
                             .where(b.c.group_id == gid)).scalar()
        conn.execute(g.update().where(g.c.id == gid).values(stored_bytes=total))

    # ---------------------------------------------------------------- groups and streams
    def get_group(self, account_id: str, region: str, name: str, conn: Connection | None = None) -> Group | None:
        g = log_groups
        stmt = sa.select(g).where(g.c.account_id == account_id, g.c.region == region, g.c.name == name)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.db.read() as c:
                row = c.execute(stmt).first()
        return _group(row) if row else None

    def list_groups(self, account_id: str, region: str, *, prefix: str | None = None, contains: str | None = None,
                    names: list[str] | None = None, after: str | None = None, limit: int = 50) -> list[Group]:
        g = log_groups
        stmt = sa.select(g).where(g.c.account_id == account_id, g.c.region == region)
        if prefix:
            stmt = stmt.where(g.c.name >= prefix, sa.func.substr(g.c.name, 1, len(prefix)) == prefix)
        if names is not None:
            stmt = stmt.where(g.c.name.in_(names))
        if after is not None:
            stmt = stmt.where(g.c.name > after)
        stmt = stmt.order_by(g.c.name)
        out: list[Group] = []
        with self.db.read() as conn:
            for row in conn.execute(stmt):   # `contains` is case-sensitive: filtered here, not with LIKE
                if contains and contains not in row.name:
                    continue
                out.append(_group(row))
                if len(out) >= limit:
                    break
        return out

    def create_group(self, account_id: str, region: str, name: str) -> bool:
        """False if it already exists."""
        with self.db.begin() as conn:
            if self.get_group(account_id, region, name, conn) is not None:
                return False
            conn.execute(log_groups.insert().values(account_id=account_id, region=region, name=name,
                                                    created_ms=int(self.clock() * 1000), stored_bytes=0))
        return True

    def delete_group(self, account_id: str, region: str, name: str) -> bool:
        g = log_groups
        with self.db.begin() as conn:
            found = self.get_group(account_id, region, name, conn)
            if found is None:
                return False
            # Explicit child deletes: correct even where foreign keys are not enforced.
            conn.execute(log_batches.delete().where(log_batches.c.group_id == found.id))
            conn.execute(log_streams.delete().where(log_streams.c.group_id == found.id))
            conn.execute(g.delete().where(g.c.id == found.id))
            self._streams.clear()
        self._account_bytes.pop(account_id, None)
        return True

    def set_retention(self, account_id: str, region: str, name: str, days: int | None) -> bool:
        g = log_groups
        with self.db.begin() as conn:
            n = conn.execute(g.update().where(g.c.account_id == account_id, g.c.region == region, g.c.name == name)
                             .values(retention_days=days)).rowcount
        return n > 0

    def get_stream(self, group_id: int, name: str) -> Stream | None:
        s = log_streams
        with self.db.read() as conn:
            row = conn.execute(sa.select(s).where(s.c.group_id == group_id, s.c.name == name)).first()
        return _stream(row) if row else None

    def create_stream(self, group_id: int, name: str) -> bool:
        s = log_streams
        with self.db.begin() as conn:
            if conn.execute(sa.select(s.c.id).where(s.c.group_id == group_id, s.c.name == name)).first():
                return False
            conn.execute(s.insert().values(group_id=group_id, name=name, created_ms=int(self.clock() * 1000),
                                           next_seq=0, stored_bytes=0))
        return True

    def delete_stream(self, group_id: int, name: str) -> bool:
        s = log_streams
        with self.db.begin() as conn:
            sid = conn.execute(sa.select(s.c.id).where(s.c.group_id == group_id, s.c.name == name)).scalar()
            if sid is None:
                return False
            conn.execute(log_batches.delete().where(log_batches.c.stream_id == sid))
            conn.execute(s.delete().where(s.c.id == sid))
            self._streams.clear()
            self._recount(conn, group_id)
        return True

    def list_streams(self, group_id: int, *, prefix: str | None = None, order_by: str = "LogStreamName",
                     descending: bool = False, after: tuple | None = None, limit: int = 50) -> list[Stream]:
        """`after` is the keyset position of the previous page: (name,) or (last_event_ms, id)."""
        s = log_streams
        stmt = sa.select(s).where(s.c.group_id == group_id)
        if prefix:
            stmt = stmt.where(sa.func.substr(s.c.name, 1, len(prefix)) == prefix)
        if order_by == "LastEventTime":
            t = sa.func.coalesce(s.c.last_event_ms, 0)
            if after is not None:
                at, aid = after
                stmt = stmt.where(sa.or_(t < at, sa.and_(t == at, s.c.id < aid)) if descending
                                  else sa.or_(t > at, sa.and_(t == at, s.c.id > aid)))
            stmt = stmt.order_by(*( (t.desc(), s.c.id.desc()) if descending else (t, s.c.id)))
        else:
            if after is not None:
                stmt = stmt.where(s.c.name < after[0] if descending else s.c.name > after[0])
            stmt = stmt.order_by(s.c.name.desc() if descending else s.c.name)
        with self.db.read() as conn:
            return [_stream(r) for r in conn.execute(stmt.limit(limit)).all()]

    # ---------------------------------------------------------------- events
    def _open(self, key: StreamKey, row) -> list[tuple[int, str]]:
        plain = zlib.decompress(self.keyring.open(row.data_sealed, _aad(key, row.first_seq, row.last_seq)))
        return [(ts, msg) for ts, msg in json.loads(plain)]

    def read_forward(self, group: Group, stream: Stream, from_seq: int, *, start_ms: int | None = None,
                     end_ms: int | None = None, limit: int = 10_000, max_bytes: int = 1_048_576) -> list[Event]:
        """Events with seq >= from_seq and start_ms <= timestamp < end_ms, oldest first."""
        return list(self._read(group, stream, from_seq, start_ms, end_ms, limit, max_bytes, backward=False))

    def read_backward(self, group: Group, stream: Stream, before_seq: int, *, start_ms: int | None = None,
                      end_ms: int | None = None, limit: int = 10_000, max_bytes: int = 1_048_576) -> list[Event]:
        """The newest events with seq < before_seq in the time range, returned oldest first."""
        out = list(self._read(group, stream, before_seq, start_ms, end_ms, limit, max_bytes, backward=True))
        out.reverse()
        return out

    def _read(self, group: Group, stream: Stream, pos: int, start_ms, end_ms, limit, max_bytes,
              *, backward: bool) -> Iterator[Event]:
        b = log_batches
        key = StreamKey(group.account_id, group.region, group.name, stream.name)
        stmt = sa.select(b).where(b.c.stream_id == stream.id)
        stmt = stmt.where(b.c.first_seq < pos) if backward else stmt.where(b.c.last_seq >= pos)
        if start_ms is not None:
            stmt = stmt.where(b.c.last_ts >= start_ms)
        if end_ms is not None:
            stmt = stmt.where(b.c.first_ts < end_ms)
        stmt = stmt.order_by(b.c.first_seq.desc() if backward else b.c.first_seq)
        count = size = 0
        with self.db.read() as conn:
            for row in conn.execute(stmt.execution_options(yield_per=32)):
                events = self._open(key, row)
                idx = range(len(events) - 1, -1, -1) if backward else range(len(events))
                for i in idx:
                    seq = row.first_seq + i
                    ts, msg = events[i]
                    if (seq >= pos if backward else seq < pos):
                        continue
                    if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts >= end_ms):
                        continue
                    n = len(msg.encode()) + 26
                    if count >= limit or (count and size + n > max_bytes):
                        return
                    count += 1
                    size += n
                    yield Event(stream.id, stream.name, seq, ts, msg, row.ingestion_ms)

    def filter_events(self, group: Group, *, stream_names: list[str] | None = None, stream_prefix: str | None = None,
                      start_ms: int | None = None, end_ms: int | None = None,
                      after: tuple[int, int, int] | None = None, match: Callable[[str], bool] = lambda m: True,
                      limit: int = 10_000, max_bytes: int = 1_048_576,
                      scan_budget_bytes: int = 64 * 1024 * 1024) -> tuple[list[Event], tuple[int, int, int] | None]:
        """A group's events interleaved across streams in (timestamp, stream, seq) order, from key
        `after` (inclusive) on, start_ms <= timestamp <= end_ms, that `match`. Returns (events,
        position to continue from, or None when everything was searched). Stops early, with a
        position, after decrypting `scan_budget_bytes` so one call stays bounded."""
        b, s = log_batches, log_streams
        pos = after or (start_ms or 0, -1, -1)
        lower = max(pos[0], start_ms or 0)
        base = (sa.select(b, s.c.name.label("stream_name")).join(s, s.c.id == b.c.stream_id)
                .where(b.c.group_id == group.id, b.c.last_ts >= lower, b.c.first_ts >= lower - MAX_BATCH_SPAN_MS))
        if end_ms is not None:
            base = base.where(b.c.first_ts <= end_ms)
        if stream_names is not None:
            base = base.where(s.c.name.in_(stream_names))
        if stream_prefix:
            base = base.where(sa.func.substr(s.c.name, 1, len(stream_prefix)) == stream_prefix)
        base = base.order_by(b.c.first_ts, b.c.id)

        out: list[Event] = []
        heap: list[tuple[int, int, int, str, str, int]] = []   # (ts, stream_id, seq, message, stream, ingestion)
        size = scanned = consumed = 0

        def emit_until(bound: int | None) -> tuple[int, int, int] | None:
            """Consume heap events with ts < bound (all if None); a position if the page is full."""
            nonlocal size, consumed
            while heap and (bound is None or heap[0][0] < bound):
                ts, sid, seq, msg, sname, ing = heap[0]
                if match(msg):
                    n = len(msg.encode()) + 26
                    if len(out) >= limit or (out and size + n > max_bytes):
                        return (ts, sid, seq)
                    out.append(Event(sid, sname, seq, ts, msg, ing))
                    size += n
                heapq.heappop(heap)
                consumed += 1
            return None

        with self.db.read() as conn:
            for row in conn.execute(base.execution_options(yield_per=64)):
                stop = emit_until(row.first_ts)
                if stop is not None:
                    return out, stop
                if scanned >= scan_budget_bytes and consumed:
                    return out, (heap[0][:3] if heap else (row.first_ts, -1, -1))
                key = StreamKey(group.account_id, group.region, group.name, row.stream_name)
                for i, (ts, msg) in enumerate(self._open(key, row)):
                    k = (ts, row.stream_id, row.first_seq + i)
                    if k < pos or (start_ms is not None and ts < start_ms) or (end_ms is not None and ts > end_ms):
                        continue
                    heapq.heappush(heap, (*k, msg, row.stream_name, row.ingestion_ms))
                scanned += row.plain_bytes
        stop = emit_until(None)
        return out, stop


def _chunks(events: list[tuple[int, str, int]]) -> Iterator[list[tuple[int, str, int]]]:
    chunk: list[tuple[int, str, int]] = []
    size = 0
    for e in events:
        if chunk and (len(chunk) >= MAX_BATCH_EVENTS or size + e[2] > MAX_BATCH_BYTES
                      or e[0] - chunk[0][0] > MAX_BATCH_SPAN_MS):
            yield chunk
            chunk, size = [], 0
        chunk.append(e)
        size += e[2]
    if chunk:
        yield chunk


def _group(row) -> Group:
    return Group(row.id, row.account_id, row.region, row.name, row.created_ms, row.retention_days, row.stored_bytes)


def _stream(row) -> Stream:
    return Stream(row.id, row.group_id, row.name, row.created_ms, row.first_event_ms, row.last_event_ms,
                  row.last_ingestion_ms, row.next_seq, row.stored_bytes)
