"""Long polls wait on the event loop, not in the API's shared worker threads (issue 21.7), and a
synchronous Invoke's thread is held against its account's share (api/threads.py: `run_deferrable`,
`AccountShares`; queues/longpoll.py). A real QueueService on a migrated SQLite database."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from lambdalet.api.threads import ACCOUNT_EXCEEDED, AccountShares, WorkerThreads
from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import TooManyRequestsException
from lambdalet.queues import QueueService
from lambdalet.queues.longpoll import LongPoll
from lambdalet.store.db import open_database

CTX = RequestContext(Caller("000000000000", "arn:aws:iam::000000000000:user/admin", "AKIATEST", "AIDATEST"),
                     "us-east-1", "req-1", "https://127.0.0.1:9000")


@pytest.fixture
def svc(tmp_path: Path):
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield QueueService(db, Keyring.open(os.urandom(32), FileKeyMaterialStore(tmp_path / "keys")),
                       Settings(data_dir=tmp_path))
    db.close()


def test_many_long_polls_hold_no_worker_thread(svc):
    url = svc.create_queue(CTX, {"QueueName": "q"})["QueueUrl"]
    qid = svc._from_url(CTX, url).id
    workers = WorkerThreads(2, "test-longpoll")

    async def scenario():
        polls = [asyncio.ensure_future(workers.run_deferrable(
            lambda: svc.receive_message_deferrable(CTX, {"QueueUrl": url, "WaitTimeSeconds": 3})))
            for _ in range(60)]
        deadline = time.monotonic() + 5
        while svc.signals.async_waiters(qid) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert svc.signals.async_waiters(qid) == 60, "every poll waits on the loop"
        assert workers._threads <= 2
        t0 = time.monotonic()
        assert await workers.run(lambda: "other call") == "other call"
        assert time.monotonic() - t0 < 0.5, "the two worker threads are free for other calls"
        await workers.run(lambda: svc.send_message(CTX, {"QueueUrl": url, "MessageBody": "hi"}))
        first, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED, timeout=2)
        assert first, "a waiting poll was woken by the send"
        results = await asyncio.gather(*polls)
        return results, time.monotonic() - t0

    try:
        results, elapsed = asyncio.run(scenario())
    finally:
        workers.close()
    got = [m["Body"] for r in results for m in r.get("Messages", [])]
    assert got == ["hi"], "exactly one receiver got the message"
    assert 2.0 < elapsed < 6.0, "the others waited out their WaitTimeSeconds"
    assert svc.signals.async_waiters() == 0


def test_api_variant_answers_a_long_poll_and_python_callers_still_block(svc):
    url = svc.create_queue(CTX, {"QueueName": "q2"})["QueueUrl"]
    deferred = svc.receive_message_deferrable(CTX, {"QueueUrl": url, "WaitTimeSeconds": 1})
    assert isinstance(deferred, LongPoll)
    assert svc.receive_message_deferrable(CTX, {"QueueUrl": url}) == {}, "WaitTimeSeconds 0 never defers"
    t0 = time.monotonic()
    assert svc.receive_message(CTX, {"QueueUrl": url, "WaitTimeSeconds": 1}) == {}
    assert 0.9 < time.monotonic() - t0 < 2.5


def test_a_send_before_the_wait_begins_is_not_lost(svc):
    url = svc.create_queue(CTX, {"QueueName": "q3"})["QueueUrl"]
    deferred = svc.receive_message_deferrable(CTX, {"QueueUrl": url, "WaitTimeSeconds": 5})
    svc.send_message(CTX, {"QueueUrl": url, "MessageBody": "early"})   # between the attempt and the wait

    async def wait():
        t0 = time.monotonic()
        nxt = await deferred.ready_on_loop()
        return nxt(), time.monotonic() - t0

    result, waited = asyncio.run(wait())
    assert [m["Body"] for m in result["Messages"]] == ["early"]
    assert waited < 0.5


def test_account_shares_cap_one_account_only():
    shares = AccountShares(2)
    with shares.hold("111111111111"), shares.hold("111111111111"):
        with pytest.raises(TooManyRequestsException) as err:
            with shares.hold("111111111111"):
                pass
        assert err.value.extra == {"Reason": ACCOUNT_EXCEEDED} and err.value.status == 429
        with shares.hold("222222222222"):
            assert shares.held("222222222222") == 1
    assert shares.held("111111111111") == 0
    with shares.hold("111111111111"):
        pass
