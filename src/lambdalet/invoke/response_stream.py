"""A streamed response on its way out: the invocation's thread writes the pieces the runtime streams,
the event loop serving the HTTP response reads them (InvokeWithResponseStream, RESPONSE_STREAM URLs).

Back-pressure, not buffering: a writer waits while HIGH_WATER bytes are queued and unread, so a slow
client holds the runtime's writes back (host -> bridge -> init -> the runtime's socket) instead of the
server holding the response; a wait never outlasts the invocation's deadline (then the function times
out, as a function blocked on its stream does on AWS). AWS's bandwidth rule is applied here: the first
BURST bytes go as fast as they come, the rest at most RATE bytes a second. A reader that goes away
(client disconnected) makes later writes no-ops: the function runs to its end, its output dropped.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

HIGH_WATER = 1 << 20
BURST = 6 * 1024 * 1024          # AWS: "The first 6 MB of your function's response has uncapped bandwidth"
RATE = 2 * 1024 * 1024           # then at most 2 MBps


class ResponseStream:
    def __init__(self, burst: int = BURST, rate: float = RATE):
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._written = 0
        self._burst, self._rate = burst, rate
        self._paced_from: float | None = None     # when the burst ended
        self.content_type: str | None = None      # the runtime's, once it streams
        self.result: Any = None                    # the InvokeResult, once finished
        self.error: BaseException | None = None    # the invocation failed before answering (an AwsError)
        self._done = False
        self._gone = False                         # the reader went away
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.tail = False                          # LogType=Tail: InvokeComplete carries LogResult

    # ---- the invocation's side (any thread) ----
    def write(self, content_type: str, data: bytes, deadline: float) -> None:
        """Queue one piece; wait while the reader is HIGH_WATER behind; TimeoutError past `deadline`
        (monotonic)."""
        with self._cond:
            if self.content_type is None:
                self.content_type = content_type or "application/octet-stream"
            while self._queued >= HIGH_WATER and not self._gone:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the response stream's reader fell behind until the deadline")
                self._cond.wait(left)
            if not self._gone and data:
                self._queue.append(data)
                self._queued += len(data)
        self._notify()
        self._pace(len(data), deadline)

    def _pace(self, n: int, deadline: float) -> None:
        """Past the burst, hold the writer until RATE allows what it has written so far."""
        self._written += n
        over = self._written - self._burst
        if over <= 0 or self._gone:
            return
        now = time.monotonic()
        if self._paced_from is None:       # this write crossed the burst: the cap starts now
            self._paced_from = now
        wait = self._paced_from + over / self._rate - now
        if wait > 0:
            if now + wait > deadline:
                time.sleep(max(deadline - now, 0))
                raise TimeoutError("the response stream's bandwidth limit ran past the deadline")
            time.sleep(wait)

    def finish(self, result: Any) -> None:
        with self._cond:
            self.result, self._done = result, True
        self._notify()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            self.error, self._done = error, True
        self._notify()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:                   # the loop is closed: nobody reads any more
                pass

    # ---- the reader's side (the event loop) ----
    def _bind(self) -> asyncio.Event:
        if self._wake is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
        return self._wake

    async def started(self) -> None:
        """Until the runtime streams its first piece or the invocation ends; re-raises an invocation
        that failed before answering (a throttle, a platform failure) so it is answered as an error."""
        wake = self._bind()
        while True:
            with self._cond:
                if self.content_type is not None or self._done:
                    if self.error is not None and self.content_type is None:
                        raise self.error
                    return
                wake.clear()
            await wake.wait()

    async def pieces(self):
        """What is queued, as it comes (joined when several wait), until the invocation ends."""
        wake = self._bind()
        while True:
            with self._cond:
                if self._queue:
                    data = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                    self._queue.clear()
                    self._queued = 0
                    self._cond.notify_all()
                elif self._done:
                    return
                else:
                    data = None
                    wake.clear()
            if data is None:
                await wake.wait()
            else:
                yield data

    def close(self) -> None:
        """The reader is gone (or done): drop what is queued and let the writer run on."""
        with self._cond:
            self._gone = True
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()
