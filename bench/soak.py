"""Soak: does a server keep working for weeks? A bounded run of mixed load against a real
`lambdalet serve` this script starts on a temporary data dir, sampling the server every 30 s and
failing (exit 1, saying why) when descriptors, threads, environments or memory trend upwards.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--concurrency 16] [--functions 50]

Load (--concurrency threads, one boto3 client each, retries off so every error is seen): sync and
Event invokes across --functions python3.11 functions, GetFunction/ListFunctions, configuration
updates (Description and Environment, so environments are replaced), SQS SendMessage/ReceiveMessage/
DeleteMessageBatch on a few queues. Namespace sandbox as root, else --sandbox process.

Every --sample-s: the server's RSS, open descriptors, threads, child processes and environment
cgroups, the data dir's size, and latency percentiles per operation over the window. At the end:
a least-squares slope over the samples after the warm-up (60 s or a fifth of the run: the pool
fills up to its working set first) for each resource; a slope
above its limit fails the run, as does any error AWS would not answer (5xx, or an unexpected code).
CI does not run this (minutes long); docs/benchmarks.md records runs.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[1]
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
APP = ("import os\n"
       "def handler(event, context):\n"
       "    print('soak', event.get('i'), os.environ.get('GEN', '0'))\n"
       "    return {'i': event.get('i')}\n")
# Answers AWS gives under this load that are not faults: updating a function whose last update is
# still in progress, and the account's or a function's concurrency limit.
EXPECTED = {"ResourceConflictException", "TooManyRequestsException"}
# op -> weight
MIX = {"invoke": 34, "invoke_event": 14, "get_function": 12, "list_functions": 6, "update_config": 4,
       "sqs_send": 12, "sqs_receive": 12, "sqs_delete": 6}
# Growth per minute past which the run fails (after the first minute).
LIMITS = {"fds": 2.0, "threads": 2.0, "rss_mb": 3.0}
# The environment count follows the load's bursts (3..30 within a minute here), so a slope over it is
# noise; it fails only when the last third's lowest sample is above the first third's highest.


# ---------------------------------------------------------------- the server under test

class Server:
    def __init__(self, sandbox: str, extra: list[str]):
        self.tmp = Path(tempfile.mkdtemp(prefix="lambdalet-soak-"))
        self.data_dir = self.tmp / "data"
        self.log = open(self.tmp / "server.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAMBDALET_DATA_DIR"}
        env["PYTHONPATH"] = str(REPO / "src")
        self.env = env
        cmd = [sys.executable, "-m", "lambdalet", "serve", "--data-dir", str(self.data_dir), "--port", "0",
               "--sandbox", sandbox, *extra]
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (self.data_dir / "endpoint.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        out = subprocess.run([sys.executable, "-m", "lambdalet", "env", "--data-dir", str(self.data_dir)],
                             cwd=str(REPO), env=env, capture_output=True, text=True, check=True).stdout
        self.aws = dict(line.split(" ", 1)[1].split("=", 1) for line in out.splitlines())
        self.aws = {k: v.strip("'") for k, v in self.aws.items()}

    def client(self, service: str):
        session = boto3.session.Session()        # one per thread: boto3 sessions are not thread-safe
        return session.client(service, endpoint_url=self.aws["AWS_ENDPOINT_URL"],
                              region_name=self.aws["AWS_DEFAULT_REGION"], verify=self.aws.get("AWS_CA_BUNDLE") or False,
                              aws_access_key_id=self.aws["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=self.aws["AWS_SECRET_ACCESS_KEY"],
                              config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                            read_timeout=120, max_pool_connections=4))

    def log_tail(self, n: int = 4000) -> str:
        self.log.flush()
        return (self.tmp / "server.log").read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> float:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - t0


# ---------------------------------------------------------------- sampling

def _descendants(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat[stat.rfind(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _env_cgroups(data_dir: Path) -> int:
    """Environment cgroups of this server (lambdalet-<instance>/...), on cgroup v2 or v1's memory tree."""
    import hashlib
    name = f"lambdalet-{hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]}"
    for base in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")):
        if not base.is_dir():
            continue
        for parent in [base / name, *base.glob(f"*/{name}"), *base.glob(f"*/*/{name}")]:
            if parent.is_dir():
                return sum(1 for p in parent.iterdir() if p.is_dir() and not p.name.startswith("slot"))
    return -1


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def sample(server: Server, started: float) -> dict:
    pid = server.proc.pid
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"t_s": round(time.monotonic() - started, 1),
            "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"]),
            "children": len(_descendants(pid)),
            "envs": _env_cgroups(server.data_dir),
            "data_mb": round(_dir_bytes(server.data_dir) / 1e6, 1)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if var == 0 else 60 * sum((p[0] - mx) * (p[1] - my) for p in points) / var


