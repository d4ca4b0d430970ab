"""Group commit for internal enqueues: concurrent callers share one durable (fsynced) transaction.

Each caller adds its message and waits; one caller at a time leads: it takes every pending message
of one queue (up to MAX_ENTRIES / MAX_BATCH_BYTES) and commits them in ONE transaction, repeating
until its own message is committed, then hands leadership to a waiter, which takes whatever arrived
meanwhile. So the batch grows with the load (a fsync per batch, not per event), and nobody returns
before the commit that holds its message: a 202 still means "on stable storage". Internal batches
are not bound by SendMessageBatch's 10 entries (that limit stays on the SQS API).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

MAX_ENTRIES = 500               # per transaction; bounds a batch's latency and memory, not correctness
MAX_BATCH_BYTES = 8_000_000


@dataclass(eq=False)
class _Item:
    key: tuple[str, str]          # (region, queue name)
    body: str
    delay_s: int
    done: bool = False
    message_id: str | None = None
    error: BaseException | None = None
    size: int = field(init=False)

    def __post_init__(self):
        self.size = len(self.body)


# flush(region, queue name, [(body, delay_s)]) -> per entry: message id, or the exception for that entry
FlushFn = Callable[[str, str, list[tuple[str, int]]], list["str | BaseException"]]


class GroupCommitter:
    def __init__(self, flush: FlushFn):
        self._flush = flush
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._leading = False
        self.batches = 0                 # statistics (bench)
        self.messages = 0

    def submit(self, region: str, queue_name: str, body: str, delay_s: int = 0) -> str:
        item = _Item((region, queue_name), body, int(delay_s))
        led = False
        with self._cond:
            self._pending.append(item)
            while not item.done and self._leading:
                self._cond.wait()
            if not item.done:
                self._leading = led = True
        if led:
            try:
                while not item.done:
                    with self._cond:
                        batch = self._take()
                    if not batch:     # unreachable while our item is pending
                        item.error, item.done = RuntimeError("group commit lost an item"), True
                        break
                    self._run(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.message_id is not None
        return item.message_id

    def _take(self) -> list[_Item]:
        if not self._pending:
            return []
        key = self._pending[0].key
        batch, size, rest = [], 0, []
        for it in self._pending:
            if it.key == key and len(batch) < MAX_ENTRIES and (not batch or size + it.size <= MAX_BATCH_BYTES):
                batch.append(it)
                size += it.size
            else:
                rest.append(it)
        self._pending = rest
        return batch

    def _run(self, batch: list[_Item]) -> None:
        region, name = batch[0].key
        try:
            results = self._flush(region, name, [(it.body, it.delay_s) for it in batch])
        except BaseException as e:          # the whole batch failed: nobody was committed
            results = [e] * len(batch)
        with self._cond:
            for it, res in zip(batch, results):
                if isinstance(res, BaseException):
                    it.error = res
                else:
                    it.message_id = res
                it.done = True
            self.batches += 1
            self.messages += len(batch)
            self._cond.notify_all()
