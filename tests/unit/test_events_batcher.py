"""events/batcher.py: group commit — every caller returns only after the batch holding its message
was flushed; concurrent callers share batches; per-entry and whole-batch failures reach their callers."""
from __future__ import annotations

import threading
import time

import pytest

from lambdalet.events.batcher import MAX_ENTRIES, GroupCommitter


def test_single_caller_gets_its_id():
    flushed = []

    def flush(region, name, entries):
        flushed.append((region, name, entries))
        return [f"id-{body}" for body, _ in entries]

    gc = GroupCommitter(flush)
    assert gc.submit("r", "q", "a", 3) == "id-a"
    assert flushed == [("r", "q", [("a", 3)])]


def test_concurrent_callers_share_batches_and_all_get_their_own_ids():
    lock = threading.Lock()
    batches = []

    def flush(region, name, entries):
        time.sleep(0.005)             # an fsync
        with lock:
            batches.append(len(entries))
        assert len(entries) <= MAX_ENTRIES
        return [f"{name}:{body}" for body, _ in entries]

    gc = GroupCommitter(flush)
    results: dict[str, str] = {}

    def worker(i):
        q = f"q{i % 3}"
        results[f"{q}:{i}"] = gc.submit("r", q, str(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(k == v for k, v in results.items()) and len(results) == 200
    assert sum(batches) == 200
    assert len(batches) < 200, "no batching happened"


def test_failures_reach_their_callers():
    def flush(region, name, entries):
        if any(body == "boom" for body, _ in entries):
            raise OSError("disk on fire")
        return [ValueError("bad entry") if body == "bad" else "ok" for body, _ in entries]

    gc = GroupCommitter(flush)
    with pytest.raises(ValueError):
        gc.submit("r", "q", "bad")
    with pytest.raises(OSError):
        gc.submit("r", "q", "boom")
    assert gc.submit("r", "q", "fine") == "ok"     # leadership was handed back after the failures


def test_callers_that_pile_up_during_a_commit_share_the_next_one_beyond_ten():
    release = threading.Event()
    batches: list[int] = []

    def flush(region, name, entries):
        if not batches:
            release.wait(10)          # the first commit is slow; everyone else queues behind it
        batches.append(len(entries))
        return [f"id-{body}" for body, _ in entries]

    gc = GroupCommitter(flush)
    first = threading.Thread(target=gc.submit, args=("r", "q", "first"))
    first.start()
    while not gc._leading:
        time.sleep(0.001)
    others = [threading.Thread(target=gc.submit, args=("r", "q", str(i))) for i in range(40)]
    for t in others:
        t.start()
    while len(gc._pending) < 40:
        time.sleep(0.001)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert batches == [1, 40], "the 40 waiting callers were committed together"
    assert MAX_ENTRIES >= 40
