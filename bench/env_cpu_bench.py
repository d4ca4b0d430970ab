"""CPU an execution environment spends per warm no-op invocation, at sandbox level (no server, no HTTP).

Why CPU and not wall time: the machine is shared, so wall clocks measure the neighbours; the CPU the
environment's own tasks used (schedstat of every thread of init and the runtime, ns) does not depend
on them much. This is what a 128 MB function's CPU quota (7.2 ms per 100 ms) is charged.

Each measurement is a child process with its own namespace backend (own cgroup parent, root dir and
uid range, so it never touches a server's): one environment of a no-op python3.11 function, 50
warm-up invocations, then N invocations 1 ms apart as the pool runs them (thaw, invoke, freeze: each
freeze done before the next thaw), or without freeze/thaw (`--no-freeze` rows, to see what freezing
costs; back to back an environment's tasks stay warm in the CPU's caches and cost much less, so the
gap is kept in both). Several `--src` trees (e.g. a git
worktree of the previous commit and this one) are measured alternately in the same run: an A/B.

    sudo .venv/bin/python bench/env_cpu_bench.py [--src DIR ...] [-n 1000] [--rounds 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOOP = "def handler(event, context):\n    return None\n"


def task_cpu_ns(pid: int) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for t in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
    return total


def child(src: str, mb: int, n: int, freeze: bool) -> dict:
    """One environment of this tree's sandbox; its CPU per invocation (init, runtime) and the host's."""
    sys.path.insert(0, src)
    from lambdalet.sandbox import open_backend
    from lambdalet.sandbox.testing import make_request, make_spec, write_code

    tag = f"envcpu-{os.getpid()}"
    code = write_code(tempfile.mkdtemp(prefix="lambdalet-envcpu-"), {"app.py": NOOP})
    b = open_backend("namespace", cgroup_parent=f"lambdalet-{tag}", root_dir=f"/run/lambdalet-{tag}/root",
                     uid_base=292_000, uid_count=100)
    try:
        sb = b.create(make_spec(code, memory_mb=mb))
        sb.start()
        pids = sb.stats()["pids"]
        ppid = {p: int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) for p in pids}
        init = [p for p in pids if ppid[p] not in pids]
        for _ in range(50):
            sb.invoke(make_request(sb.spec, b"{}"))
        threads = {p: len(os.listdir(f"/proc/{p}/task")) for p in pids}
        c0, h0, t0 = {p: task_cpu_ns(p) for p in pids}, time.process_time(), time.perf_counter()
        for _ in range(n):
            if freeze:
                sb.thaw()
            r = sb.invoke(make_request(sb.spec, b"{}"))
            assert r.payload == b"null" and r.function_error is None, r
            if freeze:
                sb.freeze()                     # requested, as the pool does; done before the next thaw
            time.sleep(0.001)                   # invocations 1 ms apart, as a client's arrive, in both modes
        wall, host = time.perf_counter() - t0, time.process_time() - h0
        c1 = {p: task_cpu_ns(p) for p in pids}
        sb.destroy()
    finally:
        b.close()
        shutil.rmtree(code, ignore_errors=True)
        for undo in (lambda: os.rmdir(f"/run/lambdalet-{tag}/root"), lambda: os.remove(f"/run/lambdalet-{tag}/root.lock"),
                     lambda: os.rmdir(f"/run/lambdalet-{tag}")):
            with contextlib.suppress(OSError):
                undo()
    per = {p: (c1[p] - c0[p]) / n / 1e6 for p in pids}
    return {"init_ms": round(sum(per[p] for p in init), 4), "runtime_ms": round(sum(per[p] for p in pids if p not in init), 4),
            "env_ms": round(sum(per.values()), 4), "host_ms": round(host / n * 1000, 4),
            "wall_ms": round(wall / n * 1000, 4), "threads": {("init" if p in init else "runtime"): t for p, t in threads.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", action="append", help="a tree's src/ dir (repeat for an A/B; default: this one)")
    ap.add_argument("-n", type=int, default=1000, help="invocations measured per environment")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the trees")
    ap.add_argument("--memory", default="128,1769", help="MemorySize values, MB")
    ap.add_argument("--no-freeze", action="store_true", help="also measure without freeze/thaw")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--child", nargs=4, metavar=("SRC", "MB", "N", "FREEZE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]), a.child[3] == "1")))
        return
    if os.geteuid() != 0:
        sys.exit("needs root: the namespace sandbox builds namespaces and cgroups")
    srcs = [os.path.realpath(s) for s in (a.src or [str(REPO / "src")])]
    modes = [True, False] if a.no_freeze else [True]
    rows: dict[tuple, list[dict]] = {}
    for _ in range(a.rounds):
        for mb in (int(x) for x in a.memory.split(",")):
            for freeze in modes:
                for src in srcs:                       # alternated: the same conditions for each tree
                    out = subprocess.run([sys.executable, __file__, "--child", src, str(mb), str(a.n), "1" if freeze else "0"],
                                         capture_output=True, text=True, timeout=600)
                    if out.returncode:
                        sys.exit(f"child failed ({src}, {mb} MB): {out.stderr[-2000:]}")
                    rows.setdefault((src, mb, freeze), []).append(json.loads(out.stdout.splitlines()[-1]))
    print(f"environment CPU per warm no-op invocation, ms (median of {a.rounds} environments x {a.n} invocations; "
          f"load average {open('/proc/loadavg').read().split()[0]})")
    print(f"{'tree':<40}{'MB':>6} {'freeze':>7}{'env':>9}{'init':>9}{'runtime':>9}{'host':>9}{'wall':>9}  threads")
    for (src, mb, freeze), rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("env_ms", "init_ms", "runtime_ms", "host_ms", "wall_ms")}
        print(f"{src[-40:]:<40}{mb:>6} {'yes' if freeze else 'no':>7}{med['env_ms']:>9.3f}{med['init_ms']:>9.3f}"
              f"{med['runtime_ms']:>9.3f}{med['host_ms']:>9.3f}{med['wall_ms']:>9.3f}  {rs[0]['threads']}")
    if a.json:
        Path(a.json).write_text(json.dumps([{"src": k[0], "mb": k[1], "freeze": k[2], "runs": v} for k, v in rows.items()],
                                           indent=1))


if __name__ == "__main__":
    main()
