"""Storage primitives for the queue service: the durable write transaction, the claim step, and the
in-process wake-ups that long polling sleeps on.

`claim_messages` is the one place that picks and locks receivable rows. It already asks for
`SELECT ... FOR UPDATE SKIP LOCKED` (SQLAlchemy renders nothing for SQLite, where BEGIN IMMEDIATE
makes the whole transaction exclusive), so on PostgreSQL concurrent receivers skip each other's rows
instead of queueing behind them.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Collection, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lambdalet.queues.tables import sqs_messages
from lambdalet.store.db import Database

try:  # the execution option store.db's "begin" listener reads to emit BEGIN IMMEDIATE
    from lambdalet.store.db import _IMMEDIATE
except ImportError:  # pragma: no cover
    _IMMEDIATE = "lambdalet_immediate"


@contextlib.contextmanager
def durable_write(db: Database) -> Iterator[Connection]:
    """A write transaction whose COMMIT is on stable storage before the block returns.

    The store runs SQLite with synchronous=NORMAL (a WAL commit survives a process crash but not a
    power cut). SendMessage must not answer before the message would survive both, so on SQLite this
    connection is switched to synchronous=FULL (fsync of the WAL at each commit) for this one
    transaction and switched back afterwards. SQLite refuses to change the level inside a
    transaction, hence the PRAGMA before BEGIN. PostgreSQL commits are durable by default.
    Like `Database.begin`, it waits for this process's writer turn first (`Database.writer`).
    """
    if not db.is_sqlite:
        with db.begin() as conn:
            yield conn
        return
    with db.writer(), db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        previous = raw.execute("PRAGMA synchronous").fetchone()[0]
        raw.execute("PRAGMA synchronous=FULL")
        try:
            conn = conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn
        finally:
            raw.execute(f"PRAGMA synchronous={int(previous)}")


def claim_messages(conn: Connection, queue_id: str, now: float, limit: int, *,
                   retention_cutoff: float, exclude: Collection[str] = ()) -> list[Row]:
    """Select and lock up to `limit` receivable messages of a queue, oldest visibility first.

    The caller (inside a write transaction) then updates each row: delivered rows get a new
    visibility deadline and receive count, redriven rows move to the dead-letter queue.
    """
    m = sqs_messages
    stmt = (sa.select(m)
            .where(m.c.queue_id == queue_id, m.c.visible_at <= now, m.c.sent_at > retention_cutoff,
                   *([m.c.id.notin_(list(exclude))] if exclude else []))
            .order_by(m.c.visible_at)
            .limit(limit)
            .with_for_update(skip_locked=True))
    return list(conn.execute(stmt).all())


def next_visible_at(conn: Connection, queue_id: str, now: float) -> float | None:
    """When the next not-yet-receivable message of the queue becomes receivable (None: none pending)."""
    m = sqs_messages
    return conn.execute(sa.select(sa.func.min(m.c.visible_at))
                        .where(m.c.queue_id == queue_id, m.c.visible_at > now)).scalar()


class QueueSignals:
    """In-process wake-ups for long polling: senders bump a queue's generation after their commit;
    receivers that found nothing sleep until the generation changes or their timeout passes, with no
    DB connection held and no CPU: a thread on a Condition (`wait`, internal pollers), or a coroutine
    on the API's event loop (`wait_async`, ReceiveMessage: no worker thread held, queues/longpoll.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conds: dict[str, tuple[threading.Condition, list[int]]] = {}   # queue_id -> (cond, [waiters])
        self._gen: dict[str, int] = {}
        self._futures: dict[str, dict[asyncio.Future, asyncio.AbstractEventLoop]] = {}   # queue_id -> waiters

    def generation(self, queue_id: str) -> int:
        with self._lock:
            return self._gen.get(queue_id, 0)

    def notify(self, queue_id: str) -> None:
        with self._lock:
            self._gen[queue_id] = self._gen.get(queue_id, 0) + 1
            entry = self._conds.get(queue_id)
            if entry:
                entry[0].notify_all()
            futures = self._futures.pop(queue_id, None)
        for fut, loop in (futures or {}).items():
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:       # that loop is closed (server exit): nobody is waiting
                pass

    def wait(self, queue_id: str, generation: int, timeout: float) -> bool:
        """Sleep until `notify(queue_id)` after `generation` was read, or timeout. True if notified."""
        if timeout <= 0:
            return False
        with self._lock:
            entry = self._conds.get(queue_id)
            if entry is None:
                entry = self._conds[queue_id] = (threading.Condition(self._lock), [0])
            cond, waiters = entry
            waiters[0] += 1
            try:
                return cond.wait_for(lambda: self._gen.get(queue_id, 0) != generation, timeout)
            finally:
                waiters[0] -= 1
                if waiters[0] == 0:
                    self._conds.pop(queue_id, None)

    async def wait_async(self, queue_id: str, generation: int, timeout: float) -> bool:
        """`wait` for a coroutine: the event loop sleeps, no thread does."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._gen.get(queue_id, 0) != generation:
                return True
            if timeout <= 0:
                return False
            self._futures.setdefault(queue_id, {})[fut] = loop
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._futures.get(queue_id)
                if waiting is not None:
                    waiting.pop(fut, None)
                    if not waiting:
                        del self._futures[queue_id]

    def async_waiters(self, queue_id: str | None = None) -> int:
        """Coroutines waiting (on one queue, or on all): for tests and the bench."""
        with self._lock:
            if queue_id is not None:
                return len(self._futures.get(queue_id, ()))
            return sum(len(w) for w in self._futures.values())


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
