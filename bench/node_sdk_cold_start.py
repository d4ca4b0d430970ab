"""Cold start with the AWS SDK for JavaScript v3 (issue 13.1, Node part): the first invoke of a new
environment whose init loads @aws-sdk/client-sqs and makes a client, next to the same function without
the SDK, on the namespace backend (Node is exec'd: no slot, every cold start is from scratch), and the
same load + client in a plain `node -e` on the host, all in the same run. Both ways of loading it:
require (CommonJS) and import (an ES module, found through NODE_PATH by runtime/node_path_esm.js).

    sudo .venv/bin/python bench/node_sdk_cold_start.py [--cold 20] [--runtime nodejs22.x]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from lambdalet.runtime.hostruntimes import discover_managed
from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, write_code

# The answer carries the runtime process's CPU time so far (node's start, the bootstrap, the init): on a
# shared, loaded host that is steadier than the wall clock.
ANSWER = "({ n: event.n, cpu_ms: (process.cpuUsage().user + process.cpuUsage().system) / 1000 })"
HANDLER = f"exports.handler = async (event) => {ANSWER};\n"
CODE = {
    "no SDK": {"index.js": HANDLER},
    "require('@aws-sdk/client-sqs') + client": {
        "index.js": "const { SQSClient } = require('@aws-sdk/client-sqs');\nconst sqs = new SQSClient({});\n" + HANDLER},
    "import '@aws-sdk/client-sqs' + client (ESM)": {
        "index.mjs": "import { SQSClient } from '@aws-sdk/client-sqs';\nconst sqs = new SQSClient({});\n"
                     f"export const handler = async (event) => {ANSWER};\n"},
}
SDK_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}   # clients only: nothing is sent


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(statistics.median(xs), 1), "p90_ms": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 1),
            "n": len(xs)}


def cold_starts(b, runtime: str, code_dir: str, n: int) -> tuple[list[float], list[float]]:
    """(wall clock of create + start + first invoke, the runtime's CPU time at its first answer), in ms."""
    out, cpu = [], []
    for i in range(n + 2):                          # two unmeasured: the fork server's first work, page cache
        t0 = time.perf_counter()
        sb = b.create(make_spec(code_dir, runtime=runtime, handler="index.handler", memory_mb=1769, env=dict(SDK_ENV)))
        try:
            sb.start()
            res = sb.invoke(make_request(sb.spec, json.dumps({"n": i}).encode()))
            dt = (time.perf_counter() - t0) * 1000
            answer = json.loads(res.payload)
            assert answer["n"] == i, res.payload
        finally:
            sb.destroy()
        if i >= 2:
            out.append(dt)
            cpu.append(answer["cpu_ms"])
    return out, cpu


def plain_node(exe: str, sdk_dir: str, n: int) -> list[float]:
    src = "const { SQSClient } = require('@aws-sdk/client-sqs'); new SQSClient({region: 'us-east-1'});"
    env = {"NODE_PATH": sdk_dir, "PATH": "/usr/bin:/bin", **SDK_ENV}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([exe, "-e", src], check=True, env=env)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", type=int, default=20)
    ap.add_argument("--runtime", default="nodejs22.x")
    args = ap.parse_args()
    ex = discover_managed().get(args.runtime)
    assert ex and ex.sdk_dir, f"run `make install` first: no AWS SDK for JavaScript provisioned for {args.runtime}"
    res = {"plain node -e (require client-sqs + client)": stats(plain_node(ex.exe, ex.sdk_dir, args.cold))}
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    b = open_backend("namespace", slots=0)
    try:
        with tempfile.TemporaryDirectory() as d:
            dirs = {label: write_code(os.path.join(d, str(k)), files) for k, (label, files) in enumerate(CODE.items())}
            for _round in range(2):                 # interleaved: load drifts on a shared host
                for label, code_dir in dirs.items():
                    wall, cpu = cold_starts(b, args.runtime, code_dir, args.cold // 2)
                    walls.setdefault(label, []).extend(wall)
                    cpus.setdefault(label, []).extend(cpu)
    finally:
        b.close()
    for label in CODE:
        res[f"cold start, {label}"] = {**stats(walls[label]),
                                       "runtime_cpu_p50_ms": round(statistics.median(cpus[label]), 1)}
    base = res["cold start, no SDK"]
    for label in list(CODE)[1:]:
        v = res[f"cold start, {label}"]
        v["over_no_sdk_p50_ms"] = round(v["p50_ms"] - base["p50_ms"], 1)
        v["over_no_sdk_cpu_ms"] = round(v["runtime_cpu_p50_ms"] - base["runtime_cpu_p50_ms"], 1)
    print(json.dumps({"runtime": args.runtime, "node": ex.version, "sdk": ex.sdk_version, "results": res}, indent=2))


if __name__ == "__main__":
    main()
