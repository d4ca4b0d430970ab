"""The slot pool's bookkeeping (sandbox/slots.py), with fake slots: no root, no processes."""
from __future__ import annotations

import itertools
import threading
import time
from functools import partial

from lambdalet.sandbox.slots import Slot, SlotPool
from polling import eventually


class Fake:
    def __init__(self, fail: int = 0):
        self.built, self.destroyed, self.fail = [], [], fail
        self._ids = itertools.count()
        self.lock = threading.Lock()

    def build(self, family) -> Slot:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("cannot build")
            slot = Slot(family, f"slot-{next(self._ids)}", None, 0, "/nonexistent", None, None)
            self.built.append(slot)
            return slot

    def destroy(self, slot: Slot) -> None:
        with self.lock:
            self.destroyed.append(slot)


_until = partial(eventually, timeout=5.0, interval=0.005)


def _pool(fake: Fake, **kw) -> SlotPool:
    return SlotPool(fake.build, fake.destroy, lambda: ["py", "py"], **{"size": 2, "ttl_s": 60.0, "refill_delay_s": 0.0,
                                                                       **kw})


def test_fills_hands_each_slot_out_once_and_refills():
    fake = Fake()
    pool = _pool(fake)
    try:
        assert pool.wait_full(5) and len(fake.built) == 2           # one family, even if named twice
        taken = [pool.take("py"), pool.take("py")]
        assert None not in taken and taken[0] is not taken[1]
        assert pool.wait_full(5) and len(fake.built) == 4           # refilled in the background
        assert {id(s) for s in taken}.isdisjoint(id(s) for q in pool._idle.values() for s in q)
        assert pool.take("node") is None                            # no slots for other families
    finally:
        pool.close()
    assert len(fake.destroyed) == 2 and not set(map(id, fake.destroyed)) & set(map(id, taken))


def test_idle_slots_expire_and_are_rebuilt_only_on_demand():
    fake = Fake()
    pool = _pool(fake, ttl_s=0.2)
    try:
        assert pool.wait_full(5)
        assert _until(lambda: len(fake.destroyed) == 2 and pool.counts()["idle_slots"] == 0)
        time.sleep(0.3)
        assert len(fake.built) == 2                                 # no demand within the TTL: not rebuilt
        assert pool.take("py") is None                              # a miss is demand
        assert _until(lambda: pool.counts()["idle_slots"] == 2)
    finally:
        pool.close()


def test_build_failures_back_off_then_recover():
    fake = Fake(fail=2)
    pool = _pool(fake, retry_s=0.05)
    try:
        assert pool.wait_full(5) and fake.fail == 0
    finally:
        pool.close()


def test_refill_waits_after_a_claim():
    fake = Fake()
    pool = _pool(fake, refill_delay_s=0.3)
    try:
        assert pool.wait_full(5)
        pool.take("py")
        time.sleep(0.1)
        assert len(fake.built) == 2                                 # not while the claimed one starts
        assert _until(lambda: len(fake.built) == 3)
    finally:
        pool.close()
