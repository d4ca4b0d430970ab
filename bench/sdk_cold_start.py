"""Cold start with the AWS SDK (issue 13.1): the first invoke of a new environment whose function's init
imports boto3 and creates two clients (lambda, sqs), on the namespace backend from scratch and from a
pre-isolated slot, next to the same function without the SDK and to the same import + two clients in a
plain `python3 -c` (the provisioned SDK on PYTHONPATH), all measured in the same run.

    sudo .venv/bin/python bench/sdk_cold_start.py [--cold 30]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time

from lambdalet.runtime.hostruntimes import discover_managed
from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, write_code

SDK_APP = ("import boto3\nLAM, SQS = boto3.client('lambda'), boto3.client('sqs')\n\n"
           "def handler(event, context):\n    return {'n': event['n']}\n")
PLAIN_APP = "def handler(event, context):\n    return {'n': event['n']}\n"
SDK_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_ENDPOINT_URL": "https://127.0.0.1:9"}          # clients only: no request is sent


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(statistics.median(xs), 2), "p99_ms": round(xs[min(len(xs) - 1, int(0.99 * len(xs)))], 2),
            "n": len(xs)}


def cold_starts(code: str, n: int, slots: int) -> list[float]:
    b = open_backend("namespace", slots=slots)
    out = []
    try:
        for i in range(n + 2):                          # two unmeasured: the fork server's first work
            if b.slots is not None:
                assert b.slots.wait_full(30), "the slot pool did not refill"
            t0 = time.perf_counter()
            sb = b.create(make_spec(code, memory_mb=1769, env=dict(SDK_ENV)))
            sb.start()
            res = sb.invoke(make_request(sb.spec, json.dumps({"n": i}).encode()))
            dt = (time.perf_counter() - t0) * 1000
            assert json.loads(res.payload) == {"n": i}, res.payload
            if i >= 2:
                out.append(dt)
            sb.destroy()
    finally:
        b.close()
    return out


def plain_python(sdk_dir: str, exe: str, n: int) -> list[float]:
    src = ("import os; os.environ.update(AWS_DEFAULT_REGION='us-east-1', **%r)\n" % SDK_ENV) + \
          "import boto3\nboto3.client('lambda'); boto3.client('sqs')\n"
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([exe, "-s", "-c", src], check=True, env={"PYTHONPATH": sdk_dir, "PATH": "/usr/bin:/bin"})
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", type=int, default=30)
    args = ap.parse_args()
    ex = discover_managed().get("python3.11")
    assert ex and ex.sdk_dir, "run `make install` first: no AWS SDK provisioned for python3.11"
    with tempfile.TemporaryDirectory() as d:
        sdk_code, plain_code = write_code(f"{d}/sdk", {"app.py": SDK_APP}), write_code(f"{d}/plain", {"app.py": PLAIN_APP})
        res = {
            "plain python3 -c (import boto3 + 2 clients)": stats(plain_python(ex.sdk_dir, ex.exe, args.cold)),
            "cold start, boto3 + 2 clients, from scratch": stats(cold_starts(sdk_code, args.cold, 0)),
            "cold start, no SDK, from scratch": stats(cold_starts(plain_code, args.cold, 0)),
            "cold start, boto3 + 2 clients, from a slot": stats(cold_starts(sdk_code, args.cold, 2)),
            "cold start, no SDK, from a slot": stats(cold_starts(plain_code, args.cold, 2)),
        }
    base = res["plain python3 -c (import boto3 + 2 clients)"]["p50_ms"]
    for v in res.values():
        v["plain_python_over_this_p50"] = round(base / v["p50_ms"], 1)
    print(json.dumps({"boto3": ex.sdk_version, "results": res}, indent=2))


if __name__ == "__main__":
    main()
