"""logs/store.py: the sink's line splitting, batching and flushing; sealed storage; reads, tokens'
positions, interleaved filtering; retention; the 0003 migration."""
from __future__ import annotations

import importlib.util
import os
import threading
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from lambdalet.crypto import DecryptionError, Keyring, MemoryKeyMaterialStore
from lambdalet.logs import sink as sink_mod
from lambdalet.logs import store as store_mod
from lambdalet.logs.store import LogStore
from lambdalet.logs.tables import log_batches, log_groups, log_streams
from lambdalet.store.db import MIGRATIONS_DIR

from .logs_support import ACCOUNT, GROUP, REGION, TABLES, Clock, make_db, messages


@pytest.fixture
def keyring():
    return Keyring.open(os.urandom(32), MemoryKeyMaterialStore())


@pytest.fixture
def db(tmp_path):
    d = make_db(f"sqlite:///{tmp_path / 'state.db'}")
    yield d
    d.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(db, keyring, clock):
    s = LogStore(db, keyring, clock=clock, background=False)
    yield s
    s.close()


# ---------------------------------------------------------------- migration

def test_migration_0003_builds_exactly_the_tables(tmp_path):
    path = MIGRATIONS_DIR / "versions" / "0003_logs.py"
    spec = importlib.util.spec_from_file_location("mig0003", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (mod.revision, mod.down_revision) == ("0003", "0002")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        ctx = MigrationContext.configure(conn)
        with Operations.context(ctx):
            mod.upgrade()
        only_logs = sa.MetaData(naming_convention=log_groups.metadata.naming_convention)
        for t in TABLES:
            t.to_metadata(only_logs)
        assert compare_metadata(MigrationContext.configure(conn), only_logs) == []
        with Operations.context(MigrationContext.configure(conn)):
            mod.downgrade()
        assert not {t.name for t in TABLES} & set(sa.inspect(conn).get_table_names())


# ---------------------------------------------------------------- sink: splitting

def test_lines_partial_lines_and_platform_lines(store):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"START RequestId: r1 Version: $LATEST\n")
    sink(b"hel")
    sink(b"lo\nwor")
    sink(b"ld\nno newline")
    sink(b"END RequestId: r1\nREPORT RequestId: r1\tDuration: 1.00 ms\t\n")
    store.flush()
    assert messages(store) == ["START RequestId: r1 Version: $LATEST\n", "hello\n", "world\n", "no newline",
                               "END RequestId: r1\n", "REPORT RequestId: r1\tDuration: 1.00 ms\t\n"]


def test_utf8_split_across_chunks_and_partial_flushed_on_close(store):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    data = "héllo wörld ✓\n".encode()
    for i in range(len(data)):
        sink(data[i:i + 1])
    sink("tail ✓".encode()[:-1])      # a partial line cut inside a character...
    sink("tail ✓".encode()[-1:])      # ...completed by the next chunk
    store.flush()
    assert messages(store)[0] == "héllo wörld ✓\n"
    sink.close()
    store.flush()
    assert messages(store) == ["héllo wörld ✓\n", "tail ✓"]


def test_long_lines_are_split_at_the_event_size_limit(store):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    line = ("é" * (store_mod.MAX_EVENT_BYTES // 2 + 10)).encode() + b"\n"
    sink(line)
    store.flush()
    got = messages(store)
    assert len(got) == 2 and "".join(got) == line.decode()
    assert all(len(m.encode()) <= store_mod.MAX_EVENT_BYTES for m in got)


def test_partial_line_is_written_after_a_while(store, monkeypatch):
    monkeypatch.setattr(sink_mod, "PARTIAL_LINE_WAIT_S", 0.05)     # LogSink holds partial lines
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"progress: 10%")
    store._flush([sink], force_partial=False)
    assert store.get_group(ACCOUNT, REGION, GROUP) is None       # held: the line may go on
    time.sleep(0.1)
    store._flush([sink], force_partial=False)
    assert messages(store) == ["progress: 10%"]


def test_timestamps_never_go_back_within_a_stream(store, clock):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"a\n")
    clock.t -= 5                       # wall clock stepped back
    sink(b"b\n")
    clock.t += 10
    sink(b"c\n")
    store.flush()
    g = store.get_group(ACCOUNT, REGION, GROUP)
    ev = store.read_forward(g, store.get_stream(g.id, "s1"), 0)
    ts = [e.timestamp for e in ev]
    assert ts == sorted(ts) and ts[0] == ts[1] == 1_700_000_000_000 and ts[2] == 1_700_000_005_000


