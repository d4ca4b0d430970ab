"""What the log modules share: AWS's limits for log events and names, the flusher's timings, and the
records (stream key, group, stream, event); batch AAD and chunking.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Iterator

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
