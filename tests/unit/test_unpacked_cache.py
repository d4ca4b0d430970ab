"""invoke/unpacked.py: unpacked trees are leased by environments, evicted when idle or when room is
needed (least recently used first), and budgeted in all and per account (issue 21.6)."""
from __future__ import annotations

import gc

import pytest

from lambdalet.invoke.unpacked import UnpackedBudget, UnpackedCache
from lambdalet.models.errors import TooManyRequestsException


class Env:
    """Stands in for an environment (the lease holder)."""


def build(size: int):
    def prepare():
        def write(tmp):
            tmp.mkdir()
            (tmp / "f").write_bytes(b"x" * size)
        return size, write
    return prepare


@pytest.fixture
def budget():
    b = UnpackedBudget(total_bytes=1000, account_bytes=600, idle_s=3600)
    yield b
    b.close()


def test_a_leased_tree_stays_and_an_idle_one_goes(tmp_path, budget):
    cache = UnpackedCache(tmp_path / "c", budget)
    env = Env()
    path = cache.get("a", "111", build(100), holder=env)
    assert path.is_dir() and budget.used == 100
    budget.idle_s = 0
    budget.sweep()
    assert path.is_dir(), "a tree an environment leases is never removed"
    del env
    gc.collect()
    budget.sweep()
    assert not path.exists() and budget.used == 0 and budget.per_account == {}


def test_room_is_made_from_idle_trees_least_recently_used_first(tmp_path, budget):
    cache = UnpackedCache(tmp_path / "c", budget)
    cache.get("old", "111", build(300))
    cache.get("new", "222", build(300))
    cache.get("old", "111", build(300))            # used again: now the most recent
    cache.get("third", "333", build(500))           # 1,100 > 1,000: "new" (least recent) goes
    assert sorted(cache.entries) == ["old", "third"]
    assert budget.used == 800


def test_an_account_over_its_share_evicts_only_its_own_then_answers_429(tmp_path, budget):
    cache = UnpackedCache(tmp_path / "c", budget)
    other = cache.get("theirs", "222", build(100))
    mine = [Env(), Env()]
    cache.get("m1", "111", build(300), holder=mine[0])
    cache.get("m2", "111", build(250), holder=mine[1])
    with pytest.raises(TooManyRequestsException) as exc:
        cache.get("m3", "111", build(100))          # 650 > 600, and both of its trees are leased
    assert exc.value.extra["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert other.is_dir(), "another account's idle tree is not taken for this account's share"
    assert "m3" not in cache.entries and budget.per_account["111"] == 550
    mine.pop()
    gc.collect()
    cache.get("m3", "111", build(100))              # m2 is idle now: it makes room
    assert sorted(cache.entries) == ["m1", "m3", "theirs"]


def test_a_failed_build_is_refunded(tmp_path, budget):
    cache = UnpackedCache(tmp_path / "c", budget)

    def prepare():
        def write(tmp):
            raise OSError("disk trouble")
        return 200, write

    with pytest.raises(OSError):
        cache.get("x", "111", prepare)
    assert budget.used == 0 and not list((tmp_path / "c").iterdir())
