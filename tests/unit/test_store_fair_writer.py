"""store/db.FairRLock: writers get the lock in arrival order (a thread that just released cannot barge
ahead of those waiting), re-entrant, with acquire timeouts; and SQS DeleteMessageBatch takes one
writer turn for the whole batch (issue 19.7)."""
from __future__ import annotations

import threading
import time

from lambdalet.store.db import FairRLock

from .queues_support import new_queue


def test_waiters_are_served_in_arrival_order_and_a_releaser_cannot_barge():
    lock = FairRLock()
    order: list[int] = []
    assert lock.acquire()
    threads = []
    for n in range(5):
        t = threading.Thread(target=lambda n=n: (lock.acquire(), order.append(n), lock.release()))
        t.start()
        threads.append(t)
        time.sleep(0.05)                 # arrive one after another
    lock.release()
    assert lock.acquire()                # the releaser comes back at once: it queues behind all five
    order.append(99)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4, 99]


def test_reentrant_and_timeouts():
    lock = FairRLock()
    assert lock.acquire() and lock.acquire()
    lock.release()
    got = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.1)))
    t.start()
    t.join(5)
    assert got == [False]                # still held once
    lock.release()
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=1)) or lock.release())
    t.start()
    t.join(5)
    assert got == [False, True]


def test_delete_message_batch_is_one_writer_turn(svc, ctx):  # noqa: F811
    url = new_queue(svc, ctx)
    for i in range(9):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": f"m{i}"})
    msgs = svc.receive_message(ctx, {"QueueUrl": url, "MaxNumberOfMessages": 9})["Messages"]
    before = svc.db.writer_stats()["turns"]
    out = svc.delete_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        + [{"Id": "bad", "ReceiptHandle": "not-a-handle"}]})
    assert svc.db.writer_stats()["turns"] - before == 1
    assert len(out["Successful"]) == len(msgs) and [f["Id"] for f in out["Failed"]] == ["bad"]
    assert svc.receive_message(ctx, {"QueueUrl": url, "VisibilityTimeout": 0}).get("Messages", []) == []
