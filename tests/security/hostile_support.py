"""Hostile functions made and called through boto3: what the tests of this directory share."""
from __future__ import annotations

import io
import json
import os
import socket
import uuid
import zipfile
from pathlib import Path

from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::000000000000:role/lambda-role"   # the default role: logs only
WAIT = {"Delay": 1, "MaxAttempts": 30}


def zip_code(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        z.writestr(info, code)
    return buf.getvalue()


def create(lam, code: str, prefix: str = "hostile", **kw) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    params = dict(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                  Code={"ZipFile": zip_code(code)}, Timeout=10)
    params.update(kw)
    lam.create_function(**params)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def invoke(lam, name: str, event=None, **kw) -> tuple[dict, object]:
    try:
        resp = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}).encode(), **kw)
    except ClientError as e:
        raise AssertionError(f"Invoke {name} failed at the API: {e.response['Error']}") from None
    raw = resp.pop("Payload").read()
    return resp, (json.loads(raw) if raw else None)


def ok(lam, name: str, event=None, **kw):
    resp, payload = invoke(lam, name, event, **kw)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, payload
    return payload


def host_addresses() -> list[str]:
    addrs = {"127.0.0.1"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))                   # picks the outbound address; sends nothing
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    with_hostname = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            with_hostname.add(info[4][0])
    except OSError:
        pass
    return sorted(addrs | with_hostname)


def procs_of_uid(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = os.stat(f"/proc/{d}")
                state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if st.st_uid == uid and state not in ("Z", "X"):
                out.append(int(d))
    return out


# a function that fills /tmp until the kernel says ENOSPC
TMP_FILL = r'''
import os
def handler(event, context):
    n = 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"x" * (1 << 20)); f.flush(); n += 1
    except OSError as e:
        return {"mb": n, "errno": e.errno}
'''


# what test_hostile.py (backend) and test_rootless.py (a rootless server) run inside an environment:
# privileged syscalls, host paths, credentials, namespaces
ATTACKS = r'''
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def err(rc):
    return 0 if rc == 0 else ctypes.get_errno()
def handler(event, context):
    out = {}
    out["mount"] = err(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    out["umount"] = err(libc.umount2(b"/var/task", 2))
    out["unshare_user"] = err(libc.unshare(0x10000000))
    out["unshare_net"] = err(libc.unshare(0x40000000))
    out["ptrace_init"] = err(libc.ptrace(16, 1, None, None))          # PTRACE_ATTACH to PID 1
    try:
        os.open("/proc/1/ns/net", os.O_RDONLY); out["open_init_ns"] = 0
    except OSError as e:
        out["open_init_ns"] = e.errno
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    out["setns"] = err(libc.setns(fd, 0))
    out["chroot"] = err(libc.chroot(b"/tmp"))
    out["clone_newpid"] = err(libc.syscall(56, 0x20000000 | 17, 0, 0, 0, 0)) if True else None
    out["clone3"] = err(libc.syscall(435, 0, 0))
    out["bpf"] = err(libc.syscall(321, 0, 0, 0))
    out["keyctl"] = err(libc.syscall(250, 0, 0, 0))
    out["personality"] = err(libc.syscall(135, 0xffffffff))
    out["io_uring_setup"] = err(libc.syscall(425, 1, 0))
    out["userfaultfd"] = err(libc.syscall(323, 0))
    out["perf_event_open"] = err(libc.syscall(298, 0, 0, -1, -1, 0))
    out["kexec_load"] = err(libc.syscall(246, 0, 0, 0, 0))
    out["init_module"] = err(libc.syscall(175, 0, 0, 0))
    for p in ("/etc/shadow", "/root", "/root/.bash_history", "/home", "/work", "/sys/fs/cgroup", "/var/run/docker.sock"):
        out["exists:" + p] = os.path.exists(p)
    try:
        open("/var/task/evil.py", "w").write("x"); out["write_task"] = 0
    except OSError as e:
        out["write_task"] = e.errno
    try:
        open("/usr/bin/evil", "w"); out["write_usr"] = 0
    except OSError as e:
        out["write_usr"] = e.errno
    try:
        open("/evil", "w"); out["write_root"] = 0
    except OSError as e:
        out["write_root"] = e.errno
    open("/tmp/ok", "w").write("tmp is writable")
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    out["status"] = {k: status[k].strip() for k in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                                    "NoNewPrivs", "Seccomp", "Groups")}
    out["uid"] = os.getuid()
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out["hostname"] = socket.gethostname()
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())
    out["cgroup"] = open("/proc/self/cgroup").read()
    out["mounts"] = open("/proc/self/mounts").read()
    return out
'''


# connects to each of event["hosts"] on event["port"]; reports each outcome
CONNECT = r'''
import socket
def handler(event, context):
    out = {}
    for host in event["hosts"]:
        s = socket.socket(); s.settimeout(1)
        try:
            s.connect((host, event["port"])); out[host] = "connected"
        except OSError as e:
            out[host] = type(e).__name__ + ":" + str(e.errno)
        finally:
            s.close()
    return out
'''
