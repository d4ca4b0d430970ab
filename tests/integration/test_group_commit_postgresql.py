"""The queue service's group commit on PostgreSQL (store/group_commit.py): concurrent sends, receives,
deletes and visibility changes share transactions (several keys per transaction: SAVEPOINTs), and a
refused work (a send to a deleted queue) fails alone. SQLite runs the same in tests/unit/test_queues*.py."""
from __future__ import annotations

import os
import threading

import pytest

from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.models.context import Caller, RequestContext
from lambdalet.queues import QueueService
from lambdalet.queues import errors as E
from lambdalet.store.db import open_database

from .test_postgresql import pg  # noqa: F401 - the module's throw-away cluster

CTX = RequestContext(Caller("000000000000", "arn:aws:iam::000000000000:user/admin", "AKIATEST", "AIDATEST"),
                     "us-east-1", "test", "https://127.0.0.1:9000")


def test_concurrent_queue_writes_share_transactions_on_postgresql(pg, tmp_path):  # noqa: F811
    db = open_database(pg.create_database())
    try:
        svc = QueueService(db, Keyring.open(os.urandom(32), FileKeyMaterialStore(tmp_path / "keys")),
                           Settings(data_dir=tmp_path))
        urls = [svc.create_queue(CTX, {"QueueName": f"q{i}"})["QueueUrl"] for i in range(2)]
        gone = svc.create_queue(CTX, {"QueueName": "gone"})["QueueUrl"]
        gone_arn = "arn:aws:sqs:us-east-1:000000000000:gone"
        svc.enqueue_batch(gone_arn, [(b"warm the cache", 0)])
        svc.delete_queue(CTX, {"QueueUrl": gone})
        errors: list[BaseException] = []
        received: list[str] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            try:
                for i in range(25):
                    url = urls[(n + i) % 2]
                    svc.send_message(CTX, {"QueueUrl": url, "MessageBody": f"{n}-{i}"})
                    got = svc.receive_message(CTX, {"QueueUrl": url, "MaxNumberOfMessages": 2}).get("Messages", [])
                    for k, m in enumerate(got):
                        if k:
                            svc.change_message_visibility(CTX, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"],
                                                                "VisibilityTimeout": 0})
                        else:
                            svc.delete_message(CTX, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
                            with lock:
                                received.append(m["MessageId"])
                    if i % 10 == 0:
                        with pytest.raises(E.QueueDoesNotExist):
                            svc.enqueue_batch(gone_arn, [(b"x", 0)])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(received) == len(set(received)), "a message was delivered to two receivers at once"
        left = 0
        for url in urls:
            while got := svc.receive_message(CTX, {"QueueUrl": url, "MaxNumberOfMessages": 10}).get("Messages", []):
                left += len(got)
        assert left + len(received) == 12 * 25, "every send is either deleted once or still there"
        assert svc.commits.batches < svc.commits.items, "concurrent works shared transactions"
    finally:
        db.close()
