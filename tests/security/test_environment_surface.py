"""What an environment can see and keep (issue 10.6), through the real API on a real server with the
namespace sandbox (root only): /proc paths container runtimes mask, socket families a function never
needs, a fork bomb outliving its timeout, host paths in the mount table.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from polling import eventually

from .hostile_support import create, invoke, ok, procs_of_uid

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace sandbox)")]


@pytest.fixture(scope="module")
def lam(server):
    return server.client()


# ---------------------------------------------------------------------------------------------- /proc

PROC = r'''
import os
MASKED = ["/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
          "/proc/sched_debug", "/proc/kallsyms", "/proc/scsi", "/proc/acpi"]
READ_ONLY = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
def handler(event, context):
    out = {"masked": {}, "mounts": {}}
    for p in MASKED:
        try:
            if os.path.isdir(p):
                out["masked"][p] = "dir:" + ",".join(sorted(os.listdir(p)))
            else:
                with open(p, "rb") as f:
                    out["masked"][p] = "read:%d" % len(f.read(4096))
        except OSError as e:
            out["masked"][p] = "errno:%d" % e.errno
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        out["mounts"][fields[4]] = fields[5]
    out["exists"] = {p: os.path.exists(p) for p in MASKED + READ_ONLY}
    out["self_ok"] = len(open("/proc/self/status").read()) > 0 and len(open("/proc/meminfo").read()) > 0
    return out
'''


def test_proc_paths_are_masked_as_container_runtimes_do(lam):
    out = ok(lam, create(lam, PROC, prefix="proc"))
    for path, seen in out["masked"].items():
        if out["exists"][path]:
            assert seen in ("read:0", "dir:") or seen.startswith("errno:"), (path, seen)
    # /proc/kallsyms exists on every kernel: masked, not merely zeroed addresses
    assert out["masked"]["/proc/kallsyms"] in ("read:0", "errno:13"), out["masked"]
    for path in ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"):
        if out["exists"][path]:
            assert out["mounts"].get(path, "").split(",")[0] == "ro", (path, out["mounts"].get(path))
    assert out["self_ok"]                                   # the rest of /proc still works


# ---------------------------------------------------------------------------------------------- sockets

SOCKETS = r'''
import socket
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40,
            "AF_KEY": 15, "AF_BLUETOOTH": 31, "AF_ALG": 38, "AF_APPLETALK": 5, "AF_X25": 9, "AF_AX25": 3,
            "AF_TIPC": 30, "AF_RDS": 21, "AF_CAN": 29, "AF_XDP": 44, "AF_LLC": 26, "AF_PPPOX": 24, "AF_NFC": 39,
            "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_MCTP": 45}
NETLINK = {"NETLINK_ROUTE": 0, "NETLINK_SOCK_DIAG": 4, "NETLINK_AUDIT": 9, "NETLINK_KOBJECT_UEVENT": 15,
           "NETLINK_GENERIC": 16, "NETLINK_NETFILTER": 12, "NETLINK_XFRM": 6}
def attempt(family, kind, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return 0
    except OSError as e:
        return e.errno
def handler(event, context):
    out = {name: attempt(f, socket.SOCK_DGRAM if f in (16, 17, 40, 5, 3, 30, 21, 29) else socket.SOCK_STREAM)
           for name, f in FAMILIES.items()}
    out["AF_VSOCK/STREAM"] = attempt(40, socket.SOCK_STREAM)
    out["AF_PACKET/RAW"] = attempt(17, socket.SOCK_RAW)
    out["AF_KEY/RAW"] = attempt(15, socket.SOCK_RAW, 2)
    out["AF_ALG/SEQPACKET"] = attempt(38, socket.SOCK_SEQPACKET)
    out["high_bits"] = attempt(40 | (1 << 32), socket.SOCK_STREAM) if False else None
    for name, proto in NETLINK.items():
        out[name] = attempt(16, socket.SOCK_RAW, proto)
    try:
        a, b = socket.socketpair(); a.close(); b.close(); out["socketpair_unix"] = 0
    except OSError as e:
        out["socketpair_unix"] = e.errno
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())   # glibc asks NETLINK_ROUTE
    out["getaddrinfo"] = sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80)})
    return out
'''

EAFNOSUPPORT = 97


def test_socket_families_a_function_never_needs_are_refused(lam):
    out = ok(lam, create(lam, SOCKETS, prefix="sockets"))
    for name in ("AF_UNIX", "AF_INET", "AF_INET6", "NETLINK_ROUTE", "socketpair_unix"):
        assert out[name] == 0, (name, out)
    refused = [k for k in out if k.startswith("AF_") and k.split("/")[0] not in ("AF_UNIX", "AF_INET", "AF_INET6",
                                                                               "AF_NETLINK")]
    refused += [k for k in out if k.startswith("NETLINK_") and k != "NETLINK_ROUTE"]
    for name in refused:
        assert out[name] == EAFNOSUPPORT, (name, out)       # refused by the filter, not by a missing module
    # lo, and eth0: the egress link of the server's default policy (public; tests/security/test_egress.py)
    assert out["ifaces"] == ["eth0", "lo"] and "127.0.0.1" in out["getaddrinfo"], out


# ---------------------------------------------------------------------------------------------- timeout

BOMB = r'''
import os, time
def handler(event, context):
    if event.get("mode") != "bomb":
        return {"uid": os.getuid()}
    while True:                           # every process forks for ever: the pids limit is hit constantly
        try:
            os.fork()
        except OSError:
            pass
'''


def test_a_fork_bomb_dies_within_a_second_of_its_timeout(server, lam):
    name = create(lam, BOMB, prefix="bomb", Timeout=1)
    uid = ok(lam, name)["uid"]                                # warm: the timed call below has no cold start
    done: dict = {}
    client = server.client()                                  # made before the clock starts (~50 ms of boto3)
    t0 = time.monotonic()

    def call():
        done["r"] = invoke(client, name, {"mode": "bomb"})
        done["t"] = time.monotonic() - t0

    caller = threading.Thread(target=call)
    caller.start()
    most = 0
    while caller.is_alive() and most <= 20:              # how far it got while it ran (the scan is slow)
        most = max(most, len(procs_of_uid(uid)))
    caller.join(30)
    resp, payload = done["r"]
    assert most > 20, f"the bomb never grew ({most} processes): the test would prove nothing"
    assert payload["errorType"] == "Sandbox.Timedout", payload
    gone = eventually(lambda: not procs_of_uid(uid), 5, 0.01)
    t_gone = time.monotonic() - t0
    assert gone, f"{len(procs_of_uid(uid))} processes of uid {uid} outlived the timeout"
    # Timeout=1: the answer (after the kill) and the last process must come within 1 s of the deadline.
    assert done["t"] < 2.0 and t_gone < 2.0, (done["t"], t_gone)
    assert "uid" in ok(lam, name)                           # the function still serves afterwards


# ---------------------------------------------------------------------------------------------- mounts

MOUNTINFO = r'''
def handler(event, context):
    return {"mountinfo": open("/proc/self/mountinfo").read()}
'''


def test_the_mount_table_names_no_checkout_or_slot_path(server, lam):
    """The runtime's own files are copied into the environment's root (no bind from the checkout) and a
    slot's mount points are a tmpfs of their own (no host path naming the instance), unpacked code is
    on a tmpfs of its own and /var/lang an overlay whose layers are named relatively."""
    text = ok(lam, create(lam, MOUNTINFO, prefix="mounts"))["mountinfo"]
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert checkout not in text, text
    assert "/var/runtime" not in text, text                # not a mount at all: files in the root tmpfs
    assert "/slots/" not in text and "/root-slots/" not in text, text
    # Unpacked code and layers live on tmpfs mounts of their own (invoke/unpacked.py): no instance id.
    from lambdalet.config import Settings
    assert Settings(data_dir=server.data_dir).instance_id not in text, text
    # The interpreter's install prefix is an overlay whose layers are named relative to a neutral dir.
    import sys
    assert os.path.realpath(sys.base_prefix) not in text, text
    assert "/root/" not in text and "/home/" not in text, text
    for line in text.splitlines():
        fields = line.split()
        if fields[4] in ("/opt", "/tmp") and "tmp" not in fields[-2:]:
            assert fields[3] in ("/opt", "/tmp", "/"), line
    print(text)
