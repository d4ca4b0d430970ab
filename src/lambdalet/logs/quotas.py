"""How much a tenant's functions may log: a rate per function and stored bytes per account.

One function writing incompressible output grew the data dir ~11 MB/s, and the only cap was 1 GiB per
log group, checked every minute, so N functions could hold N GiB (issue 10). Two limits hold instead,
both applied by the log flusher (store.py), never on the invoke path:

- a rate per function (log group): a token bucket of `rate_bytes_per_s` with a burst of
  `burst_s` seconds. Function output past it is dropped at flush time and the stream gets one line
  saying how much was dropped and why. The platform's own START/END/REPORT lines always pass: they
  are small and tools (`sam logs`, metrics) depend on them.
- stored bytes per account: after every flush that takes an account past `account_bytes`, its
  oldest batches (across all its groups) are deleted until it is back under, in the same pass.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from lambdalet.logs.platform import is_platform_line

DEFAULT_RATE_BYTES_PER_S = 1 << 20      # 1 MiB/s per function: far above what a function normally logs
DEFAULT_ACCOUNT_BYTES = 4 << 30         # 4 GiB of log messages per account



@dataclass(frozen=True)
class LogQuotas:
    rate_bytes_per_s: int = DEFAULT_RATE_BYTES_PER_S
    burst_s: float = 5.0
    account_bytes: int = DEFAULT_ACCOUNT_BYTES


class RateLimiter:
    """A token bucket per log group; `admit` splits a flush's events into kept and dropped."""

    def __init__(self, quotas: LogQuotas, clock: Callable[[], float] = time.monotonic):
        self.quotas = quotas
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], list[float]] = {}    # group -> [tokens, last refill]

    def admit(self, group: tuple[str, str, str], events: list[tuple[int, str, int]]
              ) -> tuple[list[tuple[int, str, int]], int, int]:
        """(events to keep, events dropped, bytes dropped)."""
        rate = self.quotas.rate_bytes_per_s
        burst = rate * self.quotas.burst_s
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(group, [burst, now])
            tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
            kept, dropped, dropped_bytes = [], 0, 0
            for event in events:
                size = event[2]
                # the platform's own lines pass: marked by the sink (LogSink.platform), never by their text
                platform = event[3] if len(event) > 3 else is_platform_line(event[1])
                if size <= tokens or platform:
                    tokens -= size
                    kept.append(event)
                else:
                    dropped += 1
                    dropped_bytes += size
            bucket[0], bucket[1] = max(tokens, 0.0), now
        return kept, dropped, dropped_bytes

    def forget(self, group: tuple[str, str, str]) -> None:
        with self._lock:
            self._buckets.pop(group, None)


def dropped_line(count: int, size: int, rate: int) -> str:
    return (f"lambdalet: {count} log events ({size} bytes) of this function were dropped: it wrote more than "
            f"{rate} bytes/s of logs, its rate limit (lambdalet serve --log-rate-kb).\n")
