"""Event (asynchronous) invocations: durable enqueue rate and end-to-end processed rate, next to the
raw SQLite commit rate of the same disk measured in the same run.

    sudo .venv/bin/python bench/async_bench.py [--events 5000] [--threads 32] [--workers 16] [--http 3000]

1. raw SQLite: one-row INSERT + COMMIT per transaction, WAL, synchronous=FULL (fsync per commit,
   what a durable enqueue needs), single thread, in the data dir's filesystem. Measured before and
   after the platform runs; the machine may be shared, so compare ratios to it, not absolutes.
2. enqueue (in process): the Invoke operation with InvocationType=Event (`Invoker.invoke`: JSON check,
   target resolution, then the durable group-committed enqueue), from --threads threads, pollers off.
3. processed (in process): the queued events of a no-op python3.11 function, then the pollers start;
   time until every event has run (namespace sandbox, warm environments after the first wave), and
   this process's CPU per event (the environments' CPU is not in it).
4. HTTP (real server: TLS, SigV4, boto3; clients and server share this machine's CPUs), the same
   clients (--http-procs processes x --http-threads threads, one boto3 client per process) against
   two functions of one server: RequestResponse invokes of `warm` (a warm no-op function, the
   synchronous reference), then Event invokes of `noop` (reserved concurrency 0: only the enqueue is
   measured; the pollers meet throttles and back off, as they would); each at full concurrency and
   at concurrency 1 (latency), with the server's CPU per request (/proc).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import statistics
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
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"   # every new data dir has it (invoke/credentials.py)
APP = "def handler(event, context):\n    return None\n"
PAYLOAD = json.dumps({"k": "v" * 200}).encode()


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
                                             "Role": ROLE, "Code": {"ZipFile": make_zip()}})
    return p


def enqueue_in_process(p, n: int, threads: int) -> dict:
    per = n // threads

    def work():
        for _ in range(per):
            p.invoker.invoke(ctx(), {"FunctionName": "noop", "InvocationType": "Event", "Payload": PAYLOAD})
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"enqueue_in_process_per_s": round(per * threads / elapsed),
            "enqueue_process_cpu_ms_per_event": round(cpu * 1000 / (per * threads), 3),
            "enqueue_process_busy_pct": round(100 * cpu / elapsed, 1)}     # 100 = one core; the GIL allows ~100


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def processed_rate(p, n: int, timeout: float = 600) -> dict:
    """Start the pollers on n queued events; events/s overall, after the first 10 %, CPU per event."""
    stats = p.events.poller.stats
    start = stats.succeeded
    busy0, total0 = _machine_busy()
    cpu0 = time.process_time()
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
    cpu = time.process_time() - cpu0
    busy1, total1 = _machine_busy()
    return {"processed_per_s": round(n / (t1 - t0)), "processed_steady_per_s": round((n - n // 10) / (t1 - (t10 or t0))),
            "processed_process_cpu_ms_per_event": round(cpu * 1000 / n, 3),
            # every process on the box (this one, the environments, the kernel, other users)
            "processed_machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)}


# ---- HTTP (real server) ----

def _http_client(url, ca, key, secret, region, function, kind, n, threads, q):
    import boto3
    from botocore.config import Config
    s = boto3.session.Session()
    lam = s.client("lambda", endpoint_url=url, verify=ca, region_name=region, aws_access_key_id=key,
                   aws_secret_access_key=secret,
                   config=Config(retries={"total_max_attempts": 1}, max_pool_connections=threads))
    lam.invoke(FunctionName=function, InvocationType=kind, Payload=PAYLOAD)   # warm the connection
    q.put("ready")
    per = n // threads
    ok = [0]
    lat: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(per):
            t = time.perf_counter()
            code = lam.invoke(FunctionName=function, InvocationType=kind, Payload=PAYLOAD)["StatusCode"]
            dt = time.perf_counter() - t
            with lock:
                ok[0] += code in (200, 202)
                lat.append(dt)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(work) for _ in range(threads)]:
            f.result()
    q.put((ok[0], t0, time.perf_counter(), sorted(lat)))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_run(srv, function: str, kind: str, n: int, procs: int, threads: int) -> dict:
    q = mp.Queue()
    ps = [mp.Process(target=_http_client, args=(srv.url, srv.ca, srv.access_key, srv.secret_key, srv.region,
                                                function, kind, n // procs, threads, q)) for _ in range(procs)]
    for pr in ps:
        pr.start()
    for _ in ps:
        assert q.get(timeout=120) == "ready"
    cpu0, (busy0, total0) = _cpu_s(srv.proc.pid), _machine_busy()
    results = [q.get(timeout=900) for _ in ps]
    cpu, (busy1, total1) = _cpu_s(srv.proc.pid) - cpu0, _machine_busy()
    for pr in ps:
        pr.join()
    ok = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[3])
    return {"per_s": round(ok / (max(r[2] for r in results) - min(r[1] for r in results))),
            "ok": ok, "server_cpu_ms_per_request": round(cpu * 1000 / max(1, ok), 3),
            "p50_ms": round(statistics.median(lat) * 1000, 2), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)}


def http_measurements(n: int, sandbox: str, procs: int, threads: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import conftest
    data = Path(tempfile.mkdtemp(prefix="lambdalet-bench-"))
    srv = conftest.LambdaletServer(data, ("--sandbox", sandbox, "--async-workers", "1"))
    srv.start()
    try:
        lam = srv.client()
        for name in ("noop", "warm"):
            lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                Role=ROLE, Code={"ZipFile": make_zip()})
            lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
        lam.put_function_concurrency(FunctionName="noop", ReservedConcurrentExecutions=0)  # measure enqueue only
        # Synchronous first, while no event is queued; then Event at concurrency 1, then the full run
        # (queued events of `noop` are claimed, throttled and backed off by the pollers meanwhile).
        out = {"sync": http_run(srv, "warm", "RequestResponse", n, procs, threads),
               "sync_c1": http_run(srv, "warm", "RequestResponse", 300, 1, 1),
               "event_c1": http_run(srv, "noop", "Event", 300, 1, 1)}
        out["event"] = http_run(srv, "noop", "Event", n, procs, threads)
        return out
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--http", type=int, default=3000, help="requests per HTTP run (0: skip the HTTP part)")
    ap.add_argument("--http-procs", type=int, default=4)
    ap.add_argument("--http-threads", type=int, default=8)
    ap.add_argument("--sandbox", default="namespace" if os.geteuid() == 0 else "process")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="lambdalet-bench-"))
    out: dict = {"cpus": os.cpu_count(), "sandbox": args.sandbox, "events": args.events,
                 "threads": args.threads, "workers": args.workers}
    out["raw_sqlite_fsync_commits_per_s"] = round(raw_sqlite(data))
    p = setup(data / "platform", args.workers, args.sandbox)
    try:
        committer = p.queues.commits          # the queue service's group commit (store/group_commit.py)
        b0, m0 = committer.batches, committer.items
        out.update(enqueue_in_process(p, args.events, args.threads))
        out["enqueue_mean_batch"] = round((committer.items - m0) / max(1, committer.batches - b0), 2)
        out.update(processed_rate(p, out["events"] // args.threads * args.threads))
        out["poller_stats"] = {k: v for k, v in vars(p.events.poller.stats).items() if k != "lock"}
        acks = getattr(p.events.poller, "acks", None)          # batched settling (absent in older trees)
        if acks is not None:
            out["poller_mean_settle_batch"] = round(acks.settled / max(1, acks.flushes), 2)
    finally:
        p.close()
    out["raw_sqlite_fsync_commits_per_s_after"] = round(raw_sqlite(data))
    shutil.rmtree(data, ignore_errors=True)
    if args.http:
        h = http_measurements(args.http, args.sandbox, args.http_procs, args.http_threads)
        out["http"] = h
        out["enqueue_http_per_s"] = h["event"]["per_s"]
        out["http_event_vs_sync"] = round(h["event"]["per_s"] / max(1, h["sync"]["per_s"]), 2)
    raw = (out["raw_sqlite_fsync_commits_per_s"] + out["raw_sqlite_fsync_commits_per_s_after"]) / 2
    out["ratios_to_raw_sqlite"] = {k: round(out[k] / raw, 3) for k in
                                   ("enqueue_in_process_per_s", "processed_per_s", "enqueue_http_per_s") if k in out}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
