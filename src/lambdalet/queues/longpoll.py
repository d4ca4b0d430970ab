"""ReceiveMessage's long poll without a thread per waiter.

A receive that found nothing and may still wait answers a `LongPoll` instead of sleeping in its
worker thread. The API (api/threads.py, `WorkerThreads.run_deferrable`) awaits `ready_on_loop()` on
its event loop — a future woken by the queue's signal, or the end of the slice — and then runs the
callable it returns in a worker: one more receive attempt, whose answer is the response or another
`LongPoll`. So 600 open long polls cost 600 futures, not 600 of the API's shared worker threads
(issue 21.7: one account's long polls delayed another account's calls by seconds). Direct Python
callers use `block()`, which sleeps in their own thread as before.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from lambdalet.queues.storage import QueueSignals

# Upper bound of one sleep while long polling: a cheap re-check that also notices messages
# committed by another process sharing the database.
MAX_SLEEP_SLICE_S = 2.0


class LongPoll:
    def __init__(self, signals: QueueSignals, queue_id: str, generation: int, deadline: float,
                 next_at: float | None, attempt: Callable[[], Any]):
        self.signals = signals
        self.queue_id = queue_id
        self.generation = generation     # read before the attempt that found nothing: no lost wake-up
        self.deadline = deadline         # time.monotonic()
        self.next_at = next_at           # epoch time a delayed or in-flight message becomes receivable
        self.attempt = attempt           # the next receive attempt (blocking: run it in a worker thread)

    def _sleep_s(self) -> float:
        sleep = min(self.deadline - time.monotonic(), MAX_SLEEP_SLICE_S)
        if self.next_at is not None:
            sleep = min(sleep, max(0.01, self.next_at - time.time() + 0.005))
        return sleep

    async def ready_on_loop(self) -> Callable[[], Any]:
        """Wait on the running event loop until the queue may have a message (or the slice ends);
        -> what to run next in a worker thread."""
        sleep = self._sleep_s()
        if sleep > 0:
            await self.signals.wait_async(self.queue_id, self.generation, sleep)
        return self.attempt

    def block(self) -> Any:
        """The same wait in the calling thread, then the attempt; its answer may be another LongPoll."""
        sleep = self._sleep_s()
        if sleep > 0:
            self.signals.wait(self.queue_id, self.generation, sleep)
        return self.attempt()


def settle(result: Any) -> Any:
    """A blocking caller's answer: long polls waited for in this thread."""
    while isinstance(result, LongPoll):
        result = result.block()
    return result
