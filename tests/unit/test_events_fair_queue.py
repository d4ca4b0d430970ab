"""events/fair_queue.py: Event deliveries are taken round robin over accounts, then over an account's
functions, and one account never runs more than its cap (issue 21.7)."""
from __future__ import annotations

import threading

from lambdalet.events.fair_queue import FairQueue


def test_round_robin_over_accounts_then_functions():
    q = FairQueue(account_cap=10)
    for i in range(4):
        q.put(("A", "slow"), f"A-slow-{i}")
    q.put(("A", "fast"), "A-fast-0")
    q.put(("B", "f"), "B-0")
    taken = [q.get()[1] for _ in range(6)]
    assert taken[:3] == ["A-slow-0", "B-0", "A-fast-0"], taken
    assert taken[3:] == ["A-slow-1", "A-slow-2", "A-slow-3"]


def test_an_account_at_its_cap_leaves_the_workers_to_others():
    q = FairQueue(account_cap=2)
    for i in range(5):
        q.put(("A", "f"), i)
    a1, _a2 = q.get(), q.get()
    assert q.running("A") == 2 and not q.runnable(), "A is at its cap: nothing may run"
    q.put(("B", "g"), "b")
    assert q.runnable()
    assert q.get() == (("B", "g"), "b"), "B's event goes first though A's were queued earlier"
    got: list = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    t.join(0.2)
    assert t.is_alive(), "blocked while A is at its cap"
    q.done(a1[0])
    t.join(2)
    assert got == [(("A", "f"), 2)]
    assert q.waiting("A") == 2


def test_close_wakes_getters_and_returns_what_waits():
    q = FairQueue(account_cap=1)
    q.put(("A", "f"), 1)
    q.put(("A", "f"), 2)
    assert q.get()[1] == 1
    results: list = []
    t = threading.Thread(target=lambda: results.append(q.get()))
    t.start()
    assert q.close() == [2]
    t.join(2)
    assert results == [None]


def test_a_function_at_its_cap_leaves_its_accounts_workers_to_the_other_functions():
    q = FairQueue(account_cap=4, function_cap=2)
    for i in range(6):
        q.put(("A", "slow"), f"slow-{i}")
    assert [q.get()[1] for _ in range(2)] == ["slow-0", "slow-1"]
    assert q.running("A", "slow") == 2 and not q.runnable(), "slow is at its cap though A is not"
    q.put(("A", "fast"), "fast-0")
    assert q.get() == (("A", "fast"), "fast-0"), "A's other function runs beside slow's backlog"
    q.done(("A", "slow"))
    assert q.get() == (("A", "slow"), "slow-2")
    assert q.running("A") == 3 and q.running("A", "slow") == 2


def test_internal_queue_names_are_per_function_and_valid_sqs_names():
    import re

    from lambdalet.events.async_invoke import account_of_queue, queue_name
    short, long_ = queue_name("111122223333", "fn"), queue_name("111122223333", "f" * 64)
    assert short == "lambdalet-async-111122223333-fn"
    assert len(long_) <= 80 and re.fullmatch(r"[A-Za-z0-9_-]+", long_)
    assert long_ != queue_name("111122223333", "f" * 63 + "g"), "long names stay apart (hash of the whole name)"
    assert {account_of_queue(n) for n in (short, long_, "lambdalet-async-111122223333")} == {"111122223333"}
