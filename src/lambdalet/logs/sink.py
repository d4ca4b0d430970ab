"""LogSink: what an execution environment's output is written to (the invoke path only appends to a
buffer; the store's flusher writes it). See store.py for the write path.
"""
from __future__ import annotations

import collections
import re
import threading
import time
from typing import TYPE_CHECKING

from lambdalet.logs.platform import is_report

if TYPE_CHECKING:
    from lambdalet.logs.writer import LogWriter
from lambdalet.logs.records import MAX_BUFFER_BYTES, MAX_EVENT_BYTES, PARTIAL_LINE_WAIT_S, StreamKey, _utf8_cut

# Chunks the platform itself emits: a pending partial line of the function ends before them.
# (platform.py: text lines, JSON records of LogFormat=JSON, the timeout / exit lines)
_PLATFORM_CHUNK = re.compile(rb"(?:START|END|REPORT|INIT_START) RequestId: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                             rb'|\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","type":"platform\.')


class LogSink:
    """Callable with the environment's output (bytes); `platform()` with the platform's own lines, which
    alone pass the rate limit (a function printing "START RequestId: ..." gets no such pass). Never
    blocks on I/O. `close()` hands what is left to the flusher."""

    def __init__(self, store: "LogWriter", key: StreamKey):
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
