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

LogStore is the facade; the work lives in one module per part (their methods are its):
  sink.py       LogSink (an environment's output, buffered)
  writer.py     the flusher, sealed batches, quotas and headroom; retention and the size cap
  catalogue.py  groups and streams                  reader.py  GetLogEvents / FilterLogEvents reads
  core.py       the shared state                    records.py limits, timings, records, batch AAD
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from lambdalet.logs.catalogue import LogCatalogue
from lambdalet.logs.quotas import LogQuotas
from lambdalet.logs.reader import LogReader
from lambdalet.logs.records import (
    DEFAULT_MAX_GROUP_BYTES,
    FLUSH_INTERVAL_S,
    MAINTENANCE_INTERVAL_S,
    MAX_EVENT_BYTES,
    Event,
    Group,
    Stream,
    StreamKey,
)
from lambdalet.logs.sink import LogSink
from lambdalet.logs.writer import LogWriter
from lambdalet.store.db import Database

__all__ = ["MAX_EVENT_BYTES", "Event", "Group", "LogSink", "LogStore", "Stream", "StreamKey"]


class LogStore(LogWriter, LogCatalogue, LogReader):
    def __init__(self, db: Database, keyring, *, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = FLUSH_INTERVAL_S, max_group_bytes: int = DEFAULT_MAX_GROUP_BYTES,
                 maintenance_interval_s: float = MAINTENANCE_INTERVAL_S, background: bool = True,
                 quotas: LogQuotas = LogQuotas(), headroom=None):
        super().__init__(db, keyring, clock=clock, flush_interval_s=flush_interval_s, max_group_bytes=max_group_bytes,
                         maintenance_interval_s=maintenance_interval_s, quotas=quotas, headroom=headroom)
        if background:
            self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
            self._thread.start()
