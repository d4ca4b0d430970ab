"""SQS under write load, in process (issue 19.7): is everything queueing on the one SQLite writer?

    .venv/bin/python bench/sqs_write_bench.py [--seconds 20] [--senders 8] [--receivers 4] [--writers 4]

QueueService on a temporary data dir (a real SQLite file, WAL, a real keyring): --senders threads
SendMessage (each a durable, fsync'd commit), --receivers threads ReceiveMessage (no wait) and
DeleteMessageBatch what they got, --writers threads doing other small write transactions (a queue
attribute update, as the control plane's writes). Prints per-operation p50/p99 and rates, and how
long writers waited for `Database.writer` (store/db.py keeps the counters).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.models.context import Caller, RequestContext
from lambdalet.queues import QueueService
from lambdalet.store.db import open_database

CTX = RequestContext(Caller("000000000000", "arn:aws:iam::000000000000:user/admin", "AKIABENCH", "AIDABENCH"),
                     "us-east-1", "bench", "https://127.0.0.1:9000")


def pct(v: list[float], q: float) -> float:
    return sorted(v)[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--receivers", type=int, default=4)
    ap.add_argument("--writers", type=int, default=4)
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="sqs-bench-"))
    db = open_database(f"sqlite:///{data / 'state.db'}")
    svc = QueueService(db, Keyring.open(os.urandom(32), FileKeyMaterialStore(data / "keys")), Settings(data_dir=data))
    urls = [svc.create_queue(CTX, {"QueueName": f"q{i}"})["QueueUrl"] for i in range(4)]
    lat: dict[str, list[float]] = collections.defaultdict(list)
    lock = threading.Lock()
    stop = threading.Event()

    def timed(op, fn):
        t0 = time.perf_counter()
        out = fn()
        with lock:
            lat[op].append((time.perf_counter() - t0) * 1000)
        return out

    def sender(n):
        i = 0
        while not stop.is_set():
            i += 1
            timed("send", lambda: svc.send_message(CTX, {"QueueUrl": urls[(n + i) % 4], "MessageBody": "x" * 256}))

    def receiver(n):
        while not stop.is_set():
            url = urls[n % 4]
            got = timed("receive", lambda: svc.receive_message(CTX, {"QueueUrl": url, "MaxNumberOfMessages": 10}))
            msgs = got.get("Messages", [])
            if msgs:
                timed("delete", lambda: svc.delete_message_batch(CTX, {"QueueUrl": url, "Entries": [
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(msgs)]}))

    def writer(n):
        i = 0
        while not stop.is_set():
            i += 1
            timed("other_write", lambda: svc.set_queue_attributes(
                CTX, {"QueueUrl": urls[n % 4], "Attributes": {"DelaySeconds": "0", "VisibilityTimeout": str(30 + i % 2)}}))

    threads = ([threading.Thread(target=sender, args=(n,)) for n in range(a.senders)]
               + [threading.Thread(target=receiver, args=(n,)) for n in range(a.receivers)]
               + [threading.Thread(target=writer, args=(n,)) for n in range(a.writers)])
    before = db.writer_stats()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    after = db.writer_stats()
    for op, v in sorted(lat.items()):
        print(f"{op:12s} n={len(v):6d} rate={len(v) / took:7.1f}/s p50={pct(v, .5):7.2f} ms p99={pct(v, .99):7.2f} ms")
    turns = after["turns"] - before["turns"]
    print(f"writer turns {turns} ({turns / took:.0f}/s), mean wait {1000 * (after['wait_s'] - before['wait_s']) / max(turns, 1):.2f} ms, "
          f"mean hold {1000 * (after['hold_s'] - before['hold_s']) / max(turns, 1):.2f} ms, "
          f"lock busy {100 * (after['hold_s'] - before['hold_s']) / took:.0f}% of the time")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
