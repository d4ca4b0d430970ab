"""What `lambdalet status` shows of a running server: a small JSON snapshot (functions, queues,
environments, concurrency in use) the server rewrites every few seconds in its run dir (tmpfs, like
the disk monitor's status file). The counts come from callables the wiring passes in; a failing one
is left out of that snapshot."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("lambdalet.status")
INTERVAL_S = 2.0


class ActivitySnapshots:
    def __init__(self, path: Path, sources: dict[str, Callable[[], Any]], interval_s: float = INTERVAL_S):
        self.path = path
        self.sources = sources
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="activity-snapshots", daemon=True)

    def start(self) -> "ActivitySnapshots":
        self.write_once()
        self._thread.start()
        return self

    def snapshot(self) -> dict:
        doc: dict[str, Any] = {"updated": time.time()}
        for name, read in self.sources.items():
            try:
                doc[name] = read()
            except Exception as e:        # e.g. the database busy at shutdown: the rest still tells
                log.debug("status snapshot: %s: %s", name, e)
        return doc

    def write_once(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, self.path)
        except OSError as e:
            log.debug("status snapshot not written: %s", e)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.write_once()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def read_activity(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