# ---------------------------------------------------------------- load

class Load:
    def __init__(self, server: Server, functions: list[str], queues: list[str]):
        self.server, self.functions, self.queues = server, functions, queues
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)     # this window
        self.calls = collections.Counter()
        self.errors = collections.Counter()        # (op, code, status)
        self.unexpected: list[str] = []
        self.handles: collections.deque = collections.deque(maxlen=5000)        # (queue, receipt handle)
        self.stop = threading.Event()

    def take_window(self) -> dict[str, list[float]]:
        with self.lock:
            window, self.latency = self.latency, collections.defaultdict(list)
        return window

    def worker(self, seed: int) -> None:
        rnd = random.Random(seed)
        lam, sqs = self.server.client("lambda"), self.server.client("sqs")
        ops, weights = list(MIX), list(MIX.values())
        i = 0
        while not self.stop.is_set():
            op = rnd.choices(ops, weights)[0]
            fn = rnd.choice(self.functions)
            q = rnd.choice(self.queues)
            i += 1
            t0 = time.perf_counter()
            try:
                if op == "invoke":
                    lam.invoke(FunctionName=fn, Payload=json.dumps({"i": i}).encode())["Payload"].read()
                elif op == "invoke_event":
                    lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"i": i}).encode())
                elif op == "get_function":
                    lam.get_function(FunctionName=fn)
                elif op == "list_functions":
                    lam.list_functions(MaxItems=50)
                elif op == "update_config":
                    if rnd.random() < 0.5:
                        lam.update_function_configuration(FunctionName=fn, Description=f"soak {i}")
                    else:
                        lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {"GEN": str(i)}})
                elif op == "sqs_send":
                    sqs.send_message(QueueUrl=q, MessageBody=f"soak {i} " + "x" * 200)
                elif op == "sqs_receive":
                    got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, VisibilityTimeout=60)
                    with self.lock:
                        self.handles.extend((q, m["ReceiptHandle"]) for m in got.get("Messages", []))
                elif op == "sqs_delete":
                    with self.lock:
                        batch = [self.handles.popleft() for _ in range(min(10, len(self.handles)))]
                    by_queue: dict[str, list[str]] = collections.defaultdict(list)
                    for queue, handle in batch:
                        by_queue[queue].append(handle)
                    for queue, handles in by_queue.items():
                        sqs.delete_message_batch(QueueUrl=queue, Entries=[
                            {"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles)])
                ok = True
            except ClientError as e:
                ok = False
                code = e.response["Error"]["Code"]
                status = e.response["ResponseMetadata"].get("HTTPStatusCode", 0)
                with self.lock:
                    self.errors[(op, code, status)] += 1
                    if status >= 500 or code not in EXPECTED:
                        self.unexpected.append(f"{op}: {code} {status} {e.response['Error'].get('Message', '')[:200]}")
            except Exception as e:          # connection failures and the like
                ok = False
                with self.lock:
                    self.errors[(op, type(e).__name__, 0)] += 1
                    self.unexpected.append(f"{op}: {type(e).__name__}: {e}"[:300])
            elapsed = time.perf_counter() - t0
            with self.lock:
                self.calls[op] += 1
                if ok:
                    self.latency[op].append(elapsed * 1000)


def make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", APP)
    return buf.getvalue()


def setup(server: Server, n_functions: int, n_queues: int) -> tuple[list[str], list[str]]:
    lam, sqs = server.client("lambda"), server.client("sqs")
    code = make_zip()
    names = [f"soak-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(n_functions)]
    for name in names:
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": code}, MemorySize=128, Timeout=10)
    for name in names:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    queues = [sqs.create_queue(QueueName=f"soak-{i}-{uuid.uuid4().hex[:6]}")["QueueUrl"] for i in range(n_queues)]
    return names, queues


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--functions", type=int, default=50)
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--warmup-s", type=float, default=None,
                    help="samples before this are left out of the trends (default: 60 s or a fifth of the run)")
    ap.add_argument("--sandbox", choices=["namespace", "process"],
                    default="namespace" if os.geteuid() == 0 else "process")
    ap.add_argument("--json", type=Path, help="also write every sample and the verdict here")
    ap.add_argument("serve_args", nargs="*", help="extra `lambdalet serve` arguments (after --)")
    a = ap.parse_args()

    server = Server(a.sandbox, a.serve_args)
    samples: list[dict] = []
    try:
        functions, queues = setup(server, a.functions, a.queues)
        load = Load(server, functions, queues)
        threads = [threading.Thread(target=load.worker, args=(n,), daemon=True) for n in range(a.concurrency)]
        started = time.monotonic()
        for t in threads:
            t.start()
        end = started + a.minutes * 60
        while True:
            wait = min(a.sample_s, end - time.monotonic())
            if wait <= 0:
                break
            time.sleep(wait)
            s = sample(server, started)
            calls = sum(load.calls.values())
            window = load.take_window()
            s["calls"] = calls
            s["latency_ms"] = {op: {"n": len(v), "p50": round(percentile(v, .5), 1), "p95": round(percentile(v, .95), 1),
                                    "p99": round(percentile(v, .99), 1)} for op, v in sorted(window.items())}
            samples.append(s)
            lat = " ".join(f"{op}={v['p50']:.0f}/{v['p99']:.0f}" for op, v in s["latency_ms"].items())
            print(f"t={s['t_s']:6.0f}s calls={calls} rss={s['rss_mb']}MB fds={s['fds']} threads={s['threads']} "
                  f"children={s['children']} envs={s['envs']} data={s['data_mb']}MB | p50/p99 ms: {lat}", flush=True)
            if server.proc.poll() is not None:
                break
        load.stop.set()
        for t in threads:
            t.join(150)
        alive = server.proc.poll() is None
        took = server.stop() if alive else float("nan")
    except BaseException:
        server.stop()
        raise

    failures = []
    if not alive:
        failures.append("the server died during the run")
    warmup = a.warmup_s if a.warmup_s is not None else max(60.0, a.minutes * 12)
    steady = [s for s in samples if s["t_s"] > warmup] or samples
    slopes = {k: round(slope_per_min([(s["t_s"], s[k]) for s in steady]), 3) for k in (*LIMITS, "envs", "data_mb")}
    for key, limit in LIMITS.items():
        if slopes[key] > limit:
            failures.append(f"{key} grows {slopes[key]}/min (limit {limit}/min) over {len(steady)} samples")
    third = max(1, len(steady) // 3)
    if len(steady) >= 3 and min(s["envs"] for s in steady[-third:]) > max(s["envs"] for s in steady[:third]) + 5:
        failures.append(f"environments keep growing: {[s['envs'] for s in steady]}")
    if load.unexpected:
        failures.append(f"{len(load.unexpected)} errors AWS would not answer, e.g. {load.unexpected[:5]}")
    total = sum(load.calls.values())
    print(f"\n{total} calls in {a.minutes:g} min from {a.concurrency} threads across {a.functions} functions "
          f"({a.sandbox} sandbox); by operation: {dict(load.calls)}")
    print(f"errors: {dict((f'{k[0]}:{k[1]}:{k[2]}', v) for k, v in load.errors.items()) or 'none'}")
    print(f"slopes per minute after {warmup:.0f}s: {slopes}; SIGTERM took {took:.1f}s")
    verdict = {"ok": not failures, "failures": failures, "slopes_per_min": slopes, "calls": dict(load.calls),
               "errors": {f"{k[0]}:{k[1]}:{k[2]}": v for k, v in load.errors.items()}, "samples": samples,
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}}
    if a.json:
        a.json.write_text(json.dumps(verdict, indent=1))
    if failures:
        print("FAIL: " + "; ".join(failures))
        print(server.log_tail())
    else:
        print("PASS: no growth trend beyond the limits, no error AWS would not answer")
        shutil.rmtree(server.tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
