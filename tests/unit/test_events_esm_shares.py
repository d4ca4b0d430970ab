"""events/esm_shares.py: event source mapping batches in flight are shared round robin over accounts,
then over an account's mappings; one account never holds more than its cap (issue 21.7)."""
from __future__ import annotations

import threading
import time

from lambdalet.events.esm_shares import BatchShares


def _waiter(shares, account, mapping, got: list, stop=None):
    t = threading.Thread(target=lambda: got.append((account, mapping, shares.acquire(account, mapping, stop))),
                         daemon=True)
    t.start()
    return t


def _until(cond, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_defaults_leave_a_quarter_for_other_accounts():
    assert BatchShares(64).account_cap == 48
    assert BatchShares(4).account_cap == 3 and BatchShares(1).account_cap == 1


def test_an_account_at_its_cap_waits_while_another_is_served_at_once():
    shares = BatchShares(total=4, account_cap=3)
    for m in ("m1", "m2", "m3"):
        assert shares.acquire("A", m)
    got: list = []
    _waiter(shares, "A", "m4", got)
    time.sleep(0.05)
    assert not got and not shares.starving(), "A is at its cap: its waiting worker starves nobody"
    assert shares.acquire("B", "b1"), "B's batch starts at once beside A's"
    assert shares.held() == 4 and shares.held("A") == 3
    shares.release("A")
    _until(lambda: got)
    assert got == [("A", "m4", True)] and shares.held("A") == 3


def test_waiters_are_served_round_robin_over_accounts_then_mappings():
    shares = BatchShares(total=1)
    assert shares.acquire("A", "busy")
    got: list = []
    for account, mapping in (("A", "busy"), ("A", "busy"), ("A", "other"), ("B", "b")):
        _waiter(shares, account, mapping, got)
        time.sleep(0.02)                       # queued in this order
    for n in range(1, 5):
        shares.release(got[-1][0] if got else "A")
        _until(lambda n=n: len(got) == n)
    # B was never served, A was; then A's mapping served longest ago (never: "other")
    assert [(a, m) for a, m, _ in got] == [("B", "b"), ("A", "other"), ("A", "busy"), ("A", "busy")]


def test_a_stopped_waiter_gives_up_and_holds_nothing():
    shares = BatchShares(total=1)
    assert shares.acquire("A", "m")
    stop, got = threading.Event(), []
    t = _waiter(shares, "B", "b", got, stop)
    time.sleep(0.05)
    assert shares.starving(), "B holds nothing and waits"
    stop.set()
    t.join(2)
    assert got == [("B", "b", False)] and not shares.starving()
    shares.release("A")
    assert shares.held() == 0


def test_the_round_robin_memory_stays_bounded(monkeypatch):
    import lambdalet.events.esm_shares as mod
    monkeypatch.setattr(mod, "MAX_REMEMBERED", 8)
    shares = BatchShares(total=2)
    for i in range(50):                       # mappings that came and went
        assert shares.acquire("A", f"m{i}")
        shares.release("A")
    assert len(shares._last) <= 9 and shares.held() == 0
