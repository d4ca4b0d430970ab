"""Cold start (spec -> first result) and warm invoke medians: the namespace backend building each
environment from scratch, the same backend starting environments from pre-isolated slots
(sandbox/slots.py), and the process backend, each next to baselines measured in the same run: a plain
fork of a pre-imported Python parent returning a result over a pipe, and spawning `python3 -c pass` /
`python3 -S -c pass`.

    sudo .venv/bin/python bench/cold_start.py [--cold 30] [--warm 200] [--skip-process]

"From a slot" waits, before each measured cold start, until the pool is full again (the refill is a
background job, off the invoke's path): it is the cold start of a server that is not out of slots.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, write_code

APP = "def handler(event, context):\n    return {'n': event['n']}\n"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 2), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 2), "n": len(xs)}


def fork_baseline(n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, json.dumps({"n": i}).encode())
            os._exit(0)
        os.close(w)
        data = os.read(r, 65536)
        os.close(r)
        os.waitpid(pid, 0)
        assert json.loads(data)["n"] == i
        out.append(_ms(t0))
    return out


def spawn_baseline(n: int, *flags: str) -> list[float]:
    exe = os.path.join(os.path.realpath(sys.base_prefix), "bin", "python3")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([exe, *flags, "-c", "pass"], check=True)
        out.append(_ms(t0))
    return out


def backend_bench(name: str, code: str, cold: int, warm: int, **opts) -> dict:
    b = open_backend(name, **opts)
    slots = getattr(b, "slots", None)
    try:
        colds, warms, steps, hits = [], [], [], 0
        for i in range(cold + 2):                       # two unmeasured: the fork server's first imports
            if slots is not None:
                assert slots.wait_full(30), "the slot pool did not refill"
            t0 = time.perf_counter()
            sb = b.create(make_spec(code, memory_mb=1769))
            sb.start()
            res = sb.invoke(make_request(sb.spec, json.dumps({"n": i}).encode()))
            dt = _ms(t0)
            assert json.loads(res.payload) == {"n": i}, res
            if i >= 2:
                colds.append(dt)
                stats = sb.stats()
                hits += bool(stats.get("slot"))
                steps.append({k: v for k, v in stats.items() if k.endswith("_ms") and isinstance(v, (int, float))})
            if i == cold + 1:
                for j in range(warm):
                    t0 = time.perf_counter()
                    sb.invoke(make_request(sb.spec, json.dumps({"n": j}).encode()))
                    warms.append(_ms(t0))
            sb.destroy()
        keys = dict.fromkeys(k for s in steps for k in s)
        step_medians = {k: round(statistics.median(s[k] for s in steps if k in s), 3) for k in keys}
        out = {"cold_start": summary(colds), "warm_invoke": summary(warms), "cold_start_steps_median": step_medians}
        if slots is not None:
            out["from_a_slot"] = f"{hits}/{len(colds)}"
        return out
    finally:
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", type=int, default=30)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--skip-process", action="store_true", help="leave out the (slow) unisolated process backend")
    args = ap.parse_args()
    code = write_code(tempfile.mkdtemp(prefix="lambdalet-bench-"), {"app.py": APP})
    rows = {"baseline: fork of pre-imported parent, result over pipe": summary(fork_baseline(args.warm)),
            "baseline: spawn python3 -c pass": summary(spawn_baseline(args.cold)),
            "baseline: spawn python3 -S -c pass": summary(spawn_baseline(args.cold, "-S"))}
    if os.geteuid() == 0:
        rows["namespace: cold start without slots"] = backend_bench("namespace", code, args.cold, args.warm, slots=0)
        rows["namespace: cold start from a slot"] = backend_bench("namespace", code, args.cold, args.warm, slots=2)
        rows["baseline again: spawn python3 -S -c pass"] = summary(spawn_baseline(args.cold, "-S"))
    else:
        rows["namespace"] = "skipped: needs root"
    if not args.skip_process:
        rows["process (unisolated)"] = backend_bench("process", code, args.cold, args.warm, allow_unisolated=True)
    shutil.rmtree(code, ignore_errors=True)
    for k, v in rows.items():
        print(json.dumps({"what": k, **(v if isinstance(v, dict) else {"note": v})}))


if __name__ == "__main__":
    main()
