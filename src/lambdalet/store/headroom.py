"""Headroom on the data dir's filesystem, so the state store never meets ENOSPC first (issue 19.4).

A thread reads free space (statvfs, f_bavail) every `interval_s` and keeps one of three levels:

- ok: everything is accepted.
- low (free < low-water mark): function log output is dropped at flush time (logs/writer.py), with a
  line in the stream and a server log warning: logs are what refills a disk fastest, and they are
  worth less than state.
- critical (free < critical mark): state-changing API calls are refused with the throttling error
  each service's SDK retries (store/disk_gate.py); reads, deletes and queue consumption keep working,
  and nothing more of a function's logs is written at all.

The marks: low = max(`low_mb`, `low_percent` of the filesystem), critical = half of it; on a small
filesystem neither is more than a quarter / an eighth of it, so a 48 MiB tmpfs still has room to
work in. A level is left only once free space is a margin above its mark (no flapping at the edge).
Every transition is logged, and the current state is written to `<run dir>/status.json` (tmpfs, not
the data disk) for `lambdalet status`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("lambdalet.disk")

OK, LOW, CRITICAL = "ok", "low", "critical"
MiB = 1 << 20
DEFAULT_LOW_MB = 256
DEFAULT_LOW_PERCENT = 2.0
DEFAULT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Marks:
    low_bytes: int
    critical_bytes: int

    @classmethod
    def for_filesystem(cls, total_bytes: int, low_mb: int = DEFAULT_LOW_MB,
                       low_percent: float = DEFAULT_LOW_PERCENT) -> "Marks":
        low = max(low_mb * MiB, int(total_bytes * low_percent / 100))
        low = min(low, total_bytes // 4)
        return cls(low, low // 2)

    def level(self, free: int, previous: str = OK) -> str:
        """The level for `free` bytes; leaving a level needs a margin above its mark."""
        margin = max(MiB, self.low_bytes // 20)
        if free < self.critical_bytes or (previous == CRITICAL and free < self.critical_bytes + margin):
            return CRITICAL
        if free < self.low_bytes or (previous in (LOW, CRITICAL) and free < self.low_bytes + margin):
            return LOW
        return OK


@dataclass
class DiskState:
    path: str
    level: str
    free_bytes: int
    total_bytes: int
    low_bytes: int
    critical_bytes: int
    since: float                 # epoch seconds this level began
    updated: float
    pid: int
    log_bytes_dropped: int = 0   # since the server started
    calls_refused: int = 0


def free_space(path: Path) -> tuple[int, int]:
    """(free bytes an unprivileged writer may use, total bytes) of the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class DiskHeadroom:
    def __init__(self, data_dir: Path, *, low_mb: int = DEFAULT_LOW_MB, low_percent: float = DEFAULT_LOW_PERCENT,
                 interval_s: float = DEFAULT_INTERVAL_S, status_file: Path | None = None):
        self.data_dir = Path(data_dir)
        self.low_mb, self.low_percent = low_mb, low_percent
        self.interval_s = interval_s
        self.status_file = status_file
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        free, total = free_space(self.data_dir)
        self.marks = Marks.for_filesystem(total, low_mb, low_percent)
        now = time.time()
        self.state = DiskState(str(self.data_dir), OK, free, total, self.marks.low_bytes,
                               self.marks.critical_bytes, now, now, os.getpid())
        self.check()

    # ---- what the rest of the platform asks
    @property
    def level(self) -> str:
        return self.state.level

    def logs_accepted(self) -> bool:
        return self.state.level == OK

    def writes_accepted(self, extra_bytes: int = 0) -> bool:
        """Whether a state-changing call (that will write about `extra_bytes`) may run now."""
        s = self.state
        return s.level != CRITICAL and s.free_bytes - extra_bytes >= s.critical_bytes

    def count_dropped_logs(self, size: int) -> None:
        with self._lock:
            self.state.log_bytes_dropped += size

    def count_refused(self) -> None:
        with self._lock:
            self.state.calls_refused += 1

    def describe(self) -> str:
        s = self.state
        return (f"{s.free_bytes / MiB:.0f} MiB free on the data disk ({s.path}); low-water mark "
                f"{s.low_bytes / MiB:.0f} MiB, critical {s.critical_bytes / MiB:.0f} MiB")

    # ---- the monitor
    def start(self) -> "DiskHeadroom":
        self._thread = threading.Thread(target=self._run, name="disk-headroom", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.status_file is not None:
            try:
                self.status_file.unlink()
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:      # never let the monitor die; the last level stays in force
                log.exception("disk headroom check failed")

    def check(self) -> str:
        """Read free space now, move the level, log a transition and publish the state."""
        free, total = free_space(self.data_dir)
        with self._lock:
            if total != self.state.total_bytes:      # e.g. a resized filesystem
                self.marks = Marks.for_filesystem(total, self.low_mb, self.low_percent)
            previous = self.state.level
            level = self.marks.level(free, previous)
            now = time.time()
            s = self.state
            s.free_bytes, s.total_bytes, s.updated = free, total, now
            s.low_bytes, s.critical_bytes = self.marks.low_bytes, self.marks.critical_bytes
            if level != previous:
                s.level, s.since = level, now
        if level != previous:
            self._announce(previous, level)
        self._publish()
        return level

    def _announce(self, previous: str, level: str) -> None:
        if level == CRITICAL:
            log.error("DATA DISK CRITICAL: %s. State-changing API calls are refused with retryable throttling "
                      "errors and function logs are dropped until space is freed (reads, deletes and queue "
                      "consumption still work).", self.describe())
        elif level == LOW:
            log.warning("DATA DISK LOW: %s. Function log output is dropped until space is freed%s.",
                        self.describe(), "; state-changing calls are accepted again" if previous == CRITICAL else "")
        else:
            log.info("data disk back to normal: %s. Logs and state-changing calls are accepted again.",
                     self.describe())

    def _publish(self) -> None:
        if self.status_file is None:
            return
        with self._lock:
            doc = json.dumps(asdict(self.state))
        tmp = self.status_file.with_name(self.status_file.name + ".tmp")
        try:
            tmp.write_text(doc)
            os.replace(tmp, self.status_file)
        except OSError:
            pass       # a status file is a convenience; the level is enforced regardless


def read_status(status_file: Path) -> dict | None:
    """What a running server last published (for `lambdalet status`), or None."""
    try:
        return json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
