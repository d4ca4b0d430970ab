"""A lean closed-loop Invoke load generator (like `wrk`/`hey`) that speaks the real protocol.

Why: bench/invoke_bench.py drives the server with boto3 threads, whose ~0.7 ms of CPU per call comes from the
cores the server needs, so that figure measures the client as much as the server. This costs a fraction of
that, and reports its own CPU (client_cpu_s, client_cpu_ms_per_invoke) so readers can see what it took.

Honest: every request is a full Invoke (POST /2015-03-31/functions/{name}/invocations) over TLS (plain TCP for
http://) on a kept-alive HTTP/1.1 connection, SigV4-signed for that very request (X-Amz-Date to the second; no
signed request is replayed). Every response is read to its last byte and checked (status 200, no
X-Amz-Function-Error, the expected payload if given); anything else is an error, counted and classified. Each
connection is a closed loop (next request after the full response; reconnect if the server closes it); they
are spread over forked worker processes, one asyncio loop each (uvloop if present). Every connection first
does 2 warm-up invokes, then all start together: n = successful invokes completed inside the window,
invokes_per_s = n / window, latency over those.

    python bench/loadgen.py --from-data-dir DIR --function noop -c 8 -t 5 --expect null
    python bench/loadgen.py --endpoint URL --ca FILE --access-key K --secret-key S --region R --function NAME -c 32
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import hashlib
import hmac
import json
import multiprocessing
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

try:
    import uvloop
except ImportError:
    uvloop = None

USER_AGENT = "lambdalet-loadgen/1"
GRACE_S = 30.0          # an in-flight request may finish this long after the window, then it is abandoned


class Target:
    """Builds each Invoke request for one endpoint and function, with a fresh SigV4 signature (header form,
    exactly as botocore's SigV4Auth computes it; the signing key is cached per date)."""

    def __init__(self, cfg: dict):
        u = urlsplit(cfg["endpoint_url"])
        self.addr = (u.hostname, u.port or (443 if u.scheme == "https" else 80))
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname     # botocore's Host: no default port
        self.host = host if u.port in (None, {"http": 80, "https": 443}.get(u.scheme)) else f"{host}:{u.port}"
        self.path = f"/2015-03-31/functions/{quote(cfg['function_name'], safe='')}/invocations"
        self.body, self.expect = cfg["payload"], cfg["expect"]
        self.body_sha = hashlib.sha256(self.body).hexdigest()
        self.access_key, self.secret, self.region = cfg["access_key"], cfg["secret_key"], cfg["region"]
        self.token = cfg["session_token"]
        self.prefix = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: {USER_AGENT}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n").encode()
        self.ssl = ssl.create_default_context(cafile=cfg["ca_bundle"]) if u.scheme == "https" else None
        if self.ssl and not cfg["ca_bundle"]:
            self.ssl.check_hostname, self.ssl.verify_mode = False, ssl.CERT_NONE
        self._sec, self._amz_date, self._key_date, self._key = -1, "", "", b""

    def authorization(self, amz_date: str) -> str:
        date = amz_date[:8]
        if date != self._key_date:
            k = hmac.new(f"AWS4{self.secret}".encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, "lambda", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._key_date, self._key = date, k
        headers = [("host", self.host), ("x-amz-date", amz_date)]     # sorted, as SigV4 wants them
        headers += [("x-amz-security-token", self.token)] if self.token else []
        signed = ";".join(n for n, _ in headers)
        canonical = "\n".join(["POST", quote(self.path, safe="/~"), "",
                               "".join(f"{n}:{' '.join(v.split())}\n" for n, v in headers), signed, self.body_sha])
        scope = f"{date}/{self.region}/lambda/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        sig = hmac.new(self._key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, Signature={sig}"

    def request(self) -> bytes:
        now = int(time.time())
        if now != self._sec:
            self._sec, self._amz_date = now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        tok = f"X-Amz-Security-Token: {self.token}\r\n" if self.token else ""
        tail = f"X-Amz-Date: {self._amz_date}\r\n{tok}Authorization: {self.authorization(self._amz_date)}\r\n\r\n"
        return self.prefix + tail.encode() + self.body


class ProtocolError(ConnectionError):
    """The server's response is not HTTP/1.1 as this client reads it."""


class Conn(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time; send() -> future of (status, headers, body)."""

    def __init__(self):
        self.transport, self.buf, self.fut, self.head, self.closed = None, bytearray(), None, None, False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, data: bytes) -> asyncio.Future:
        self.buf.clear()
        self.head, self.fut = None, asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.fut

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        self.transport.abort()
        if self.fut and not self.fut.done():
            self.fut.set_exception(exc)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.fut and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection lost before the full response ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        if self.fut is None or self.fut.done():
            return self._fail(ProtocolError("data with no request outstanding"))
        buf = self.buf
        buf += data
        if self.head is None:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return self._fail(ProtocolError("response head > 64 KiB")) if len(buf) > 65536 else None
            lines = buf[:i].decode("latin-1").split("\r\n")
            del buf[:i + 4]
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
                return self._fail(ProtocolError(f"bad status line {lines[0][:60]!r}"))
            headers = {n.strip().lower(): v.strip() for n, _, v in (ln.partition(":") for ln in lines[1:])}
            if "transfer-encoding" in headers or not headers.get("content-length", "").isdigit():
                return self._fail(ProtocolError("response without a Content-Length (chunked is not supported)"))
            self.head = (int(rest[:3]), headers, int(headers["content-length"]))
            self.closed = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"  # last one
        status, headers, need = self.head
        if len(buf) >= need:
            if len(buf) > need:
                return self._fail(ProtocolError("bytes after the response"))
            if self.closed:
                self.transport.close()
            self.fut.set_result((status, headers, bytes(buf)))


class Client:
    """One closed-loop connection of a worker; reconnects whenever its connection is gone."""

    def __init__(self, tgt: Target):
        self.tgt, self.conn, self.connects = tgt, None, 0

    async def call(self) -> str | None:
        """One full Invoke: None if it succeeded, else what went wrong."""
        t = self.tgt
        try:
            if self.conn is None or self.conn.closed:
                self.connects += 1
                _, self.conn = await asyncio.get_running_loop().create_connection(
                    Conn, *t.addr, ssl=t.ssl, server_hostname=t.addr[0] if t.ssl else None)
            status, headers, body = await self.conn.send(t.request())
        except OSError as e:                             # ConnectionError (ProtocolError), ssl.SSLError, ...
            if self.conn is not None:
                self.conn.transport.abort()
                self.conn = None
            await asyncio.sleep(0.01)                    # no busy loop against a refusing server
            return f"{type(e).__name__}: {e}"[:120]
        if status != 200:
            return f"HTTP {status} {headers.get('x-amzn-errortype') or body[:80].decode(errors='replace')}"
        if "x-amz-function-error" in headers:
            return f"X-Amz-Function-Error: {headers['x-amz-function-error']}"
        return f"unexpected payload {body[:60]!r}" if t.expect is not None and body != t.expect else None

    async def run(self, end: float, lat: list[float], errors: collections.Counter) -> None:
        while (t0 := time.monotonic()) < end:
            err = await self.call()
            t1 = time.monotonic()
            if t1 > end:
                break                                    # completed after the window: not counted
            if err is None:
                lat.append((t1 - t0) * 1000)
            else:
                errors[err] += 1


async def _worker_main(pipe, cfg: dict, n: int) -> dict:
    clients = [Client(Target(cfg)) for _ in range(n)]
    warm = collections.Counter()
    for _ in range(2):                                   # concurrently: the server then holds enough environments
        warm.update(e for e in await asyncio.gather(*(c.call() for c in clients)) if e)
    pipe.send(("ready", None))
    start, end = pipe.recv()                             # blocking is fine: every connection is idle
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    lat, errors, cpu = [], collections.Counter(), [time.process_time(), None]   # user+sys CPU of this process
    asyncio.get_running_loop().call_later(end - time.monotonic(), lambda: cpu.__setitem__(1, time.process_time()))
    tasks = [asyncio.ensure_future(c.run(end, lat, errors)) for c in clients]
    _, pending = await asyncio.wait(tasks, timeout=end - time.monotonic() + GRACE_S)
    for t in pending:
        t.cancel()
        errors[f"no response within {GRACE_S:.0f} s after the window"] += 1
    cpu_s = (cpu[1] or time.process_time()) - cpu[0]
    return {"lat": lat, "errors": dict(errors), "warmup_errors": dict(warm), "cpu_s": cpu_s,
            "connects": sum(c.connects for c in clients)}


def _worker(pipe, cfg: dict, n: int) -> None:
    gc.freeze()          # a fork of the (boto3-laden) bench: its inherited heap must not cost GC pauses here
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
            pipe.send(("done", runner.run(_worker_main(pipe, cfg, n))))
    except BaseException as e:                           # noqa: BLE001 - reported to the parent
        pipe.send(("failed", f"{type(e).__name__}: {e}"))
    finally:
        pipe.close()


def _recv(pipe, what: str, timeout: float):
    kind, value = pipe.recv() if pipe.poll(timeout) else ("failed", f"nothing for {timeout:.0f} s")
    if kind != "failed":
        return value
    raise RuntimeError(f"a worker failed ({what}): {value}")


def run_load(endpoint_url: str, ca_bundle: str | None, access_key: str, secret_key: str, region: str,
             function_name: str, concurrency: int, seconds: float, processes: int | None = None,
             payload: bytes = b"{}", session_token: str | None = None, expect: bytes | None = None) -> dict:
    """Drive `concurrency` closed-loop connections for `seconds` after the warm-up; see the module docstring."""
    cfg = dict(locals())                                 # every argument, for the workers
    processes = max(1, min(processes or min(concurrency, 2), concurrency))
    split = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    mp, pipes, procs = multiprocessing.get_context("fork"), [], []
    try:
        for n in split:
            ours, theirs = mp.Pipe()
            procs.append(mp.Process(target=_worker, args=(theirs, cfg, n), daemon=True))
            procs[-1].start()
            theirs.close()
            pipes.append(ours)
        for pipe in pipes:
            _recv(pipe, "warm-up", 120)
        start = time.monotonic() + 0.05                  # CLOCK_MONOTONIC: the same clock in every process
        for pipe in pipes:
            pipe.send((start, start + seconds))
        results = [_recv(pipe, "timed window", seconds + GRACE_S + 30) for pipe in pipes]
    finally:
        for p in procs:
            p.join(5)
            p.kill()                                     # a no-op once it has exited
            p.join()
    lat = sorted(x for r in results for x in r["lat"])
    errors = sum((collections.Counter(r["errors"]) for r in results), collections.Counter())
    warm, cpu = sum(sum(r["warmup_errors"].values()) for r in results), sum(r["cpu_s"] for r in results)
    return {"invokes_per_s": round(len(lat) / seconds, 1), "n": len(lat), "errors": sum(errors.values()),
            "error_kinds": dict(errors.most_common(5)), "warmup_errors": warm,
            "connections_opened": sum(r["connects"] for r in results),   # > concurrency: the server closed some
            "latency_ms": {**{f"p{p}": round(lat[max(0, -(-len(lat) * p // 100) - 1)], 3) for p in (50, 90, 99)},
                           "mean": round(sum(lat) / len(lat), 3)} if lat else None,
            "client_cpu_s": round(cpu, 3), "client_cpu_ms_per_invoke": round(1000 * cpu / len(lat), 4) if lat else None,
            "wall_s": seconds, "processes": processes, "concurrency": concurrency}


def env_from_data_dir(data_dir: str) -> dict[str, str]:
    """The AWS_* variables that `lambdalet env --data-dir DIR` prints (run from the repo root)."""
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "lambdalet", "env", "--data-dir", data_dir], cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo / "src")}, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    words = [shlex.split(line) for line in out.splitlines()]
    return dict(w[1].partition("=")[::2] for w in words if len(w) > 1 and w[0] == "export")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from-data-dir", help="endpoint and credentials from `lambdalet env --data-dir DIR`")
    for opt in ("--endpoint", "--access-key", "--secret-key", "--session-token", "--region"):
        ap.add_argument(opt)
    ap.add_argument("--ca", help="CA bundle (https; without one the certificate is not verified)")
    ap.add_argument("--function", required=True)
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-t", "--seconds", type=float, default=5.0)
    ap.add_argument("--processes", type=int, help="worker processes (default: min(concurrency, 2))")
    ap.add_argument("--payload", default="{}", help="request body (default {})")
    ap.add_argument("--expect", help="the exact payload every invoke must return, e.g. null")
    a = ap.parse_args()
    e = env_from_data_dir(a.from_data_dir) if a.from_data_dir else {}
    endpoint, key = a.endpoint or e.get("AWS_ENDPOINT_URL"), a.access_key or e.get("AWS_ACCESS_KEY_ID")
    secret, region = a.secret_key or e.get("AWS_SECRET_ACCESS_KEY"), a.region or e.get("AWS_DEFAULT_REGION")
    if not (endpoint and key and secret and region):
        ap.error("need --endpoint, --access-key, --secret-key and --region (or --from-data-dir)")
    res = run_load(endpoint, a.ca or e.get("AWS_CA_BUNDLE"), key, secret, region, a.function, a.concurrency,
                   a.seconds, a.processes, a.payload.encode(), a.session_token or e.get("AWS_SESSION_TOKEN"),
                   None if a.expect is None else a.expect.encode())
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
