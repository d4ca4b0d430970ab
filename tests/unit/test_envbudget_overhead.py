"""The platform's own memory in the environment budget (invoke/envbudget.py PlatformOverhead, and
sandbox/slots.SlotPool.held_mb): what the server and its idle slots hold is taken off --env-memory-mb."""
from __future__ import annotations

import os
import types

import pytest

from lambdalet.invoke.envbudget import PLATFORM, BudgetLimits, EnvBudget, PlatformOverhead, resident_mb
from lambdalet.models.errors import TooManyRequestsException
from lambdalet.sandbox.slots import Slot, SlotPool

A = "111111111111"


def test_overhead_is_taken_off_the_platform_budget_only():
    overhead = [0]
    budget = EnvBudget(BudgetLimits(total_mb=1024, account_mb=1024), overhead=lambda: overhead[0])
    for _ in range(3):
        budget.charge(A, 256)
    assert budget.short(A, 256) is None
    overhead[0] = 100                                   # 768 + 100 + 256 > 1024
    assert budget.short(A, 256) == PLATFORM
    assert budget.short(A, 128) is None
    with pytest.raises(TooManyRequestsException):      # nothing idle to evict: 429, nothing changed
        budget.pick_victims(A, 256, [])
    assert budget.total_mb == 768


def test_platform_overhead_counts_the_server_its_fork_server_and_idle_slots():
    me = resident_mb()
    assert me > 0 and resident_mb(2 ** 31) == 0         # a pid that is gone holds nothing
    backend = types.SimpleNamespace(zygote=types.SimpleNamespace(pid=os.getpid()),
                                    slots=types.SimpleNamespace(held_mb=lambda: 40))
    assert PlatformOverhead(backend).measure() >= 2 * me - 2 + 40
    assert abs(PlatformOverhead(None).measure() - me) <= 2


def test_platform_overhead_is_read_at_most_once_per_interval():
    now = [0.0]
    over = PlatformOverhead(None, every_s=1.0, clock=lambda: now[0])
    reads = []
    over.measure = lambda: reads.append(1) or len(reads)
    assert [over(), over()] == [1, 1]
    now[0] = 1.5
    assert over() == 2 and len(reads) == 2


def test_idle_slots_report_their_cgroups_peak_memory():
    class Cg:
        def __init__(self, mb):
            self.mb = mb

        def max_memory_mb(self):
            return self.mb

    sizes = iter([30, 25, 99])
    built = []

    def build(family):
        slot = Slot(family, f"s{len(built)}", Cg(next(sizes)), 0, "/nonexistent", None, None)
        built.append(slot)
        return slot

    pool = SlotPool(build, lambda s: None, lambda: ["py"], size=2, ttl_s=60.0, refill_delay_s=60.0)
    try:
        assert pool.wait_full(5)
        assert pool.held_mb() == 55
        assert pool.take("py") is built[0]               # a claimed slot is the environment's now
        assert pool.held_mb() == 25
    finally:
        pool.close()
