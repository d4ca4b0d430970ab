"""Group commit: concurrent writers share one transaction, and one fsync, instead of queueing for a turn each.

SQLite has one writer. Under load a writer's turn is not the disk's time but the interpreter's: every
statement releases the GIL, and taking it back waits behind the other busy threads, so a one-message
transaction held the write lock for milliseconds (bench/sqs_write_bench.py, bench/sqs_bench.py). Here each
caller adds its work and waits; one caller at a time leads: it takes every pending work (up to MAX_ITEMS /
MAX_BYTES), runs them all in ONE transaction, commits, and repeats until its own work is committed, then
hands leadership to a waiter, which takes whatever arrived meanwhile. So the batch grows with the load
and nobody returns before the commit that holds its work: an answer still means "committed" (and, if any
work of the batch asked for it, "on stable storage": the batch is durable if one of its works is).

Works with the same key are handed to their handler together (`handler(conn, [payload, ...])` ->
per payload its result, or the exception that refused it): one INSERT of many rows, not one per caller.
A handler that raises fails only its own works: with several keys in a batch each runs in a SAVEPOINT,
rolled back alone. If the transaction itself fails (COMMIT, the disk), every work of it fails with that
error and none was committed. Handlers run in the leader's thread; callers do their after-commit work
(wake-ups) once `run` returns, in their own. Never call `run` inside a write transaction of your own:
the leader needs the writer turn (store/db.Database.writer) that the waiting caller would hold.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Hashable

from sqlalchemy.engine import Connection

MAX_ITEMS = 500                 # works per transaction: bounds a batch's latency and memory, not correctness
MAX_BYTES = 8_000_000

# handler(conn, payloads) -> one result per payload (a returned BaseException is that payload's failure)
Handler = Callable[[Connection, list[Any]], list[Any]]
# begin(durable) -> a write transaction; durable: its COMMIT is on stable storage when the block ends
Begin = Callable[[bool], ContextManager[Connection]]


@dataclass(eq=False)
class _Work:
    key: Hashable
    handler: Handler
    payload: Any
    durable: bool
    size: int
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, begin: Begin):
        self._begin = begin
        self._cond = threading.Condition()
        self._pending: list[_Work] = []
        self._leading = False
        self.batches = 0                # statistics (benches, tests)
        self.items = 0

    def run(self, key: Hashable, handler: Handler, payload: Any, *, durable: bool, size: int = 0) -> Any:
        """Run `handler` on `payload` (with other works of the same key) in a shared transaction; its
        result once that transaction has committed. Works of one key must share one handler."""
        work = _Work(key, handler, payload, durable, size)
        led = False
        with self._cond:
            self._pending.append(work)
            while not work.done and self._leading:
                self._cond.wait()
            if not work.done:
                self._leading = led = True
        if led:
            try:
                while not work.done:
                    with self._cond:
                        batch = self._take()
                    self._run(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if work.error is not None:
            raise work.error
        return work.result

    def _take(self) -> list[_Work]:
        """The oldest pending works, up to the limits (at least one)."""
        n, size = 0, 0
        for w in self._pending:
            if n and (n >= MAX_ITEMS or size + w.size > MAX_BYTES):
                break
            n, size = n + 1, size + w.size
        batch, self._pending = self._pending[:n], self._pending[n:]
        return batch

    def _run(self, batch: list[_Work]) -> None:
        groups: dict[Hashable, list[_Work]] = {}
        for w in batch:
            groups.setdefault(w.key, []).append(w)
        outcome: dict[int, tuple[Any, BaseException | None]] = {}
        try:
            with self._begin(any(w.durable for w in batch)) as conn:
                for works in groups.values():
                    # Alone in the batch, a failing handler rolls the whole transaction back (no savepoint needed).
                    sp = conn.begin_nested() if len(groups) > 1 else contextlib.nullcontext()
                    try:
                        with sp:
                            results = works[0].handler(conn, [w.payload for w in works])
                    except Exception as e:      # noqa: BLE001 - this group's failure, reported to its callers
                        if len(groups) == 1:
                            raise
                        results = [e] * len(works)
                    for w, r in zip(works, results, strict=True):
                        outcome[id(w)] = (None, r) if isinstance(r, BaseException) else (r, None)
        except BaseException as e:              # nothing of this transaction was committed
            outcome = {id(w): (None, e) for w in batch}
        with self._cond:
            for w in batch:
                w.result, w.error = outcome[id(w)]
                w.done = True
            self.batches += 1
            self.items += len(batch)
            self._cond.notify_all()