def test_invalid_names_are_refused(store):
    with pytest.raises(ValueError):
        store.sink(ACCOUNT, REGION, "bad group name", "s")
    with pytest.raises(ValueError):
        store.sink(ACCOUNT, REGION, GROUP, "a:b")


# ---------------------------------------------------------------- at rest

def test_nothing_plain_at_rest(tmp_path, keyring):
    db = make_db(f"sqlite:///{tmp_path / 'state.db'}")
    store = LogStore(db, keyring, background=False)
    marker = "MARKER-" + os.urandom(8).hex()
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    for i in range(50):
        sink(f"{marker} line {i} {marker}\n".encode())
    store.flush()
    g = store.get_group(ACCOUNT, REGION, GROUP)
    assert len(store.read_forward(g, store.get_stream(g.id, "s1"), 0)) == 50
    files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
    assert any(p.name.endswith("-wal") for p in files)       # checked before and after a checkpoint
    for p in files:
        assert marker.encode() not in p.read_bytes(), p
    store.close()
    db.close()
    for p in tmp_path.iterdir():
        assert marker.encode() not in p.read_bytes(), p


def test_batches_are_bound_to_their_stream_and_position(store, db):
    for name in ("s1", "s2"):
        sink = store.sink(ACCOUNT, REGION, GROUP, name)
        sink(f"secret of {name}\n".encode())
        store.flush()
    with db.begin() as conn:
        rows = conn.execute(sa.select(log_batches.c.id, log_batches.c.data_sealed).order_by(log_batches.c.id)).all()
        conn.execute(log_batches.update().where(log_batches.c.id == rows[0].id).values(data_sealed=rows[1].data_sealed))
    g = store.get_group(ACCOUNT, REGION, GROUP)
    with pytest.raises(DecryptionError):
        store.read_forward(g, store.get_stream(g.id, "s1"), 0)
    assert [e.message for e in store.read_forward(g, store.get_stream(g.id, "s2"), 0)] == ["secret of s2\n"]


# ---------------------------------------------------------------- flushing

def test_report_line_wakes_the_flusher(db, keyring):
    store = LogStore(db, keyring, flush_interval_s=30)
    try:
        sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
        sink(b"START RequestId: r Version: 1\nhello\n")
        time.sleep(0.3)
        assert store.get_group(ACCOUNT, REGION, GROUP) is None     # no REPORT yet: waits for the interval
        sink(b"END RequestId: r\nREPORT RequestId: r\tDuration: 2 ms\t\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and store.get_group(ACCOUNT, REGION, GROUP) is None:
            time.sleep(0.02)
        assert len(messages(store)) == 4
    finally:
        store.close()


def test_periodic_flush_and_close_writes_everything(db, keyring):
    store = LogStore(db, keyring, flush_interval_s=0.05)
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"one\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and store.get_group(ACCOUNT, REGION, GROUP) is None:
        time.sleep(0.02)
    assert messages(store) == ["one\n"]
    sink(b"two\nthree")
    store.close()
    assert messages(store) == ["one\n", "two\n", "three"]


def test_sink_never_waits_for_the_database(tmp_path, keyring):
    db = make_db(f"sqlite:///{tmp_path / 'state.db'}")
    store = LogStore(db, keyring, flush_interval_s=0.01)
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock():
        with db.begin() as conn:          # BEGIN IMMEDIATE: the flusher's writes must wait
            conn.execute(sa.select(1))
            locked.set()
            release.wait(10)

    t = threading.Thread(target=hold_write_lock)
    t.start()
    assert locked.wait(5)
    try:
        t0 = time.monotonic()
        for i in range(2000):
            sink(f"line {i}\n".encode())
        sink(b"REPORT RequestId: x\tDuration: 1 ms\t\n")
        assert time.monotonic() - t0 < 1.0
    finally:
        release.set()
        t.join()
    store.close()
    assert len(messages(store)) == 2001
    db.close()


def test_failed_writes_are_retried_in_order(store, monkeypatch):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"a\nb\n")
    real = store._append
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*a, **kw)

    monkeypatch.setattr(store, "_append", flaky)
    store.flush()
    assert store.get_group(ACCOUNT, REGION, GROUP) is None
    sink(b"c\n")
    store.flush()
    assert messages(store) == ["a\n", "b\n", "c\n"]


