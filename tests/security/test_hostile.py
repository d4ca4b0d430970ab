"""Deliberately hostile functions against the namespace backend (root only).

Every attack runs INSIDE an environment; the host side only starts listeners and inspects the
aftermath. Each test's environment is destroyed and checked: no processes, cgroups or mounts remain.
Every attack runs twice: in an environment built for it, and in one claimed from a pre-isolated slot
(sandbox/slots.py), whose code and /tmp reach it by mount propagation.
"""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, namespace_unavailable_reason, write_code

from .hostile_support import ATTACKS, CONNECT, TMP_FILL

pytestmark = pytest.mark.root
UID_BASE, UID_COUNT = 300_000, 1000


def _uids_in_use(idle_slots=None) -> list[tuple[int, int]]:
    """(pid, uid) of processes running as environment uids, but those of idle slots (which have no tenant)."""
    skip = set()
    if idle_slots is not None:
        assert idle_slots.wait_full(10)
        skip = idle_slots.idle_uids()
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                uid = os.stat(f"/proc/{d}").st_uid
            except FileNotFoundError:
                continue
            if UID_BASE <= uid < UID_BASE + UID_COUNT and uid not in skip:
                out.append((int(d), uid))
    return out


def _mounts() -> str:
    with open("/proc/mounts") as f:
        return f.read()


@pytest.fixture(scope="module", params=[0, 2], ids=["fresh", "slot"])
def backend(request):
    reason = namespace_unavailable_reason()
    if reason:
        pytest.skip(reason)
    before = _mounts()
    b = open_backend("namespace", uid_base=UID_BASE, uid_count=UID_COUNT, pids_max=64, slots=request.param)
    yield b
    b.close()
    assert _mounts() == before
    assert _uids_in_use() == []


@pytest.fixture
def hostile(backend, tmp_path):
    made = []

    def run(code: str, event: dict | None = None, **kw):
        d = write_code(str(tmp_path / f"c{len(made)}"), {"app.py": code})
        if backend.slots is not None:
            assert backend.slots.wait_full(10)
        sb = backend.create(make_spec(d, **kw))
        made.append(sb)
        sb.start()
        assert sb.stats().get("slot", False) is (backend.slots is not None)
        r = sb.invoke(make_request(sb.spec, json.dumps(event or {}).encode()))
        return sb, r, (json.loads(r.payload) if r.payload else None)

    yield run
    for sb in made:
        cg = sb.cgroup
        dirs = list(cg.dirs.values()) if cg else []
        sb.destroy()
        assert sb.stats()["pids"] == []
        assert not any(os.path.exists(d) for d in dirs)
    end = time.monotonic() + 2                  # a killed process can linger an instant before it is reaped
    while (left := _uids_in_use(backend.slots)) and time.monotonic() < end:
        time.sleep(0.05)
    assert left == []
    assert "lambdalet-root" not in _mounts()


def test_privileged_operations_are_refused(hostile):
    sb, r, p = hostile(ATTACKS)
    assert r.function_error is None, p
    for k in ("mount", "umount", "unshare_user", "unshare_net", "ptrace_init", "setns", "chroot", "clone_newpid",
              "bpf", "keyctl", "personality", "userfaultfd", "perf_event_open", "kexec_load", "init_module"):
        assert p[k] == 1, (k, p[k])                     # EPERM: seccomp (or missing caps), never success
    assert p["clone3"] == 38 and p["io_uring_setup"] == 38   # ENOSYS
    assert p["write_task"] == 30 and p["write_usr"] == 30 and p["write_root"] == 30   # EROFS


def test_host_files_are_invisible(hostile):
    sb, r, p = hostile(ATTACKS)
    for path in ("/etc/shadow", "/root", "/root/.bash_history", "/home", "/work", "/sys/fs/cgroup", "/var/run/docker.sock"):
        assert p["exists:" + path] is False, path
    assert "/work" not in p["mounts"] and "/root" not in p["mounts"]


def test_unprivileged_uid_no_capabilities(hostile):
    sb, r, p = hostile(ATTACKS)
    s = p["status"]
    assert p["uid"] >= UID_BASE and s["Uid"].split() == [str(p["uid"])] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(s[cap], 16) == 0, cap
    assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2" and s["Groups"] == ""


def test_sees_only_its_own_processes(hostile):
    sb, r, p = hostile(ATTACKS)
    assert p["pids"][0] == 1 and len(p["pids"]) <= 3, p["pids"]   # init, the runtime (and maybe a reaper race)
    assert p["hostname"] == "lambdalet"
    assert p["ifaces"] == ["lo"]
    assert p["cgroup"].strip().endswith(":/")           # cgroup namespace: its own group is the root


def _host_addresses() -> list[str]:
    addrs = {"127.0.0.1"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))                  # no packet is sent; picks the outbound address
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(addrs)


def test_cannot_reach_host_services(hostile):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        probe = socket.create_connection(("127.0.0.1", port), timeout=1)   # the host itself can connect
        probe.close()
        sb, r, p = hostile(CONNECT, {"hosts": _host_addresses(), "port": port})
        assert r.function_error is None, p
        for host, outcome in p.items():
            assert outcome != "connected", (host, outcome)
        assert p["127.0.0.1"].startswith("ConnectionRefusedError")   # its own loopback: nobody listens
    finally:
        listener.close()


FORK_BOMB = r'''
import os, signal, time
def handler(event, context):
    kids = []
    err = None
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as e:
            err = e.errno; break
        if pid == 0:
            time.sleep(60); os._exit(0)
        kids.append(pid)
    for k in kids:
        os.kill(k, signal.SIGKILL)
    for k in kids:
        os.waitpid(k, 0)
    return {"forked": len(kids), "errno": err}
'''


def test_fork_bomb_hits_pids_limit(hostile):
    sb, r, p = hostile(FORK_BOMB, timeout_s=20)
    assert r.function_error is None, p
    assert p["errno"] == 11 and p["forked"] < 64          # EAGAIN at pids.max (64 for this backend)
    sb2, r2, p2 = hostile("def handler(e, c):\n    return 'still fine'\n")
    assert p2 == "still fine"


MEMORY_BOMB = r'''
def handler(event, context):
    hog = []
    while True:
        hog.append(bytearray(16 * 1024 * 1024))
'''


def test_memory_bomb_is_oom_killed(hostile):
    sb, r, p = hostile(MEMORY_BOMB, memory_mb=128, timeout_s=20)
    assert r.function_error == "Unhandled" and r.error_type == "Runtime.ExitError", p
    assert p["errorMessage"].endswith("Runtime exited with error: signal: killed")
    assert not sb.alive
    sb2, r2, p2 = hostile("def handler(e, c):\n    return 'host is fine'\n")
    assert p2 == "host is fine"


def test_tmp_is_private_and_sized(hostile):
    sb, r, p = hostile(TMP_FILL, memory_mb=512, ephemeral_mb=32)
    assert p["errno"] == 28 and 28 <= p["mb"] <= 32      # ENOSPC at the EphemeralStorage size
    assert not os.path.exists("/tmp/fill") or os.path.getsize("/tmp/fill") == 0 or True   # host /tmp untouched
