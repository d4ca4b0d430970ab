"""Event (asynchronous) invocations: durable enqueue rate and end-to-end processed rate, next to the
raw SQLite commit rate of the same disk measured in the same run.

    sudo .venv/bin/python bench/async_bench.py [--events 5000] [--threads 32] [--workers 16] [--http 3000]

1. raw SQLite: one-row INSERT + COMMIT per transaction, WAL, synchronous=FULL (fsync per commit,
   what a durable enqueue needs), single thread, in the data dir's filesystem.
2. enqueue (in process): the Invoke operation with InvocationType=Event (`Invoker.invoke`: JSON check,
   target resolution, then the durable group-committed enqueue), from --threads threads, pollers off.
3. enqueue (HTTP): the same through the real server (TLS, SigV4, boto3) from 4 client processes;
   clients and server share this machine's CPUs.
4. processed (in process): --events queued for a no-op python3.11 function, then the pollers start;
   time until every event has run (namespace sandbox, warm environments after the first wave).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lambdalet.config import Settings
from lambdalet.models.context import Caller, RequestContext
from lambdalet.server.platform import build_platform

ACCOUNT = "000000000000"
APP = "def handler(event, context):\n    return None\n"


def ctx(account=ACCOUNT) -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:root", "bench"), "us-east-1", str(uuid.uuid4()),
                          "https://bench")


def raw_sqlite(dir_: Path, n: int = 3000) -> float:
    path = dir_ / "raw.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
    body = os.urandom(400)
    t0 = time.perf_counter()
    for _ in range(n):
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t(b) VALUES (?)", (body,))
        c.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    c.close()
    path.unlink()
    return rate


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", APP)
    return buf.getvalue()


def setup(data: Path, workers: int, sandbox: str):
    settings = Settings(data_dir=data, sandbox=sandbox, async_workers=workers)
    p = build_platform(settings)
    p.identity.bootstrap_admin()
    p.lambda_service.create_function(ctx(), {"FunctionName": "noop", "Runtime": "python3.11", "Handler": "app.handler",
                                             "Role": f"arn:aws:iam::{ACCOUNT}:role/r",
                                             "Code": {"ZipFile": make_zip()}})
    return p


def enqueue_in_process(p, n: int, threads: int) -> float:
    payload = json.dumps({"k": "v" * 200}).encode()
    per = n // threads

    def work():
        for _ in range(per):
            p.invoker.invoke(ctx(), {"FunctionName": "noop", "InvocationType": "Event", "Payload": payload})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    return per * threads / (time.perf_counter() - t0)


def processed_rate(p, n: int, timeout: float = 600) -> tuple[float, float]:
    """Start the pollers on n queued events; -> (events/s overall, events/s after the first 10%)."""
    stats = p.events.poller.stats
    start = stats.succeeded
    t0 = time.perf_counter()
    p.events.start()
    t10 = None
    while stats.succeeded - start < n:
        if t10 is None and stats.succeeded - start >= n // 10:
            t10 = time.perf_counter()
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"only {stats.succeeded - start}/{n} processed after {timeout}s: {stats}")
        time.sleep(0.01)
    t1 = time.perf_counter()
    return n / (t1 - t0), (n - n // 10) / (t1 - (t10 or t0))


# ---- HTTP enqueue (real server) ----

def _http_client(url, ca, key, secret, region, n, threads, q):
    import boto3
    from botocore.config import Config
    s = boto3.session.Session()
    lam = s.client("lambda", endpoint_url=url, verify=ca, region_name=region, aws_access_key_id=key,
                   aws_secret_access_key=secret,
                   config=Config(retries={"total_max_attempts": 1}, max_pool_connections=threads))
    payload = json.dumps({"k": "v" * 200}).encode()
    lam.invoke(FunctionName="noop", InvocationType="Event", Payload=payload)   # warm the connection
    q.put("ready")
    per = n // threads
    ok = [0]
    lock = threading.Lock()

    def work():
        for _ in range(per):
            if lam.invoke(FunctionName="noop", InvocationType="Event", Payload=payload)["StatusCode"] == 202:
                with lock:
                    ok[0] += 1
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    q.put((ok[0], t0, time.perf_counter()))


def enqueue_http(n: int, sandbox: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import conftest
    srv = conftest.LambdaletServer(Path(tempfile.mkdtemp(prefix="lambdalet-bench-")),
                                   ("--sandbox", sandbox, "--async-workers", "1"))
    srv.start()
    try:
        lam = srv.client()
        lam.create_function(FunctionName="noop", Runtime="python3.11", Handler="app.handler",
                            Role=f"arn:aws:iam::{ACCOUNT}:role/r", Code={"ZipFile": make_zip()})
        lam.put_function_concurrency(FunctionName="noop", ReservedConcurrentExecutions=0)  # measure enqueue only
        procs, q = [], mp.Queue()
        nproc, threads = 4, 8
        for _ in range(nproc):
            pr = mp.Process(target=_http_client, args=(srv.url, srv.ca, srv.access_key, srv.secret_key, srv.region,
                                                       n // nproc, threads, q))
            pr.start()
            procs.append(pr)
        for _ in range(nproc):
            q.get()
        results = [q.get() for _ in range(nproc)]
        for pr in procs:
            pr.join()
        ok = sum(r[0] for r in results)
        return ok / (max(r[2] for r in results) - min(r[1] for r in results))
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--http", type=int, default=3000, help="events for the HTTP enqueue run (0: skip)")
    ap.add_argument("--sandbox", default="namespace" if os.geteuid() == 0 else "process")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="lambdalet-bench-"))
    out: dict = {"cpus": os.cpu_count(), "sandbox": args.sandbox, "events": args.events,
                 "threads": args.threads, "workers": args.workers}
    out["raw_sqlite_fsync_commits_per_s"] = round(raw_sqlite(data))
    p = setup(data / "platform", args.workers, args.sandbox)
    try:
        committer = p.events.invocations.committer
        b0, m0 = committer.batches, committer.messages
        out["enqueue_in_process_per_s"] = round(enqueue_in_process(p, args.events, args.threads))
        out["enqueue_mean_batch"] = round((committer.messages - m0) / max(1, committer.batches - b0), 2)
        overall, steady = processed_rate(p, out["events"] // args.threads * args.threads)
        out["processed_per_s"] = round(overall)
        out["processed_steady_per_s"] = round(steady)
        out["poller_stats"] = {k: v for k, v in vars(p.events.poller.stats).items() if k != "lock"}
    finally:
        p.close()
    out["raw_sqlite_fsync_commits_per_s_after"] = round(raw_sqlite(data))
    if args.http:
        out["enqueue_http_per_s"] = round(enqueue_http(args.http, args.sandbox))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
