"""store/group_commit.py: every caller returns only after the transaction holding its work committed;
concurrent callers share transactions; a handler's failure reaches only its own callers (SAVEPOINT),
a failed transaction reaches all of its callers; the transaction is durable if any work asked for it.
The mechanism is tested on a real SQLite file, and through QueueService (one writer turn for many sends)."""
from __future__ import annotations

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from lambdalet.store.db import open_database
from lambdalet.store.group_commit import MAX_ITEMS, GroupCommit

T = sa.table("gc_t", sa.column("k", sa.String), sa.column("v", sa.Integer))


@pytest.fixture()
def db(tmp_path):
    d = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    with d.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE gc_t (k TEXT PRIMARY KEY, v INTEGER)")
    yield d
    d.close()


def insert(conn, payloads):
    conn.execute(sa.insert(T), [{"k": p, "v": 1} for p in payloads])
    return [f"id-{p}" for p in payloads]


def keys(db) -> set[str]:
    with db.read() as conn:
        return {r.k for r in conn.execute(sa.select(T.c.k))}


def committer(db, log=None):
    @contextlib.contextmanager
    def begin(durable):
        if log is not None:
            log.append(durable)
        with db.begin() as conn:
            yield conn
    return GroupCommit(begin)


def test_single_caller_gets_its_result_after_commit(db):
    gc = committer(db)
    assert gc.run("ins", insert, "a", durable=True) == "id-a"
    assert keys(db) == {"a"} and gc.batches == 1


def test_concurrent_callers_share_transactions_and_each_gets_its_own_result(db):
    slow = threading.Lock()

    def slow_insert(conn, payloads):
        with slow:
            time.sleep(0.005)          # a commit's worth of time: the others pile up meanwhile
        assert len(payloads) <= MAX_ITEMS
        return insert(conn, payloads)

    gc = committer(db)
    results: dict[str, str] = {}

    def worker(i):
        results[str(i)] = gc.run(("ins", i % 3), slow_insert, str(i), durable=False)
        assert str(i) in keys(db), "answered before its commit"

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {str(i): f"id-{i}" for i in range(200)}
    assert keys(db) == {str(i) for i in range(200)}
    assert gc.items == 200 and gc.batches < 100, "no batching happened"


def test_a_failing_handler_rolls_back_only_its_own_works(db):
    """Two keys in one transaction: the one that raises is undone (SAVEPOINT), the other commits."""
    release = threading.Event()
    gc = committer(db)

    def first(conn, payloads):
        release.wait(5)
        return insert(conn, payloads)

    def half_then_fail(conn, payloads):
        insert(conn, payloads)
        raise ValueError("refused after writing")

    def per_entry(conn, payloads):
        insert(conn, payloads)
        return [KeyError(p) if p == "bad" else "ok" for p in payloads]

    out: dict[str, object] = {}

    def call(name, key, handler, payload):
        try:
            out[name] = gc.run(key, handler, payload, durable=False)
        except Exception as e:  # noqa: BLE001
            out[name] = e

    lead = threading.Thread(target=call, args=("lead", "a", first, "lead"))
    lead.start()
    while not gc._leading:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=("x", "b", half_then_fail, "x")),
              threading.Thread(target=call, args=("good", "c", per_entry, "good")),
              threading.Thread(target=call, args=("bad", "c", per_entry, "bad"))]
    for t in others:
        t.start()
    while len(gc._pending) < 3:
        time.sleep(0.001)
    release.set()
    for t in [lead, *others]:
        t.join(10)
    assert out["lead"] == "id-lead" and out["good"] == "ok"
    assert isinstance(out["x"], ValueError) and isinstance(out["bad"], KeyError)
    assert keys(db) == {"lead", "good", "bad"}, "the failed handler's row was rolled back, per-entry failures are the handler's"
    assert gc.batches == 2, "the three waiting works shared one transaction"


def test_a_failed_transaction_fails_every_work_and_leadership_moves_on(db):
    gc = committer(db)

    def boom(conn, payloads):
        raise OSError("disk on fire")

    with pytest.raises(OSError):
        gc.run("x", boom, "a", durable=True)
    assert keys(db) == set()
    assert gc.run("ins", insert, "fine", durable=True) == "id-fine"


def test_callers_that_pile_up_during_a_commit_share_the_next_one_and_durability_is_any(db):
    release = threading.Event()
    durable_log: list[bool] = []
    gc = committer(db, durable_log)
    sizes: list[int] = []

    def handler(conn, payloads):
        if not sizes:
            release.wait(10)
        sizes.append(len(payloads))
        return insert(conn, payloads)

    first = threading.Thread(target=gc.run, args=("k", handler, "first"), kwargs={"durable": False})
    first.start()
    while not gc._leading:
        time.sleep(0.001)
    others = [threading.Thread(target=gc.run, args=("k", handler, str(i)), kwargs={"durable": i == 7})
              for i in range(40)]
    for t in others:
        t.start()
    while len(gc._pending) < 40:
        time.sleep(0.001)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert sizes == [1, 40], "the 40 waiting callers were committed together"
    assert durable_log == [False, True], "one durable work makes its whole transaction durable"
