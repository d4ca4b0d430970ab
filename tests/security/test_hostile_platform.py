"""Hostile functions against the whole platform (root only): a real `lambdalet serve` with the default
namespace sandbox, driven through boto3 only.

Each attack runs INSIDE a function; the test inspects the outcome from the host side (the server's
cgroups, the processes of an environment's uid) and, after every hostile call, checks the platform
still serves an ordinary function. Environments run as their own unprivileged HOST uid (no user
namespace), so a function reporting os.getuid() tells the host which processes are its.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from polling import eventually

from .hostile_support import WAIT, create, host_addresses, invoke, ok, procs_of_uid

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace sandbox)")]

CANARY = "def handler(event, context):\n    return {'canary': event.get('n')}\n"


@pytest.fixture(scope="module")
def lam(server):
    return server.client()


@pytest.fixture(scope="module")
def serving(lam):
    """Call after a hostile invocation: an ordinary function on the same server still answers."""
    name = create(lam, CANARY, prefix="canary")
    counter = iter(range(1_000_000))

    def check() -> None:
        n = next(counter)
        assert ok(lam, name, {"n": n}) == {"canary": n}

    check()
    return check


def cgroup_dirs_of(pid: int) -> list[str]:
    """Host directories of every v1 controller group (or the v2 group) a host pid belongs to."""
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls in ("memory", "pids", "freezer", "cpu,cpuacct", "cpu"):
            dirs.append(f"/sys/fs/cgroup/{ctrls}{path}")
        elif ctrls == "" and path != "/":
            dirs.append(f"/sys/fs/cgroup{path}")
    return [d for d in dirs if "lambdalet-" in d]


# --------------------------------------------------------------------------------------------- network

CONNECT = r'''
import socket
import threading
def handler(event, context):
    out = {}
    for host in event["hosts"]:
        for port in event["ports"]:
            s = socket.socket(); s.settimeout(1)
            try:
                s.connect((host, port)); out[f"{host}:{port}"] = "connected"
            except OSError as e:
                out[f"{host}:{port}"] = f"{type(e).__name__}:{e.errno}"
            finally:
                s.close()
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", (event["hosts"][-1], event["ports"][0])); out["udp"] = "sent"
    except OSError as e:
        out["udp"] = f"{type(e).__name__}:{e.errno}"
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())
    return out
'''


def test_cannot_reach_the_api_port_or_any_host_port(server, lam, serving):
    api_port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    other_port = listener.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", api_port), timeout=2).close()   # the host can reach both
        socket.create_connection(("127.0.0.1", other_port), timeout=2).close()
        hosts = host_addresses()
        name = create(lam, CONNECT)
        out = ok(lam, name, {"hosts": hosts, "ports": [api_port, other_port, 22, 80]})
    finally:
        listener.close()
    assert out["ifaces"] == ["eth0", "lo"], out         # eth0: the default egress link (test_egress.py)
    for target, outcome in out.items():
        if target in ("ifaces", "udp"):
            continue
        assert outcome != "connected", (target, out)
    # Its own loopback is not the host's: nobody listens on the API port there.
    assert out[f"127.0.0.1:{api_port}"].startswith("ConnectionRefusedError"), out
    for host in hosts:
        if host != "127.0.0.1":                          # the host's table rejects anything for the host itself
            assert out[f"{host}:{api_port}"].startswith("OSError:113"), out
    serving()


# --------------------------------------------------------------------------------------------- /tmp

WRITER = r'''
import os
def handler(event, context):
    if event.get("write"):
        with open("/tmp/" + event["file"], "w") as f:
            f.write(event["secret"])
    p = "/tmp/" + event["file"]
    return {"exists": os.path.exists(p), "content": open(p).read() if os.path.exists(p) else None,
            "listing": sorted(os.listdir("/tmp"))}
'''

SEEKER = r'''
import os
def handler(event, context):
    secret, fname = event["secret"], event["file"]
    found, seen = [], 0
    roots = ["/tmp"]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            roots += [f"/proc/{pid}/root/tmp", f"/proc/{pid}/cwd"]
    for root in roots + ["/"]:
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
            if root == "/" and dirpath == "/":
                dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "dev", "usr", "var")]
            for fn in filenames:
                seen += 1
                p = os.path.join(dirpath, fn)
                if fn == fname:
                    found.append(p)
                    continue
                try:
                    if os.path.getsize(p) < 65536 and secret.encode() in open(p, "rb").read():
                        found.append(p)
                except OSError:
                    pass
    return {"found": found, "tmp": sorted(os.listdir("/tmp")), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "files_seen": seen}
'''


def test_another_functions_tmp_is_invisible(lam, serving):
    secret, fname = uuid.uuid4().hex, f"secret-{uuid.uuid4().hex[:8]}"
    a = create(lam, WRITER, prefix="tmp-a")
    b = create(lam, SEEKER, prefix="tmp-b")
    wrote = ok(lam, a, {"write": True, "file": fname, "secret": secret})
    assert wrote["exists"] and wrote["content"] == secret
    serving()
    seen = ok(lam, b, {"file": fname, "secret": secret})
    assert seen["found"] == [], seen
    assert fname not in seen["tmp"]
    assert seen["files_seen"] > 0                        # it did look
    assert not Path("/tmp", fname).exists()             # nor did it land on the host's /tmp
    again = ok(lam, a, {"file": fname})                 # A's own environment still has it: it was there to find
    assert again["exists"] and again["content"] == secret
    serving()


# --------------------------------------------------------------------------------------------- timeouts

LINGER = r'''
import os, signal, time, uuid
ENV_ID = uuid.uuid4().hex
def handler(event, context):
    info = {"u": ENV_ID, "uid": os.getuid(), "pid": os.getpid(), "hb": os.path.exists("/tmp/heartbeat")}
    if event.get("mode") != "linger":
        return info
    # A daemonized grandchild: new session, ignores SIGTERM/SIGHUP, beats every 20 ms, pokes outside.
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(s, signal.SIG_IGN)
            while True:
                with open("/tmp/heartbeat", "a") as f:
                    f.write(f"{time.time()}\n")
                for target in (event["server_pid"], 1):
                    try:
                        os.kill(target, signal.SIGTERM)
                    except OSError:
                        pass
                time.sleep(0.02)
        os._exit(0)
    os.wait()
    time.sleep(30)                                    # past Timeout=1
    return info
'''


def test_timeout_ends_the_environment_and_everything_it_started(server, lam, serving):
    name = create(lam, LINGER, prefix="linger", Timeout=1)
    first = ok(lam, name)
    uid = first["uid"]
    pids = procs_of_uid(uid)
    assert pids, f"no host process runs as the environment's uid {uid}"
    cgroups = sorted({d for p in pids for d in cgroup_dirs_of(p)})
    assert cgroups and all(os.path.isdir(d) for d in cgroups), cgroups
    assert ok(lam, name)["u"] == first["u"]              # warm: the same environment

    t0 = time.monotonic()
    done: dict = {}
    caller = threading.Thread(target=lambda: done.update(
        r=invoke(server.client(), name, {"mode": "linger", "server_pid": server.pid})))
    caller.start()
    # While it runs, the host sees the daemonized grandchild as one more process of that uid.
    grew = eventually(lambda: len(procs_of_uid(uid)) > len(pids), 0.9, 0.01)
    caller.join(30)
    resp, payload = done["r"]
    took = time.monotonic() - t0
    assert grew, "the background child never started: the test would prove nothing"
    assert resp.get("FunctionError") == "Unhandled", payload
    assert payload["errorType"] == "Sandbox.Timedout" and "timed out after 1.00 seconds" in payload["errorMessage"]
    assert took < 5, took
    # Nothing of the old environment runs any more: no process of its uid, its cgroups are gone.
    assert eventually(lambda: not procs_of_uid(uid), 5, 0.05), f"still running as uid {uid}: {procs_of_uid(uid)}"
    assert eventually(lambda: not any(os.path.isdir(d) for d in cgroups), 5, 0.05), cgroups
    assert server.proc.poll() is None                   # the SIGTERMs never reached the server
    serving()

    after = ok(lam, name)
    assert after["u"] != first["u"], "the timed-out environment was reused"
    assert after["hb"] is False                          # a fresh /tmp: the heartbeat file died with it
    time.sleep(0.3)
    assert ok(lam, name)["u"] == after["u"]
    serving()


# --------------------------------------------------------------------------------------------- /tmp size

FILL = r'''
import os
def handler(event, context):
    n, err = 0, None
    try:
        with open("/tmp/fill", "wb") as f:
            chunk = b"x" * (1 << 20)
            while True:
                f.write(chunk); f.flush(); n += 1
    except OSError as e:
        err = e.errno
    st = os.statvfs("/tmp")
    os.remove("/tmp/fill")
    with open("/tmp/after", "w") as f:                   # usable again once freed
        f.write("ok")
    return {"mb": n, "errno": err, "tmp_size_mb": st.f_blocks * st.f_frsize // (1 << 20)}
'''


def test_filling_tmp_stops_at_ephemeral_storage(lam, serving):
    name = create(lam, FILL, prefix="fill", MemorySize=1024, EphemeralStorage={"Size": 512}, Timeout=30)
    out = ok(lam, name)
    assert out["errno"] == 28, out                      # ENOSPC, not the host's disk nor an OOM kill
    assert 500 <= out["mb"] <= 512 and out["tmp_size_mb"] == 512, out
    serving()
    assert ok(lam, name)["errno"] == 28                 # same environment, still healthy
    serving()


# --------------------------------------------------------------------------------------------- privileges

PRIVILEGED = r'''
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

def errno_of(rc):
    return 0 if rc >= 0 else ctypes.get_errno()

def bpf_prog_load():
    # BPF_PROG_LOAD of "r0 = 0; exit" as a socket filter: the smallest valid program.
    insns = (ctypes.c_uint64 * 2)(0x00000000000000b7, 0x0000000000000095)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("IIQQ", attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    return errno_of(libc.syscall(321, 5, attr, 128))

def handler(event, context):
    out = {"uid": os.getuid()}
    out["bpf_prog_load"] = bpf_prog_load()
    out["bpf_map_create"] = errno_of(libc.syscall(321, 0, ctypes.create_string_buffer(struct.pack("IIII", 2, 4, 4, 1), 128), 128))
    out["ptrace_attach_init"] = errno_of(libc.syscall(101, 16, 1, 0, 0))      # PTRACE_ATTACH pid 1
    out["ptrace_traceme"] = errno_of(libc.syscall(101, 0, 0, 0, 0))           # PTRACE_TRACEME
    out["mount_tmpfs"] = errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    out["mount_proc"] = errno_of(libc.mount(b"proc", b"/tmp", b"proc", 0, None))
    out["remount_task_rw"] = errno_of(libc.mount(None, b"/var/task", None, 32 | 4096, None))   # MS_REMOUNT|MS_BIND
    out["umount_task"] = errno_of(libc.syscall(166, b"/var/task", 2))
    out["unshare_userns"] = errno_of(libc.syscall(272, 0x10000000))
    out["unshare_mntns"] = errno_of(libc.syscall(272, 0x20000))
    out["setuid_root"] = errno_of(libc.syscall(105, 0))
    out["perf_event_open"] = errno_of(libc.syscall(298, ctypes.create_string_buffer(128), 0, -1, -1, 0))
    try:
        open("/var/task/app.py", "a"); out["write_task"] = 0
    except OSError as e:
        out["write_task"] = e.errno
    return out
'''


def test_bpf_ptrace_and_mount_fail_inside(lam, serving):
    name = create(lam, PRIVILEGED, prefix="priv")
    out = ok(lam, name)
    assert out["uid"] != 0
    for k, v in out.items():
        if k != "uid":
            assert v != 0, f"{k} succeeded inside the environment: {out}"
    for k in ("bpf_prog_load", "bpf_map_create", "ptrace_attach_init", "ptrace_traceme", "mount_tmpfs",
              "mount_proc", "remount_task_rw", "umount_task", "unshare_userns", "unshare_mntns", "setuid_root",
              "perf_event_open"):
        assert out[k] == 1, (k, out)                    # EPERM: refused, not merely malformed
    assert out["write_task"] in (13, 30)                # EACCES (root-owned code) / EROFS (read-only mount)
    serving()


# --------------------------------------------------------------------------------------------- sharing

WHO = "import uuid\nENV_ID = uuid.uuid4().hex\ndef handler(event, context):\n    return ENV_ID\n"


def test_an_environment_is_never_shared_across_versions_or_functions(lam, serving):
    name = create(lam, WHO, prefix="ver")
    v1 = lam.publish_version(FunctionName=name)["Version"]
    # Same code; a configuration change is what makes PublishVersion create a second version.
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"RELEASE": "2"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    assert (v1, v2) == ("1", "2")
    cfg1 = lam.get_function_configuration(FunctionName=name, Qualifier=v1)
    cfg2 = lam.get_function_configuration(FunctionName=name, Qualifier=v2)
    assert cfg1["CodeSha256"] == cfg2["CodeSha256"]
    twin = create(lam, WHO, prefix="twin")              # another function, byte-identical code

    seen: dict[str, set[str]] = {}
    for _ in range(4):                                   # interleaved: idle environments of each are in the pool
        for label, fn, kw in (("1", name, {"Qualifier": v1}), ("2", name, {"Qualifier": v2}), ("$LATEST", name, {}),
                              ("twin", twin, {})):
            resp, env_id = invoke(lam, fn, **kw)
            assert "FunctionError" not in resp, env_id
            if label in ("1", "2"):
                assert resp["ExecutedVersion"] == label
            seen.setdefault(label, set()).add(env_id)
    for label, ids in seen.items():
        assert len(ids) == 1, (label, seen)             # sequential calls reuse their own warm environment
    all_ids = [next(iter(ids)) for ids in seen.values()]
    assert len(set(all_ids)) == len(all_ids), seen       # and never another version's or function's
    serving()
