"""logs/quotas.py through the store's flush: a rate per function, stored bytes per account (issue 10.4)."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.logs.quotas import LogQuotas, RateLimiter
from lambdalet.logs.store import LogStore
from lambdalet.logs.tables import log_batches, log_groups, log_streams
from lambdalet.store.db import Database, make_engine

ACCOUNT, REGION = "111122223333", "us-east-1"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def keyring():
    return Keyring.open(os.urandom(32), MemoryKeyMaterialStore())


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    log_groups.metadata.create_all(engine, tables=[log_groups, log_streams, log_batches])
    d = Database(engine)
    yield d
    d.close()


class Mono:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_limiter_keeps_a_burst_then_the_rate_and_always_the_platform_lines():
    clock = Mono()
    limiter = RateLimiter(LogQuotas(rate_bytes_per_s=1000, burst_s=2.0), clock)
    group = (ACCOUNT, REGION, "/aws/lambda/f")
    events = [(1, "x" * 99 + "\n", 100) for _ in range(30)] + [(2, "REPORT RequestId: 1 Duration: 1 ms\n", 35)]
    kept, dropped, size = limiter.admit(group, events)
    assert len(kept) == 21 and kept[-1][1].startswith("REPORT")      # 2,000 bytes of burst, then the REPORT
    assert (dropped, size) == (10, 1000)
    clock.t += 0.5                                                     # 500 bytes refilled
    kept, dropped, _ = limiter.admit(group, events[:10])
    assert (len(kept), dropped) == (5, 5)
    other = limiter.admit((ACCOUNT, REGION, "/aws/lambda/g"), events[:10])
    assert other[1] == 0                                               # one function's bucket is its own


def _lines(n: int, size: int = 1000) -> bytes:
    return b"".join(os.urandom(size // 2).hex().encode()[:size - 1] + b"\n" for _ in range(n))


def test_a_flood_is_cut_to_the_rate_with_a_line_saying_why(db, keyring):
    store = LogStore(db, keyring, clock=Clock(), background=False,
                     quotas=LogQuotas(rate_bytes_per_s=10_000, burst_s=1.0))
    sink = store.sink(ACCOUNT, REGION, "/aws/lambda/flood", "s1")
    sink(_lines(100))                                                  # 100,000 bytes at once
    store.flush()
    group = store.get_group(ACCOUNT, REGION, "/aws/lambda/flood")
    events, _ = store.filter_events(group)
    assert 10_000 <= group.stored_bytes < 12_000
    assert len(events) == 11
    assert events[-1].message.startswith("lambdalet: 90 log events (90000 bytes) of this function were dropped")


def test_an_account_over_its_quota_loses_its_oldest_logs_not_another_accounts(db, keyring):
    clock = Clock()
    store = LogStore(db, keyring, clock=clock, background=False,
                     quotas=LogQuotas(rate_bytes_per_s=10 << 20, account_bytes=50_000))
    other = store.sink("999988887777", REGION, "/aws/lambda/quiet", "s")
    other(_lines(20))
    store.flush()
    for i in range(4):                                                 # 4 x 20 KB in two groups
        clock.t += 1
        sink = store.sink(ACCOUNT, REGION, f"/aws/lambda/f{i % 2}", f"s{i}")
        sink(_lines(20))
        store.flush()
    with db.read() as conn:
        per_account = dict(conn.execute(sa.select(log_groups.c.account_id, sa.func.sum(log_groups.c.stored_bytes))
                                        .group_by(log_groups.c.account_id)).all())
    assert per_account[ACCOUNT] <= 50_000
    assert per_account["999988887777"] == 20_000
    newest = store.get_stream(store.get_group(ACCOUNT, REGION, "/aws/lambda/f1").id, "s3")
    assert newest is not None and newest.stored_bytes == 20_000      # the oldest went, the newest stayed