def test_group_is_recreated_if_deleted_while_logging(store):
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"first\n")
    store.flush()
    assert store.delete_group(ACCOUNT, REGION, GROUP)
    sink(b"second\n")
    store.flush()
    assert messages(store) == ["second\n"]


# ---------------------------------------------------------------- reads

def _fill(store, clock, stream="s1", n=10, step=1.0, group=GROUP, text="event"):
    sink = store.sink(ACCOUNT, REGION, group, stream)
    for i in range(n):
        sink(f"{text} {i}\n".encode())
        store.flush()                     # one batch per event: exercises batch boundaries
        clock.t += step
    return sink


def test_forward_and_backward_positions(store, clock):
    _fill(store, clock, n=10)
    g = store.get_group(ACCOUNT, REGION, GROUP)
    st = store.get_stream(g.id, "s1")
    assert st.next_seq == 10
    assert [e.seq for e in store.read_forward(g, st, 3, limit=4)] == [3, 4, 5, 6]
    assert [e.seq for e in store.read_backward(g, st, 10, limit=3)] == [7, 8, 9]
    assert [e.seq for e in store.read_backward(g, st, 2, limit=5)] == [0, 1]
    t0 = 1_700_000_000_000
    assert [e.seq for e in store.read_forward(g, st, 0, start_ms=t0 + 2000, end_ms=t0 + 5000)] == [2, 3, 4]
    assert [e.seq for e in store.read_backward(g, st, 10, start_ms=t0 + 2000, end_ms=t0 + 5000, limit=2)] == [3, 4]
    # the 1 MB response cap counts message bytes + 26 per event; at least one event is always returned
    assert len(store.read_forward(g, st, 0, max_bytes=1)) == 1


def test_filter_interleaves_streams_and_pages_without_gaps(store, clock):
    sinks = {name: store.sink(ACCOUNT, REGION, GROUP, name) for name in ("a", "b", "c")}
    expected = []
    for i in range(30):
        name = "abc"[i % 3] if i % 7 else "a"
        sinks[name](f"{name}-{i} {'ERROR' if i % 4 == 0 else 'INFO'}\n".encode())
        expected.append(f"{name}-{i}")
        if i % 5 == 0:
            clock.t += 0.001                 # several events share a millisecond, across streams
        if i % 2:
            store.flush()
    store.flush()
    g = store.get_group(ACCOUNT, REGION, GROUP)
    events, nxt = store.filter_events(g)
    assert nxt is None and len(events) == 30
    keys = [e.key for e in events]
    assert keys == sorted(keys)
    assert sorted(e.message.split()[0] for e in events) == sorted(expected)
    # pages of 4 reproduce the single answer exactly
    got, pos = [], None
    for _ in range(100):
        page, pos = store.filter_events(g, after=pos, limit=4)
        got += page
        if pos is None:
            break
    assert [e.event_id for e in got] == [e.event_id for e in events]
    assert len({e.event_id for e in got}) == 30
    errors, _ = store.filter_events(g, match=lambda m: "ERROR" in m)
    assert [e.message for e in errors] == [e.message for e in events if "ERROR" in e.message]
    only_b, _ = store.filter_events(g, stream_names=["b"])
    assert {e.stream_name for e in only_b} == {"b"}


