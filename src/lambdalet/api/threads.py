"""The API's one hop from the event loop to blocking code (SigV4, authorization, the operation).

Why not anyio's `to_thread` (what Starlette's `run_in_threadpool` uses): on the warm Invoke path its
bookkeeping (task and backend lookups, a cancel scope, a capacity limiter) was ~13% of the server's
GIL time, more than the rest of the hop. Here a call costs a queue put, one future and one
`call_soon_threadsafe`. Threads are daemons started on demand up to `limit` and reused, so a long
poll (SQS ReceiveMessage waits up to 20 s in its thread) never holds up the server's exit; calls
beyond the limit wait in the queue.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable

_STOP = object()


class WorkerThreads:
    def __init__(self, limit: int, name: str = "api-worker"):
        self.limit = limit
        self.name = name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0          # threads waiting for work and not yet promised to a queued call
        self._threads = 0
        self._backlog = 0       # calls queued at the limit, owed the next thread that comes free
        self._closed = False

    async def run(self, fn: Callable[[], Any]) -> Any:
        """fn() in a worker thread; its result or exception here. Not cancellable once queued (like
        anyio's default): the caller's cancellation leaves the call to finish on its own."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker threads are closed")
            if self._idle:
                self._idle -= 1
            elif self._threads < self.limit:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
            else:
                self._backlog += 1
        self._q.put((loop, fut, fn))
        return await fut

    def close(self) -> None:
        """Idle threads exit; busy ones finish their call first. Later calls are refused."""
        with self._lock:
            self._closed = True
            n, self._idle = self._threads, 0
        for _ in range(n):
            self._q.put(_STOP)

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                with self._lock:
                    self._threads -= 1
                return
            loop, fut, fn = item
            try:
                result, error = fn(), None
            except StopIteration as exc:       # a future cannot hold one (asyncio refuses it)
                result, error = None, RuntimeError("a worker-thread call raised StopIteration")
                error.__cause__ = exc
            except BaseException as exc:       # handed to the awaiting coroutine, which re-raises it
                result, error = None, exc
            # Idle before the caller can resume: its next call must find this thread, not start one.
            with self._lock:
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:               # the loop is closed (server exit): nobody is waiting
                pass
            del item, fut, fn, result, error


def _settle(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
