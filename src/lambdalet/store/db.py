"""Opening the database: engine, SQLite pragmas, migrations to head, and transaction helpers.

Thread safety: the Engine's pool hands each thread its own connection; `begin()` gives one atomic
transaction. On SQLite, write transactions start with BEGIN IMMEDIATE so two writers never both
read and then deadlock when upgrading to a write lock (SQLite would answer SQLITE_BUSY at once,
without waiting for busy_timeout). Readers use a plain deferred BEGIN and, in WAL mode, never wait.
"""
from __future__ import annotations

import collections
import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from lambdalet.store.permissions import create_private

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
_IMMEDIATE = "lambdalet_immediate"


class Database:
    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite has one write lock; a writer that finds it taken sleeps in SQLite's busy handler
        # (1, 2, 5, 10 ... 100 ms back-off) instead of queueing, so under contention the lock sits idle
        # while writers sleep. This process's writers queue here instead and the next one runs at
        # release (other processes still meet the busy handler). Re-entrant, and bounded by the busy
        # timeout, so a nested or stuck writer fails as it did before rather than hanging.
        # First come, first served: threading.RLock lets a thread that just released barge ahead of
        # those waiting, so under load one busy writer (a sender's loop) starved the others for
        # hundreds of ms (bench/sqs_write_bench.py: DeleteMessageBatch p50 819 ms).
        self._write_lock = FairRLock() if self.is_sqlite else None
        self._turns = [0, 0.0, 0.0]     # writer turns, seconds waited for them, seconds held (benchmarks)

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold this process's writer turn (SQLite) around one write transaction."""
        lock = self._write_lock
        t0 = time.perf_counter()
        got = lock is not None and lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000)
        t1 = time.perf_counter()
        try:
            yield
        finally:
            if got:
                turns = self._turns          # updated under the lock: exact for outermost turns
                turns[0] += 1
                turns[1] += t1 - t0
                turns[2] += time.perf_counter() - t1
                lock.release()

    def writer_stats(self) -> dict:
        """Writer turns taken, and seconds spent waiting for and holding them, since the start."""
        return {"turns": self._turns[0], "wait_s": self._turns[1], "hold_s": self._turns[2]}

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self.writer(), self.engine.connect() as conn:
            conn = conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """One consistent read snapshot (a deferred transaction, never committed)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        self.engine.dispose()


class FairRLock:
    """A re-entrant lock granted in arrival order (acquire(timeout) like threading.RLock's)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiting: collections.deque[tuple[int, threading.Event]] = collections.deque()

    def acquire(self, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._waiting:
                self._owner, self._depth = me, 1
                return True
            turn = (me, threading.Event())
            self._waiting.append(turn)
        if turn[1].wait(None if timeout < 0 else timeout):
            return True                      # release() handed it over: we own it
        with self._mutex:
            if turn[1].is_set():             # handed over just as we timed out
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release un-acquired lock")
            self._depth -= 1
            if self._depth:
                return
            if self._waiting:
                me, event = self._waiting.popleft()
                self._owner, self._depth = me, 1
                event.set()
            else:
                self._owner = None


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take transaction control away from the sqlite3 module so BEGIN is ours (see module doc).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")       # answers "memory" for :memory:, harmlessly
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")      # durable at checkpoints; WAL keeps it consistent
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get(_IMMEDIATE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if u.database in (None, "", ":memory:"):
        # One shared connection, or every thread would see its own empty database.
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        create_private(Path(u.database))     # 0600 before SQLite makes it: its WAL and -shm copy the mode
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
    _sqlite_events(engine)
    return engine


def migrate(engine: Engine, revision: str = "head") -> None:
    """`alembic upgrade <revision>` on this engine, without any alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()


def open_database(url: str) -> Database:
    engine = make_engine(url)
    migrate(engine)
    return Database(engine)