def test_filter_scan_budget_returns_a_resumable_position(store, clock):
    _fill(store, clock, n=20, text="x" * 100)
    g = store.get_group(ACCOUNT, REGION, GROUP)
    got, pos, calls = [], None, 0
    while True:
        calls += 1
        page, pos = store.filter_events(g, after=pos, match=lambda m: m.endswith("7\n"), scan_budget_bytes=200)
        got += page
        if pos is None:
            break
        assert calls < 100
    assert calls > 2 and [e.message[-3:] for e in got] == [" 7\n", "17\n"]


def test_filter_time_range_is_inclusive(store, clock):
    _fill(store, clock, n=5)
    g = store.get_group(ACCOUNT, REGION, GROUP)
    t0 = 1_700_000_000_000
    events, _ = store.filter_events(g, start_ms=t0 + 1000, end_ms=t0 + 3000)
    assert [e.timestamp - t0 for e in events] == [1000, 2000, 3000]


# ---------------------------------------------------------------- retention

def test_retention_days_and_group_size_cap(db, keyring, clock):
    store = LogStore(db, keyring, clock=clock, background=False, max_group_bytes=10_000)
    try:
        _fill(store, clock, n=3, step=86_400)        # one event per day
        assert store.set_retention(ACCOUNT, REGION, GROUP, 1)
        store.purge()
        assert messages(store) == ["event 2\n"]
        g = store.get_group(ACCOUNT, REGION, GROUP)
        assert g.stored_bytes == len("event 2\n")
        assert store.set_retention(ACCOUNT, REGION, GROUP, None)
        sink = store.sink(ACCOUNT, REGION, "/big", "s")
        for _ in range(30):
            sink(("y" * 999 + "\n").encode())
            store.flush()
        store.purge()
        g = store.get_group(ACCOUNT, REGION, "/big")
        assert 9_000 <= g.stored_bytes <= 10_000
        assert len(store.read_forward(g, store.get_stream(g.id, "s"), 0)) == 10
    finally:
        store.close()


def test_a_flush_looks_nothing_up_once_its_streams_are_known(store, db):
    """The flusher remembers each stream's ids and position (one SELECT per stream on the first flush
    only); reads see the same events and positions as without it."""
    sinks = [store.sink(ACCOUNT, REGION, GROUP, f"s{i}") for i in range(3)]
    for s in sinks:
        s(b"one\n")
    store.flush()
    selects = []
    sa.event.listen(db.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, *a: selects.append(stmt) if stmt.lstrip().upper().startswith("SELECT") else None)
    for s in sinks:
        s(b"two\nthree\n")
    store.flush()
    assert selects == []
    for i in range(3):
        assert messages(store, f"s{i}") == ["one\n", "two\n", "three\n"]
    g = store.get_group(ACCOUNT, REGION, GROUP)
    assert store.get_stream(g.id, "s1").next_seq == 3


def test_a_group_deleted_behind_the_stores_back_is_recreated(store, db):
    """Another server sharing the database deletes the group: the remembered ids are stale, the
    flush fails on them, and its retry looks everything up again (nothing is lost)."""
    sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
    sink(b"first\n")
    store.flush()
    with db.begin() as conn:
        for t in (log_batches, log_streams, log_groups):
            conn.execute(t.delete())
    sink(b"second\n")
    store.flush()
    store.flush()
    assert messages(store) == ["second\n"]
