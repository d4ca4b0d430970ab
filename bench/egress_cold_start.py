"""Cold start with outbound networking on vs off (sandbox/egress.py), measured in the same run: the
namespace backend building environments from scratch and from pre-isolated slots, with `egress=none`
(only lo), `egress=public` (a veth pair, the server's default policy) and a function whose own tag needs
one more nftables call at start (`lambdalet:egress` = "all"); plus the host-side pieces alone (a veth pair
made, a policy bound, a never-used pair removed). Each measured cold start ends with the function having
connected to an HTTP server in a network namespace of the benchmark's own (198.18.0.0/15, never a real
external address), except with egress=none, which only runs the handler.

    sudo .venv/bin/python bench/egress_cold_start.py [--cold 30]
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
import uuid

from lambdalet.sandbox import open_backend
from lambdalet.sandbox.egress import HostNetwork
from lambdalet.sandbox.egress_policy import parse
from lambdalet.sandbox.testing import make_request, make_spec, write_code

APP = r'''
import socket
def handler(event, context):
    if not event.get("target"):
        return {"n": event["n"]}
    s = socket.create_connection((event["target"], 8080), timeout=3)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n"); body = s.recv(100); s.close()
    return {"n": event["n"], "body": body.decode()[-7:]}
'''
OUTSIDE = r'''
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.recv(1024); c.sendall(b"HTTP/1.0 200 OK\r\n\r\noutside"); c.close()
'''


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 2), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 2), "n": len(xs)}


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


class Outside:
    """A network namespace with 198.18.250.2 serving HTTP on 8080, joined to the host by a veth."""
    def __enter__(self):
        tag = uuid.uuid4().hex[:6]
        self.ns, self.dev, self.address = f"lleb-{tag}", f"lxb{tag}", "198.18.250.2"
        sh(f"ip netns add {self.ns} && ip link add {self.dev} type veth peer name lxq{tag} netns {self.ns}")
        sh(f"ip addr add 198.18.250.1/30 dev {self.dev} && ip link set {self.dev} up")
        sh(f"echo 1 > /proc/sys/net/ipv4/conf/{self.dev}/forwarding")
        sh(f"ip -n {self.ns} addr add 198.18.250.2/30 dev lxq{tag} && ip -n {self.ns} link set lxq{tag} up")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", OUTSIDE],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(f"ip netns del {self.ns}; ip link del {self.dev}", shell=True, capture_output=True)


def cold_starts(code: str, n: int, target: str, egress: str, slots: int, tag: str = "") -> dict:
    b = open_backend("namespace", slots=slots, egress=egress, cgroup_parent=f"lambdalet-bench-{uuid.uuid4().hex[:6]}",
                     root_dir=f"/run/lambdalet-bench-{uuid.uuid4().hex[:6]}/root")
    try:
        colds, steps, hits = [], [], 0
        for i in range(n + 2):                          # two unmeasured: the fork server's first imports
            if b.slots is not None:
                assert b.slots.wait_full(30), "the slot pool did not refill"
            t0 = time.perf_counter()
            sb = b.create(make_spec(code, memory_mb=1769, egress=tag))
            sb.start()
            res = sb.invoke(make_request(sb.spec, json.dumps({"n": i, "target": target}).encode(), timeout_s=10))
            dt = _ms(t0)
            out = json.loads(res.payload)
            assert out["n"] == i and (not target or out["body"] == "outside"), res
            if i >= 2:
                colds.append(dt)
                stats = sb.stats()
                hits += bool(stats.get("slot"))
                steps.append({k: v for k, v in stats.items() if k in ("network_ms", "egress_link_ms", "claim_ms")
                              or k == "slot_build_network_ms"})
            sb.destroy()
        keys = dict.fromkeys(k for s in steps for k in s)
        return {"cold_start": summary(colds), "from_a_slot": f"{hits}/{len(colds)}",
                "steps_median_ms": {k: round(statistics.median(s[k] for s in steps if k in s), 3) for k in keys}}
    finally:
        b.close()


def host_side(n: int) -> dict:
    net = HostNetwork(f"lambdalet-bench-{uuid.uuid4().hex[:6]}", "public")
    made, bound, removed = [], [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            link = net.make_link()
            made.append(_ms(t0))
            t0 = time.perf_counter()
            net.bind(link, parse("all", "public"))
            bound.append(_ms(t0))
            t0 = time.perf_counter()
            net.release(link)                           # never moved: removed by `ip link del`
            removed.append(_ms(t0))
    finally:
        net.close()
    return {"veth pair made (ip -batch)": summary(made), "own policy bound (nft)": summary(bound),
            "unused pair removed": summary(removed)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"note": "skipped: needs root"}))
        return
    code = write_code(tempfile.mkdtemp(prefix="lambdalet-bench-"), {"app.py": APP})
    rows = {}
    with Outside() as out:
        for slots in (0, 2):
            where = "from a slot" if slots else "from scratch"
            rows[f"{where}: egress none (lo only)"] = cold_starts(code, args.cold, "", "none", slots)
            rows[f"{where}: egress public, connects outside"] = cold_starts(code, args.cold, out.address, "public", slots)
            rows[f"{where}: function tag 'all', connects outside"] = cold_starts(code, args.cold, out.address, "public",
                                                                                slots, tag="all")
        rows["host side alone"] = host_side(args.cold)
    shutil.rmtree(code, ignore_errors=True)
    for k, v in rows.items():
        print(json.dumps({"what": k, **v}))


if __name__ == "__main__":
    main()
