"""SQS writes are group-committed (store/group_commit.py): concurrent SendMessage / DeleteMessage /
ChangeMessageVisibility share one transaction and one fsync. An answer must still mean "committed":
a server killed -9 in the middle of concurrent sends and deletes keeps every acknowledged message and
brings back no acknowledged delete."""
from __future__ import annotations

import signal
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

VISIBILITY_S = 5        # receipts stay valid for the whole load (each delete follows its receive within ms)


def test_acknowledged_sends_and_deletes_survive_kill_9_under_concurrent_load(lambdalet_server_factory):
    srv = lambdalet_server_factory()
    sqs = srv.client("sqs")
    url = sqs.create_queue(QueueName="durable-load")["QueueUrl"]
    lock = threading.Lock()
    sent: set[str] = set()
    deleted: set[str] = set()
    hidden: set[str] = set()         # ChangeMessageVisibility answered: hidden for an hour
    in_doubt: set[str] = set()       # a delete or visibility change sent, its answer cut off by the kill
    stop = threading.Event()

    def sender(n: int) -> None:
        c = srv.client("sqs")
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 3:
                    mid = c.send_message(QueueUrl=url, MessageBody=f"s{n}-{i}")["MessageId"]
                    with lock:
                        sent.add(mid)
                else:
                    res = c.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": f"b{n}-{i}-{k}"}
                                                                      for k in range(5)])
                    with lock:
                        sent.update(s["MessageId"] for s in res["Successful"])
            except (ClientError, BotoCoreError):
                return                                   # the server is gone

    def receiver(n: int) -> None:
        c = srv.client("sqs")
        while not stop.is_set():
            try:
                msgs = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                         VisibilityTimeout=VISIBILITY_S).get("Messages", [])
                for k, m in enumerate(msgs):
                    with lock:
                        in_doubt.add(m["MessageId"])
                    if k % 4 == 3:
                        c.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                                    VisibilityTimeout=3600)
                        with lock:
                            hidden.add(m["MessageId"])
                            in_doubt.discard(m["MessageId"])
                    else:
                        c.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                        with lock:
                            deleted.add(m["MessageId"])
                            in_doubt.discard(m["MessageId"])
            except (ClientError, BotoCoreError):
                return

    threads = ([threading.Thread(target=sender, args=(n,)) for n in range(8)]
               + [threading.Thread(target=receiver, args=(n,)) for n in range(4)])
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while (len(sent) < 300 or len(deleted) < 50) and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.stop(sig=signal.SIGKILL)                         # while the load is still running
    stop.set()
    for t in threads:
        t.join(30)
    assert srv.proc.returncode == -signal.SIGKILL
    assert len(sent) >= 300 and len(deleted) >= 50, (len(sent), len(deleted))

    srv.start()
    sqs = srv.client("sqs")
    time.sleep(VISIBILITY_S + 0.5)                       # received but not deleted: receivable again
    got: set[str] = set()
    empty = 0
    while empty < 2:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                    WaitTimeSeconds=1).get("Messages", [])
        empty = 0 if batch else empty + 1
        got |= {m["MessageId"] for m in batch}
    assert not got & deleted, f"{len(got & deleted)} acknowledged deletes came back"
    assert not got & hidden, f"{len(got & hidden)} acknowledged visibility changes were lost"
    assert len(in_doubt) <= 4, "only the calls in flight at the kill"
    missing = sent - deleted - hidden - in_doubt - got
    assert not missing, f"{len(missing)} of {len(sent)} acknowledged messages lost"
