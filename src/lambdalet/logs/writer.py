"""The write side: sinks, the background flusher (one write transaction per flush, sealed batches,
quotas and disk headroom applied) and the maintenance pass (retention, per-group size cap).
"""
from __future__ import annotations

import json
import time
import zlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lambdalet.logs.core import LogStoreCore
from lambdalet.logs.quotas import dropped_line
from lambdalet.logs.records import (
    DAY_MS,
    GROUP_NAME_RE,
    MAX_BUFFER_BYTES,
    REPORT_COALESCE_S,
    STREAM_NAME_RE,
    StreamKey,
    _aad,
    _chunks,
    log,
)
from lambdalet.logs.sink import LogSink
from lambdalet.logs.tables import log_batches, log_groups, log_streams

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


class LogWriter(LogStoreCore):
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
