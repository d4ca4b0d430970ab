"""Opening the database: engine, SQLite pragmas, migrations to head, and transaction helpers.

Thread safety: the Engine's pool hands each thread its own connection; `begin()` gives one atomic
transaction. On SQLite, write transactions start with BEGIN IMMEDIATE so two writers never both
read and then deadlock when upgrading to a write lock (SQLite would answer SQLITE_BUSY at once,
without waiting for busy_timeout). Readers use a plain deferred BEGIN and, in WAL mode, never wait.
"""
from __future__ import annotations

import contextlib
import threading
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
        self._write_lock = threading.RLock() if self.is_sqlite else None

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold this process's writer turn (SQLite) around one write transaction."""
        lock = self._write_lock
        got = lock is not None and lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            yield
        finally:
            if got:
                lock.release()

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
