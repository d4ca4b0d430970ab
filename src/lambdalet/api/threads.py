"""The API's one hop from the event loop to blocking code (SigV4, authorization, the operation).

Why not anyio's `to_thread` (what Starlette's `run_in_threadpool` uses): on the warm Invoke path its
bookkeeping (task and backend lookups, a cancel scope, a capacity limiter) was ~13% of the server's
GIL time, more than the rest of the hop. Here a call costs a queue put, one future and one
`call_soon_threadsafe`. Threads are daemons started on demand up to `limit` and reused; calls
beyond the limit wait in the queue.

The pool serves every account, so nothing may hold one of its threads per waiter (issue 21.7):
- a wait (SQS ReceiveMessage's long poll) is awaited on the event loop: `run_deferrable` lets an
  operation answer a deferred result (anything with an async `ready_on_loop()`, queues/longpoll.py),
  awaits it, then runs what it hands back in a worker;
- a call that must hold its thread for long (a synchronous Invoke) takes one of its account's
  `AccountShares` first: one account cannot take more than a share of the pool.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable

# one account's long-held calls: shared with the invoker's streamed invocations (invoke/concurrency.py)
from lambdalet.invoke.concurrency import ACCOUNT_EXCEEDED, AccountShares  # noqa: F401

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

    async def run_deferrable(self, fn: Callable[[], Any]) -> Any:
        """`run(fn)`; while the answer is deferred (has `ready_on_loop`), await it on this loop with
        no thread held, then run the callable it returns in a worker."""
        result = await self.run(fn)
        while (ready := getattr(result, "ready_on_loop", None)) is not None:
            result = await self.run(await ready())
        return result

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
