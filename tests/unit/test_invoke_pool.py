"""Pool and concurrency rules of the data plane, with a fake sandbox (the real ones have their own suite)."""
import io
import os
import stat
import threading
import time
import zipfile
from functools import partial

import pytest

from lambdalet.invoke.codecache import CodeCache
from lambdalet.invoke.concurrency import ACCOUNT_EXCEEDED, RESERVED_EXCEEDED, ConcurrencyLimiter
from lambdalet.invoke.pool import EnvironmentPool, PoolKey
from lambdalet.models.errors import TooManyRequestsException
from lambdalet.services.resolver import AliasRouting
from polling import wait_for

from .pool_support import FakeSandbox


def key(version="1", rev="r1", sha="s1"):
    return PoolKey("000000000000", "arn:aws:lambda:us-east-1:000000000000:function:f", version, sha, rev)


@pytest.fixture
def pool():
    p = EnvironmentPool(idle_ttl_s=60, max_lifetime_s=600, reap_interval_s=0.05)
    yield p
    p.close()


def test_warm_reuse_is_per_key_and_one_caller_at_a_time(pool):
    a, cold = pool.acquire(key(), FakeSandbox)
    assert cold
    b, cold_b = pool.acquire(key(), FakeSandbox)     # a is lent out: a second caller gets its own
    assert cold_b and b is not a
    pool.release(a)
    assert a.frozen
    c, cold_c = pool.acquire(key(), FakeSandbox)
    assert c is a and not cold_c and not a.frozen
    d, _ = pool.acquire(key(version="2"), FakeSandbox)   # another version never gets it
    assert d is not a and d is not b
    for s in (b, c, d):
        pool.release(s)


def test_new_revision_destroys_old_idle_environments(pool):
    a, _ = pool.acquire(key(rev="r1"), FakeSandbox)
    pool.release(a)
    b, cold = pool.acquire(key(rev="r2"), FakeSandbox)
    assert cold and b is not a
    _wait_for(lambda: a.destroyed == 1)
    pool.release(b)


class SlowToDie(FakeSandbox):
    """destroy() blocks until let go (a real one kills, waits for exits, unmounts: milliseconds)."""
    def __init__(self):
        super().__init__()
        self.dying, self.let_go = threading.Event(), threading.Event()

    def destroy(self):
        self.dying.set()
        assert self.let_go.wait(5)
        super().destroy()


def test_the_invoke_that_finds_a_stale_environment_does_not_wait_for_its_destruction(pool):
    old, _ = pool.acquire(key(rev="r1"), SlowToDie)
    pool.release(old)
    new, cold = pool.acquire(key(rev="r2"), FakeSandbox)     # returns while the old one is still dying
    assert cold and new is not old
    assert old.dying.wait(2) and not old.destroyed           # the reaper thread is destroying it
    old.let_go.set()
    _wait_for(lambda: old.destroyed == 1)
    pool.release(new)


def test_close_destroys_environments_still_waiting_to_be_destroyed():
    p = EnvironmentPool(idle_ttl_s=60, max_lifetime_s=600, reap_interval_s=3600)
    p._work.set = lambda: None          # the reaper never gets to them: close() must
    a, _ = p.acquire(key(rev="r1"), FakeSandbox)
    p.release(a)
    b, _ = p.acquire(key(rev="r2"), FakeSandbox)
    assert not a.destroyed
    p.release(b)
    del p._work.set                     # (so close() also wakes the reaper, which then exits)
    p.close()
    assert a.destroyed == 1 and b.destroyed == 1


_wait_for = partial(wait_for, timeout=2.0, interval=0.005)


def test_dead_environments_are_not_reused_and_idle_ones_are_reaped():
    p = EnvironmentPool(idle_ttl_s=0.1, max_lifetime_s=600, reap_interval_s=0.02)
    try:
        a, _ = p.acquire(key(), FakeSandbox)
        a.alive = False
        p.release(a)
        assert p.counts() == {"idle": 0, "busy": 0}
        b, _ = p.acquire(key(), FakeSandbox)
        p.release(b)
        time.sleep(0.4)
        assert b.destroyed == 1 and p.counts()["idle"] == 0
    finally:
        p.close()


def test_close_destroys_everything():
    p = EnvironmentPool(idle_ttl_s=60, max_lifetime_s=600)
    a, _ = p.acquire(key(), FakeSandbox)
    b, _ = p.acquire(key(), FakeSandbox)
    p.release(a)
    p.close()
    assert a.destroyed and b.destroyed


def test_reserved_and_account_limits_throttle_with_aws_reasons():
    lim = ConcurrencyLimiter(account_limit=3)
    with lim.slot("a", "f", reserved=1, total_reserved=1):
        with pytest.raises(TooManyRequestsException) as e:
            with lim.slot("a", "f", reserved=1, total_reserved=1):
                pass
        assert e.value.extra["Reason"] == RESERVED_EXCEEDED
        with lim.slot("a", "g", None, 1), lim.slot("a", "h", None, 1):
            with pytest.raises(TooManyRequestsException) as e:
                with lim.slot("a", "i", None, 1):
                    pass
            assert e.value.extra["Reason"] == ACCOUNT_EXCEEDED
            with lim.slot("b", "g", None, 0):   # another account has its own limit
                pass
    with pytest.raises(TooManyRequestsException):
        with lim.slot("a", "zero", reserved=0, total_reserved=1):   # reserved 0 stops a function
            pass
    assert lim.in_flight("a", "f") == 0


def test_weighted_routing():     # AliasRouting.pick: what targets.py routes each invocation with
    assert AliasRouting("live", "1", "2", 0.3).pick(0.1) == "2"
    assert AliasRouting("live", "1", "2", 0.3).pick(0.5) == "1"
    counts = {"1": 0, "2": 0}
    routing = AliasRouting("live", "1", "2", 0.25)
    for _ in range(4000):
        counts[routing.pick()] += 1
    assert 800 < counts["2"] < 1200


class FakeBlobs:
    def __init__(self, data): self.data, self.gets = data, 0
    def get(self, sha):
        self.gets += 1
        return self.data


def test_code_cache_keeps_modes_and_internal_symlinks(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, "#!/bin/sh\necho hi\n")
        z.writestr("lib/mod.py", "x = 1\n")
        link = zipfile.ZipInfo("current")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "lib")
    blobs = FakeBlobs(buf.getvalue())
    cache = CodeCache(tmp_path / "code", blobs)
    d = cache.path_for("abc")
    assert os.access(d / "bootstrap", os.X_OK)
    assert (d / "current").is_symlink() and (d / "current" / "mod.py").read_text() == "x = 1\n"
    assert cache.path_for("abc") == d and blobs.gets == 1
    cache.clear()
    assert not d.exists()
