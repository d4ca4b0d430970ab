"""SQS and Event-invoke writes over HTTPS at concurrency 1 / 8 / 32, next to a floor measured in the same run
(issue 19.7: under load ReceiveMessage p50 rose from 16 to ~550 ms and Event invokes were 3x sync ones).

    sudo .venv/bin/python bench/sqs_bench.py [--seconds 5] [--levels 1,8,32] [--json out.json]

A real `lambdalet serve` (bench/soak.py's Server: temporary data dir, namespace sandbox) driven by lean
closed-loop clients (bench/loadgen.py's connection; every request SigV4-signed for itself, on a kept-alive
TLS connection, its answer read to the last byte and checked), spread over 2 forked processes. Phases,
each at every level, in this order:
  floor     GetQueueUrl: the same protocol, signing and routing, no database write (the floor)
  sync      Invoke RequestResponse of a warm no-op python3.11 function (the reference for Event)
  send      SendMessage, 256 B (durable, fsync'd before the answer)
  recv_del  ReceiveMessage (1 message, no wait) then DeleteMessage of it, on the queue `send` filled
  mixed     half the clients SendMessage, half ReceiveMessage + DeleteMessage, on one queue at once
            (the soak's contention: do receives queue behind sends?)
  event_run Invoke InvocationType=Event of the warm function: the 202's latency while the pollers run
            the events on the same cores (what a caller sees)
  event     Invoke InvocationType=Event of a function with reserved concurrency 0 (only the enqueue:
            a 202 is a durable, fsync'd commit; the pollers meet the throttle and back off, which
            keeps them busy afterwards, hence last)
Prints p50 / p99 (ms), requests/s and the ratio of each p50 to the floor's, the server's CPU per request
(/proc), and the disk's own floor: one-row SQLite commits with fsync (WAL, synchronous=FULL) on the data
dir's filesystem, before and after the phases (a durable answer costs at least one).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import sqlite3
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import loadgen
from soak import Server, make_zip

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
BODY = "x" * 256


class Signer:
    """Signs any request (header form, as botocore's SigV4Auth); one per connection."""

    def __init__(self, env: dict):
        u = urlsplit(env["AWS_ENDPOINT_URL"])
        self.addr = (u.hostname, u.port)
        self.host = f"{u.hostname}:{u.port}"
        self.key_id, self.secret, self.region = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_DEFAULT_REGION"]
        self.ssl = ssl.create_default_context(cafile=env.get("AWS_CA_BUNDLE") or None)
        self.base = env["AWS_ENDPOINT_URL"].rstrip("/")

    def request(self, service: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz[:8]
        hs = sorted({"host": self.host, "x-amz-date": amz, **{k.lower(): v for k, v in headers.items()}}.items())
        signed = ";".join(n for n, _ in hs)
        canonical = "\n".join(["POST", quote(path, safe="/~"), "", "".join(f"{n}:{v}\n" for n, v in hs), signed,
                               hashlib.sha256(body).hexdigest()])
        scope = f"{date}/{self.region}/{service}/aws4_request"
        k = hmac.new(f"AWS4{self.secret}".encode(), date.encode(), hashlib.sha256).digest()
        for part in (self.region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}".encode(),
                       hashlib.sha256).hexdigest()
        auth = f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, Signature={sig}"
        head = "".join(f"{n}: {v}\r\n" for n, v in hs)
        return (f"POST {path} HTTP/1.1\r\n{head}Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class Client:
    """One closed-loop connection running one kind of call; latencies per operation name."""

    def __init__(self, signer: Signer, cfg: dict, role: str):
        self.s, self.cfg, self.role, self.conn = signer, cfg, role, None

    async def _call(self, service: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
        if self.conn is None or self.conn.closed:
            _, self.conn = await asyncio.get_running_loop().create_connection(
                loadgen.Conn, *self.s.addr, ssl=self.s.ssl, server_hostname=self.s.addr[0])
        return await self.conn.send(self.s.request(service, path, body, headers))

    async def sqs(self, op: str, params: dict) -> dict:
        status, _, body = await self._call("sqs", "/", json.dumps(params).encode(), {
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{op}"})
        if status != 200:
            raise RuntimeError(f"{op}: HTTP {status} {body[:120]!r}")
        return json.loads(body)

    async def invoke(self, fn: str, kind: str) -> None:
        status, _, body = await self._call("lambda", f"/2015-03-31/functions/{fn}/invocations", b"{}",
                                           {"X-Amz-Invocation-Type": kind})
        if status != (202 if kind == "Event" else 200):
            raise RuntimeError(f"Invoke {kind}: HTTP {status} {body[:120]!r}")

    async def once(self, lat: dict[str, list[float]], counts: collections.Counter) -> None:
        c, url = self.cfg, self.cfg["queue_url"]

        async def timed(name, coro):
            t0 = time.monotonic()
            out = await coro
            lat[name].append((time.monotonic() - t0) * 1000)
            return out
        if self.role == "floor":
            await timed("GetQueueUrl", self.sqs("GetQueueUrl", {"QueueName": c["queue_name"]}))
        elif self.role == "sync":
            await timed("Invoke", self.invoke(c["warm_fn"], "RequestResponse"))
        elif self.role == "event":
            await timed("Invoke(Event)", self.invoke(c["event_fn"], "Event"))
        elif self.role == "event_run":
            await timed("Invoke(Event)", self.invoke(c["warm_fn"], "Event"))
        elif self.role == "send":
            await timed("SendMessage", self.sqs("SendMessage", {"QueueUrl": url, "MessageBody": BODY}))
        else:   # recv_del
            got = await timed("ReceiveMessage", self.sqs("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1}))
            msgs = got.get("Messages") or []
            if not msgs:
                counts["empty receives"] += 1
                return
            await timed("DeleteMessage", self.sqs("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": msgs[0]["ReceiptHandle"]}))


async def _worker_main(pipe, cfg: dict, roles: list[str]) -> dict:
    signer = Signer(cfg["env"])
    clients = [Client(signer, cfg, r) for r in roles]
    scratch: dict = collections.defaultdict(list)
    for _ in range(2):          # connect and warm up concurrently (one environment per client; lists thrown away)
        await asyncio.gather(*(cl.once(scratch, collections.Counter()) for cl in clients))
    pipe.send("ready")
    start, end = pipe.recv()
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    lat: dict[str, list[float]] = collections.defaultdict(list)
    counts: collections.Counter = collections.Counter()

    async def loop(cl):
        while time.monotonic() < end:
            try:
                await cl.once(lat, counts)
            except Exception as e:  # noqa: BLE001 - counted and reported
                counts[f"error {type(e).__name__}: {str(e)[:200]}"] += 1
    await asyncio.gather(*(loop(cl) for cl in clients))
    return {"lat": dict(lat), "counts": dict(counts)}


def _worker(pipe, cfg: dict, roles: list[str]) -> None:
    try:
        pipe.send(asyncio.run(_worker_main(pipe, cfg, roles)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        pipe.send({"failed": f"{type(e).__name__}: {e}"})


def server_cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(server: Server, cfg: dict, roles: list[str], seconds: float) -> dict:
    mp = multiprocessing.get_context("fork")
    split = [roles[i::2] for i in range(2)] if len(roles) > 1 else [roles]
    pipes, procs = [], []
    for part in split:
        ours, theirs = mp.Pipe()
        procs.append(mp.Process(target=_worker, args=(theirs, cfg, part), daemon=True))
        procs[-1].start()
        pipes.append(ours)
    for p in pipes:
        got = p.recv()
        if got != "ready":
            raise SystemExit(f"a worker failed to warm up: {got}")
    cpu0, start = server_cpu(server.proc.pid), time.monotonic() + 0.05
    for p in pipes:
        p.send((start, start + seconds))
    results = [p.recv() for p in pipes]
    cpu = server_cpu(server.proc.pid) - cpu0
    took = time.monotonic() - start
    for pr in procs:
        pr.join(10)
    for r in results:
        if "failed" in r:
            raise SystemExit(f"worker failed: {r['failed']}")
    lat: dict[str, list[float]] = collections.defaultdict(list)
    counts: collections.Counter = collections.Counter()
    for r in results:
        for k, v in r["lat"].items():
            lat[k] += v
        counts.update(r["counts"])
    n = sum(len(v) for v in lat.values())
    ops = {k: {"n": len(v), "per_s": round(len(v) / took, 1), "p50": pct(v, .5), "p99": pct(v, .99)}
           for k, v in sorted(lat.items())}
    return {"ops": ops, "counts": dict(counts), "server_cpu_ms_per_req": round(1000 * cpu / max(n, 1), 3)}


def fsync_commit_ms(dir_, n: int = 300) -> dict:
    """Latency of one-row INSERT + COMMIT with fsync (WAL, synchronous=FULL), single thread, in dir_."""
    path = dir_ / "fsync-probe.db"
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, b BLOB)")
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t(b) VALUES (?)", (os.urandom(400),))
        c.execute("COMMIT")
        lat.append((time.perf_counter() - t0) * 1000)
    c.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"p50": pct(lat, .5), "p99": pct(lat, .99)}


def pct(v: list[float], q: float) -> float:
    return round(sorted(v)[min(len(v) - 1, int(q * len(v)))], 2) if v else float("nan")


def setup(server: Server) -> dict:
    lam, sqs = server.client("lambda"), server.client("sqs")
    for fn in ("warm", "noop"):
        lam.create_function(FunctionName=fn, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip()}, MemorySize=512, Timeout=10)
        lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    lam.put_function_concurrency(FunctionName="noop", ReservedConcurrentExecutions=0)    # enqueue only
    urls = {q: sqs.create_queue(QueueName=q)["QueueUrl"] for q in ("bench", "mixed")}
    return {"env": server.aws, "warm_fn": "warm", "event_fn": "noop", "queue_name": "bench", "queue_url": urls["bench"],
            "mixed_url": urls["mixed"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--sandbox", default="namespace")
    ap.add_argument("--json")
    ap.add_argument("--phases", default="floor,sync,send,recv_del,mixed,event_run,event")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    server = Server(a.sandbox, ["--account-env-mb", "20000"])    # 32 warm 512 MB environments
    out: dict = {}
    try:
        cfg = setup(server)
        out["fsync_commit_ms_before"] = fsync_commit_ms(server.tmp)
        print(f"raw SQLite fsync'd commit: p50 {out['fsync_commit_ms_before']['p50']} ms, "
              f"p99 {out['fsync_commit_ms_before']['p99']} ms", flush=True)
        phases = [p for p in ("floor", "sync", "send", "recv_del", "mixed", "event_run", "event")
                  if p in a.phases.split(",")]
        for phase in phases:   # event last: its throttled backlog keeps the pollers busy afterwards
            for c in levels:
                if phase == "mixed":
                    if c < 2:
                        continue
                    roles, pcfg = ["send", "recv_del"] * (c // 2), {**cfg, "queue_url": cfg["mixed_url"]}
                else:
                    roles, pcfg = [phase] * c, cfg
                r = out.setdefault(phase, {})[c] = run_phase(server, pcfg, roles, a.seconds)
                for op, f in r["ops"].items():
                    floor = out.get("floor", {}).get(c, {}).get("ops", {}).get("GetQueueUrl", {}).get("p50")
                    ratio = f" {f['p50'] / floor:5.1f}x floor" if floor else ""
                    print(f"{phase:8s} c={c:2d} {op:15s} n={f['n']:6d} {f['per_s']:8.1f}/s p50={f['p50']:7.2f} "
                          f"p99={f['p99']:8.2f} ms{ratio}  (server {r['server_cpu_ms_per_req']} ms CPU/req) "
                          f"{r['counts'] or ''}", flush=True)
        out["fsync_commit_ms_after"] = fsync_commit_ms(server.tmp)
        print(f"\nraw SQLite fsync'd commit after: p50 {out['fsync_commit_ms_after']['p50']} ms, "
              f"p99 {out['fsync_commit_ms_after']['p99']} ms")
        for ev in ("event_run", "event"):
            if ev in out and "sync" in out:
                print(f"{ev} / sync p50:", {c: round(out[ev][c]["ops"]["Invoke(Event)"]["p50"]
                                                    / out["sync"][c]["ops"]["Invoke"]["p50"], 2) for c in levels})
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)
    finally:
        server.stop()
        shutil.rmtree(server.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
