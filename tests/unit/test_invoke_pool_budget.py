"""The pool's budget of live environments (invoke/envbudget.py) and its watch on the control plane,
with fake sandboxes. Issue 21.5; the real-server proof is tests/security/test_tenant_limits.py."""
import time
from functools import partial

import pytest

from lambdalet.invoke.envbudget import BudgetLimits, EnvBudget
from lambdalet.invoke.pool import EnvironmentPool, PoolKey
from lambdalet.models.errors import TooManyRequestsException
from polling import wait_for

from .pool_support import FakeSandbox

A, B = "111111111111", "222222222222"


def key(account=A, fn="f", version="$LATEST", rev="r1"):
    return PoolKey(account, f"arn:aws:lambda:us-east-1:{account}:function:{fn}", version, "sha", rev)


def make_pool(**limits) -> EnvironmentPool:
    return EnvironmentPool(idle_ttl_s=600, max_lifetime_s=6000, reap_interval_s=0.02,
                           budget=EnvBudget(BudgetLimits(**limits)))


def warm(pool, k, mb):
    """One environment for `k`, used once and left idle."""
    sb, cold = pool.acquire(k, FakeSandbox, mb)
    assert cold
    pool.release(sb)
    time.sleep(0.002)           # distinct idle times: LRU order is by when they went idle
    return sb


@pytest.fixture
def pools():
    made = []
    yield lambda **kw: made.append(make_pool(**kw)) or made[-1]
    for p in made:
        p.close()


def test_account_limit_evicts_the_accounts_own_least_recently_used(pools):
    pool = pools(account_envs=2)
    other = warm(pool, key(B, "g"), 128)
    first, second = warm(pool, key(A, "f1"), 128), warm(pool, key(A, "f2"), 128)
    third = warm(pool, key(A, "f3"), 128)           # A is at 2: its LRU idle one goes, B's stays
    assert first.destroyed == 1 and not second.destroyed and not third.destroyed and not other.destroyed
    assert pool.charged_mb(A) == 256 and pool.charged_mb() == 384


def test_platform_budget_evicts_the_biggest_holders_idle_environments_first(pools):
    pool = pools(total_mb=1024)
    small = warm(pool, key(B, "g"), 256)
    big = [warm(pool, key(A, f"f{i}"), 256) for i in range(3)]     # the platform is full
    newcomer, _ = pool.acquire(key(B, "h"), FakeSandbox, 256)       # B needs room: A holds the most
    assert big[0].destroyed == 1 and not small.destroyed
    assert [s.destroyed for s in big[1:]] == [0, 0]
    pool.release(newcomer)
    again = warm(pool, key(A, "f9"), 256)            # A asks: A still holds the most, so its own goes
    assert big[1].destroyed == 1 and not small.destroyed and not again.destroyed
    assert pool.charged_mb() == 1024


def test_nothing_idle_to_evict_refuses_with_429_and_evicts_nothing(pools):
    pool = pools(account_mb=512, total_mb=768)
    busy = [pool.acquire(key(A, f"f{i}"), FakeSandbox, 256)[0] for i in range(2)]
    idle_b = warm(pool, key(B, "g"), 256)
    with pytest.raises(TooManyRequestsException) as exc:             # A's own limit, nothing of A idle
        pool.acquire(key(A, "f9"), FakeSandbox, 128)
    assert exc.value.extra == {"Reason": "ConcurrentInvocationLimitExceeded"}
    assert not idle_b.destroyed                     # B's idle environment could not help A: kept
    with pytest.raises(TooManyRequestsException):                   # the platform: only busy ones besides B's
        pool.acquire(key(B, "h"), FakeSandbox, 512)
    assert not idle_b.destroyed and pool.charged_mb() == 768
    pool.release(busy[0])
    sb, cold = pool.acquire(key(A, "f9"), FakeSandbox, 256)          # A's released one makes room for A
    assert cold and busy[0].destroyed == 1 and not idle_b.destroyed
    for s in (sb, busy[1]):
        pool.release(s)


def test_failed_creation_and_discard_give_the_budget_back(pools):
    pool = pools(account_envs=1)

    def broken():
        raise RuntimeError("init failed")

    with pytest.raises(RuntimeError):
        pool.acquire(key(), broken, 128)
    assert pool.charged_mb() == 0
    sb, _ = pool.acquire(key(), FakeSandbox, 128)
    pool.discard(sb)
    assert pool.charged_mb() == 0 and sb.destroyed == 1
    sb, _ = pool.acquire(key(), FakeSandbox, 128)    # the one slot is free again
    sb.alive = False
    pool.release(sb)                                 # died during its invocation: destroyed, uncharged
    assert pool.charged_mb() == 0


def test_watch_destroys_environments_of_versions_that_are_gone(pools):
    pool = pools()
    state = {"generation": 1, "gone": set()}
    pool.watch(lambda: state["generation"], lambda keys: {k for k in keys if k.function_arn in state["gone"]})
    lent, _ = pool.acquire(key(A, "del"), FakeSandbox, 128)         # running while its function is deleted
    kept, doomed = warm(pool, key(A, "keep"), 128), warm(pool, key(A, "del"), 128)
    time.sleep(0.1)
    assert not doomed.destroyed                     # checked: still current
    state["gone"].add(key(A, "del").function_arn)
    state["generation"] += 1                        # DeleteFunction commits
    _wait_for(lambda: doomed.destroyed == 1)
    assert not kept.destroyed and not lent.destroyed
    pool.release(lent)                              # its invocation ends: it is not kept for anyone
    _wait_for(lambda: lent.destroyed == 1)
    assert pool.charged_mb() == 128 and pool.counts() == {"idle": 1, "busy": 0}


def test_a_failing_check_keeps_environments(pools):
    pool = pools()

    def fails(keys):
        raise OSError("database is locked")

    pool.watch(lambda: 2, fails)
    sb = warm(pool, key(), 128)
    time.sleep(0.1)
    assert not sb.destroyed


_wait_for = partial(wait_for, timeout=2.0, interval=0.005)
