"""Progress lines for long start-up work: `with progress("unpacking runtimes"): ...` says nothing if
the step is quick; past `after_s` it logs that the step is still running, and at the end how long it
took (so a first start that provisions, migrates or builds slots does not look hung)."""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("lambdalet.startup")


@contextmanager
def progress(step: str, after_s: float = 1.0) -> Iterator[None]:
    started = time.monotonic()
    timer = threading.Timer(after_s, lambda: log.info("start-up: %s ...", step))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        took = time.monotonic() - started
        if took >= after_s:
            log.info("start-up: %s done", step, extra={"fields": {"seconds": round(took, 2)}})
