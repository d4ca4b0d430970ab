"""LogStoreCore: the state the log modules share (database, keyring, clock, quotas, the flusher's
bookkeeping and its per-stream positions), and recounting a group's stored bytes after deletes.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lambdalet.logs.quotas import LogQuotas, RateLimiter
from lambdalet.logs.records import (
    DEFAULT_MAX_GROUP_BYTES,
    FLUSH_INTERVAL_S,
    MAINTENANCE_INTERVAL_S,
    StreamKey,
)
from lambdalet.logs.sink import LogSink
from lambdalet.logs.tables import log_batches, log_groups, log_streams
from lambdalet.store.db import Database


class LogStoreCore:
    def __init__(self, db: Database, keyring, *, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = FLUSH_INTERVAL_S, max_group_bytes: int = DEFAULT_MAX_GROUP_BYTES,
                 maintenance_interval_s: float = MAINTENANCE_INTERVAL_S,
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
        self._thread: threading.Thread | None = None     # the flusher (LogStore starts it)

    @staticmethod
    def _recount(conn: Connection, gid: int) -> None:
        b, s, g = log_batches, log_streams, log_groups
        per_stream = (sa.select(sa.func.coalesce(sa.func.sum(b.c.plain_bytes), 0))
                      .where(b.c.stream_id == s.c.id).scalar_subquery())
        conn.execute(s.update().where(s.c.group_id == gid).values(stored_bytes=per_stream))
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(b.c.plain_bytes), 0))
                             .where(b.c.group_id == gid)).scalar()
        conn.execute(g.update().where(g.c.id == gid).values(stored_bytes=total))
