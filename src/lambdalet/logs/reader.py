"""Reading events back: a stream forward or backward from an ordinal (GetLogEvents), and a group's
events merged by (timestamp, stream id, seq) (FilterLogEvents).
"""
from __future__ import annotations

import heapq
import json
import zlib
from typing import Callable, Iterator

import sqlalchemy as sa

from lambdalet.logs.core import LogStoreCore
from lambdalet.logs.records import (
    MAX_BATCH_SPAN_MS,
    Event,
    Group,
    Stream,
    StreamKey,
    _aad,
)
from lambdalet.logs.tables import log_batches, log_streams


class LogReader(LogStoreCore):
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
