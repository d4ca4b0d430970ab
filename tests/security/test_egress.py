"""Outbound networking by policy (sandbox/egress.py, egress_policy.py, envnet.py), through real servers and
real functions (root only).

The "outside" is a network namespace of this test's own, joined to the host by a veth, with addresses
from test ranges: a public-looking one (198.18.0.0/15, benchmarking), a private one (100.64.0.0/10) and a
link-local one (169.254.77.0/24), each routed by the host to that namespace for the test's duration, and
a small HTTP server answering on 8080 and 8081. No packet is ever meant for a real external address.
Everything made here (namespace, veth, routes) is removed at the end; the servers' tables and links are
checked gone after they stop.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import own_server
from lambdalet.config import Settings
from lambdalet.sandbox.egress import host_nameservers, link_prefix, table_name
from .hostile_support import create, host_addresses, ok

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace sandbox, network namespaces)"),
              pytest.mark.skipif(not (shutil.which("ip") and shutil.which("nft")), reason="needs iproute2 and nftables")]

OUTSIDE_SERVER = r'''
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            c.recv(1024); c.sendall(b"HTTP/1.0 200 OK\r\n\r\noutside-%d" % port)
        finally:
            c.close()
for p in (8080, 8081):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
'''

PROBE = r'''
import os, socket
def handler(event, context):
    out = {}
    for target in event["targets"]:
        host, port = target.rsplit(":", 1)
        s = socket.socket(); s.settimeout(3)
        try:
            s.connect((host, int(port)))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            out[target] = "connected:" + s.recv(200).decode(errors="replace").split("\r\n\r\n")[-1]
        except OSError as e:
            out[target] = f"{type(e).__name__}:{e.errno}"
        finally:
            s.close()
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())
    out["resolv"] = open("/etc/resolv.conf").read() if os.path.exists("/etc/resolv.conf") else None
    return out
'''

LISTENER = r'''
import socket, threading
LISTENERS = []
def handler(event, context):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", event["port"])); s.listen(16)
    LISTENERS.append(s)                               # kept listening while the environment lives
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((event["outside"], 8080)); me = u.getsockname()[0]; u.close()   # sends nothing
    c = socket.create_connection((me, event["port"]), timeout=2); c.close()  # it does listen there
    return {"address": me}
'''

REJECTED = "OSError:113"          # EHOSTUNREACH: icmp admin-prohibited from the host's table


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, shell=True, check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def outside():
    tag = uuid.uuid4().hex[:6]
    ns, host_if, peer = f"lleg-{tag}", f"lxo{tag}", f"lxp{tag}"
    n = random.randrange(1, 16000)
    base = f"198.18.{(4 * n) // 256}.{(4 * n) % 256}"
    host_ip, public = base[:base.rfind(".") + 1] + str(4 * n % 256 + 1), base[:base.rfind(".") + 1] + str(4 * n % 256 + 2)
    private, link_local = f"100.64.{random.randrange(256)}.{random.randrange(1, 255)}", f"169.254.77.{random.randrange(1, 255)}"
    proc = None
    try:
        sh(f"ip netns add {ns}")
        sh(f"ip link add {host_if} type veth peer name {peer} netns {ns}")
        sh(f"ip addr add {host_ip}/30 dev {host_if} && ip link set {host_if} up")
        sh(f"echo 1 > /proc/sys/net/ipv4/conf/{host_if}/forwarding")      # replies come back in here
        sh(f"ip route add {private}/32 dev {host_if} && ip route add {link_local}/32 dev {host_if}")
        for a in (f"{public}/30", f"{private}/32", f"{link_local}/32"):
            sh(f"ip -n {ns} addr add {a} dev {peer}")
        sh(f"ip -n {ns} link set {peer} up && ip -n {ns} link set lo up")
        sh(f"ip -n {ns} route add 10.0.0.0/8 via {host_ip}")              # so it can at least try to come in
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", OUTSIDE_SERVER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        yield SimpleNamespace(ns=ns, host_if=host_if, host_ip=host_ip, public=public, private=private,
                              link_local=link_local)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        sh(f"ip netns del {ns}", check=False)
        sh(f"ip link del {host_if}", check=False)
        sh(f"ip route del {private}/32", check=False)
        sh(f"ip route del {link_local}/32", check=False)


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    yield from own_server(tmp_path_factory, prefix="lambdalet-egress")       # the default: --egress public


@pytest.fixture(scope="module")
def lam(public_server):
    return public_server.client()


def _probe(lam, targets: list[str], **tags) -> dict:
    name = create(lam, PROBE, prefix="egress", **({"Tags": tags} if tags else {}))
    return ok(lam, name, {"targets": targets})


def test_public_default_reaches_a_public_address_and_nothing_private_local_or_of_the_host(public_server, lam, outside):
    api_port = int(public_server.url.rsplit(":", 1)[1].split("/")[0])
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    host_port = listener.getsockname()[1]
    try:
        socket.create_connection((outside.host_ip, host_port), timeout=2).close()   # the host itself can
        hosts = sorted(set(host_addresses()) | {outside.host_ip, "10.200.0.1"})
        targets = [f"{outside.public}:8080", f"{outside.private}:8080", f"{outside.link_local}:8080"]
        targets += [f"{h}:{p}" for h in hosts for p in (api_port, host_port)]
        out = _probe(lam, targets)
    finally:
        listener.close()
    assert out[f"{outside.public}:8080"] == "connected:outside-8080", out
    assert out[f"{outside.private}:8080"] == REJECTED, out               # private: not 'public'
    assert out[f"{outside.link_local}:8080"] == REJECTED, out            # link-local / metadata: never
    for h in hosts:
        for p in (api_port, host_port):
            expected = "ConnectionRefusedError:111" if h == "127.0.0.1" else REJECTED   # its own loopback
            assert out[f"{h}:{p}"] == expected, (h, p, out)
    assert out["ifaces"] == ["eth0", "lo"], out
    ns = host_nameservers()
    assert out["resolv"] == ("".join(f"nameserver {a}\n" for a in ns) if ns else None), out


def test_a_functions_tag_sets_its_own_policy(lam, outside):
    pub, priv = f"{outside.public}:8080", f"{outside.private}:8080"
    out = _probe(lam, [pub, priv], **{"lambdalet:egress": "all"})
    assert out[pub] == "connected:outside-8080" and out[priv] == "connected:outside-8080", out
    out = _probe(lam, [pub, f"{outside.link_local}:8080"], **{"lambdalet:egress": "all 169.254.77.0/24"})
    assert out[pub] == REJECTED and out[f"{outside.link_local}:8080"] == REJECTED, out   # link-local: refused, and
    # a tag that cannot be honoured allows nothing at all (fails closed)
    out = _probe(lam, [pub], **{"lambdalet:egress": "none"})
    assert out[pub] == REJECTED, out
    out = _probe(lam, [pub, f"{outside.public}:8081", priv],
                 **{"lambdalet:egress": f"none {outside.public}/32:8080 {outside.private}"})
    assert out[pub] == "connected:outside-8080" and out[priv] == "connected:outside-8080", out
    assert out[f"{outside.public}:8081"] == REJECTED, out                 # not on the list
    out = _probe(lam, [pub], **{"lambdalet:egress": "not-a-network"})
    assert out[pub] == REJECTED, out                                       # fails closed


def test_a_tag_change_applies_to_new_environments(lam, outside):
    pub = f"{outside.public}:8080"
    name = create(lam, PROBE, prefix="egress")
    assert ok(lam, name, {"targets": [pub]})[pub].startswith("connected")
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"lambdalet:egress": "none"})
    assert ok(lam, name, {"targets": [pub]})[pub] == REJECTED


def test_nothing_reaches_an_environment_not_another_environment_the_host_or_the_outside(lam, outside):
    port = 7000 + random.randrange(1000)
    listener = create(lam, LISTENER, prefix="egress-listener")
    address = ok(lam, listener, {"port": port, "outside": outside.public})["address"]
    out = _probe(lam, [f"{address}:{port}"])                                 # another environment
    assert out[f"{address}:{port}"] == REJECTED, out
    s = socket.socket()                                                    # the host
    s.settimeout(3)
    try:
        with pytest.raises(OSError):
            s.connect((address, port))
    finally:
        s.close()
    r = sh(f"ip netns exec {outside.ns} {sys.executable} -c \"import socket; socket.create_connection(('{address}', "
           f"{port}), timeout=3)\"", check=False)                         # the outside
    assert r.returncode != 0 and ("timed out" in r.stderr or "Errno 113" in r.stderr), r.stderr
    # The listener was really listening all along: warm, it still answers itself.
    assert ok(lam, listener, {"port": port + 1, "outside": outside.public})["address"] == address


def test_egress_none_server_has_only_lo_but_a_tag_allow_list_opens_it(tmp_path_factory, outside):
    gen = own_server(tmp_path_factory, "--egress", "none", prefix="lambdalet-egress-none")
    srv = next(gen)
    try:
        lam = srv.client()
        pub = f"{outside.public}:8080"
        out = _probe(lam, [pub])
        assert out["ifaces"] == ["lo"] and out[pub] == "OSError:101" and out["resolv"] is None, out
        out = _probe(lam, [pub, f"{outside.public}:8081"], **{"lambdalet:egress": f"{outside.public}:8080"})
        assert out[pub] == "connected:outside-8080" and out[f"{outside.public}:8081"] == REJECTED, out
    finally:
        next(gen, None)


def _leftovers(instance: str) -> tuple[bool, list[str]]:
    """(the server's table exists, its links still on the host)."""
    tables = sh("nft list tables inet").stdout.split()
    links = [n for _, n in socket.if_nameindex() if n.startswith(link_prefix(instance))]
    return table_name(instance) in tables, links


def test_the_table_and_links_go_with_the_server_and_after_kill_9_with_the_next_server(lambdalet_server_factory, outside):
    srv = lambdalet_server_factory()
    instance = f"lambdalet-{Settings(data_dir=Path(srv.data_dir).resolve()).instance_id}"   # its cgroup parent
    lam = srv.client()
    pub = f"{outside.public}:8080"
    assert _probe(lam, [pub])[pub].startswith("connected")
    table, _ = _leftovers(instance)
    assert table
    srv.stop(sig=signal.SIGKILL)
    assert _leftovers(instance)[0]                   # a dead server's table stays ...
    other = lambdalet_server_factory()               # ... until the next server starts, whatever its data dir
    assert not _leftovers(instance)[0]
    assert _probe(other.client(), [pub])[pub].startswith("connected")
    srv.start()                                      # and its own data dir works again
    assert _probe(srv.client(), [pub])[pub].startswith("connected")
    srv.stop()
    end = time.monotonic() + 5
    while _leftovers(instance) != (False, []) and time.monotonic() < end:
        time.sleep(0.1)                              # links die with their namespaces, asynchronously
    assert _leftovers(instance) == (False, [])
