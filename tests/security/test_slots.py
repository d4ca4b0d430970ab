"""Pre-isolated slots (sandbox/slots.py) against hostile functions (root only).

A slot's /var/task, /opt and /tmp arrive by mount propagation from its directory, a shared mount in
the fork server's own mount namespace (the slot's copies are slaves). These tests check what that must
not change: the code is read-only and nosuid/nodev inside, two slots never see each other's code or
/tmp, nothing mounted inside reaches the fork server's namespace or the host's (whose mount table
never changes at all), /tmp has the function's EphemeralStorage size, a slot serves one environment
and never goes back, and nothing of a slot survives its environment or the backend.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, namespace_unavailable_reason, write_code

from .hostile_support import TMP_FILL   # the /tmp filler of test_hostile.py, here in a claimed slot

pytestmark = pytest.mark.root
UID_BASE, UID_COUNT = 320_000, 200

INSPECT = r'''
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def err(rc):
    return 0 if rc == 0 else ctypes.get_errno()
def handler(event, context):
    out = {"task": sorted(os.listdir("/var/task")), "tmp_before": sorted(os.listdir("/tmp")),
           "opt": sorted(os.listdir("/opt")), "root": sorted(os.listdir("/"))}
    open("/tmp/" + event["mark"], "w").write(event["mark"])
    st = os.statvfs("/tmp")
    out["tmp_mb"] = st.f_blocks * st.f_frsize // (1 << 20)
    try:
        open("/var/task/evil", "w"); out["write_task"] = 0
    except OSError as e:
        out["write_task"] = e.errno
    # every way to mount or unmount, aimed at the propagated mounts
    out["mount_tmp"] = err(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    out["mount_task"] = err(libc.mount(b"none", b"/var/task", b"tmpfs", 0, None))
    out["remount_rw"] = err(libc.mount(None, b"/var/task", None, 32 | 4096, None))   # MS_REMOUNT|MS_BIND
    out["umount_task"] = err(libc.umount2(b"/var/task", 2))
    out["umount_tmp"] = err(libc.umount2(b"/tmp", 2))
    out["open_tree"] = err(libc.syscall(428, -100, b"/var/task", 1))
    out["fsopen"] = err(libc.syscall(430, b"tmpfs", 0))
    out["mount_setattr"] = err(libc.syscall(442, -100, b"/var/task", 0, None, 0))
    out["mounts"] = open("/proc/self/mountinfo").read()
    for p in ("/etc/shadow", "/root", "/home", "/work", "/run", "/dev/shm", "/sys/fs/cgroup"):
        out["exists:" + p] = os.path.exists(p)
    out["uid"] = os.getuid()
    return out
'''


def _host_mounts(pid: str = "self") -> set[str]:
    """Mount points as `pid` sees them (the fork server's pid: its own namespace, where slots' mounts are)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[4] for line in f}


@pytest.fixture
def backend(tmp_path):
    reason = namespace_unavailable_reason()
    if reason:
        pytest.skip(reason)
    before = _host_mounts()
    b = open_backend("namespace", uid_base=UID_BASE, uid_count=UID_COUNT, slots=2,
                     cgroup_parent=f"lambdalet-slots-{os.getpid()}", root_dir=str(tmp_path / "run" / "root"))
    assert b.slots is not None and b.slots.wait_full(10)
    yield b
    b.close()
    assert _host_mounts() == before, "a slot left a mount behind"
    assert not os.path.exists(b.slots_dir)


def _claimed(backend, tmp_path, name: str, code: str = INSPECT, **kw):
    assert backend.slots.wait_full(10)
    d = write_code(str(tmp_path / name), {"app.py": code, "data.txt": name})
    sb = backend.create(make_spec(d, name=name, **kw))
    sb.start()
    assert sb.stats().get("slot") is True, "not started from a slot"
    return sb


def _call(sb, event):
    r = sb.invoke(make_request(sb.spec, json.dumps(event).encode()))
    assert r.function_error is None, (r.payload, r.log_tail)
    return json.loads(r.payload)


def test_claimed_slot_sees_its_code_read_only_and_nothing_of_the_host(backend, tmp_path):
    sb = _claimed(backend, tmp_path, "fn-a", ephemeral_mb=48)
    try:
        p = _call(sb, {"mark": "a"})
        assert p["task"] == ["app.py", "data.txt"] and p["opt"] == [] and p["tmp_before"] == []
        assert p["write_task"] == 30                                   # EROFS
        for k in ("mount_tmp", "mount_task", "remount_rw", "umount_task", "umount_tmp", "open_tree", "fsopen",
                  "mount_setattr"):
            assert p[k] == 1, (k, p[k])                                # EPERM: seccomp, no capabilities
        for path in ("/etc/shadow", "/root", "/home", "/work", "/run", "/dev/shm", "/sys/fs/cgroup"):
            assert p["exists:" + path] is False, path
        assert p["uid"] >= UID_BASE
        task = [line.split() for line in p["mounts"].splitlines() if line.split()[4] == "/var/task"]
        top = task[-1]                                                 # the propagated code mount, on top
        assert top[3] == os.path.realpath(sb.spec.code_dir) and {"ro", "nosuid", "nodev"} <= set(top[5].split(","))
        assert all("ro" in fields[5].split(",") for fields in task)
    finally:
        sb.destroy()


def test_two_claimed_slots_never_see_each_other(backend, tmp_path):
    a = _claimed(backend, tmp_path, "fn-a")
    b = _claimed(backend, tmp_path, "fn-b")
    try:
        pa, pb = _call(a, {"mark": "from-a"}), _call(b, {"mark": "from-b"})
        assert pa["tmp_before"] == [] and pb["tmp_before"] == []       # b's /tmp does not hold a's file
        pa2 = _call(a, {"mark": "again-a"})
        assert pa2["tmp_before"] == ["from-a"]                          # a's own /tmp persists, alone
        assert a.stats()["pids"] != b.stats()["pids"] and pa["uid"] != pb["uid"]
        for own, other in ((pa, b), (pb, a)):
            assert os.path.realpath(other.spec.code_dir) not in own["mounts"]
            assert os.path.basename(other._slot_dir) not in own["mounts"]
        # and the fork server's side: each slot directory holds its own function's code
        inside = f"/proc/{backend.zygote.pid}/root"
        assert open(f"{inside}{a._slot_dir}/task/data.txt").read() == "fn-a"
        assert open(f"{inside}{b._slot_dir}/task/data.txt").read() == "fn-b"
        assert not os.path.exists(f"{a._slot_dir}/task/data.txt")        # the host sees empty directories
    finally:
        a.destroy()
        b.destroy()


def test_mounts_never_propagate_out_of_a_slot(backend, tmp_path):
    before = _host_mounts()
    zygote = str(backend.zygote.pid)
    sb = _claimed(backend, tmp_path, "fn-a")
    slot_dir = sb._slot_dir
    try:
        p = _call(sb, {"mark": "a"})
        assert p["mount_tmp"] == 1 and p["mount_task"] == 1       # the tenant cannot mount at all
        # Even root inside the slot's mount namespace (what an escape to CAP_SYS_ADMIN would be) mounts
        # nothing the host sees: the slot's /var/task and /tmp are slaves, which send nothing back.
        init = min(sb.stats()["pids"])
        for target in ("/var/task", "/tmp", "/var/task/inner"):
            subprocess.run(["nsenter", "-t", str(init), "-m", "mount", "-t", "tmpfs", "escape", target],
                           capture_output=True)
        inside = subprocess.run(["nsenter", "-t", str(init), "-m", "cat", "/proc/1/mountinfo"],
                                capture_output=True, text=True, check=True).stdout
        assert " escape " in inside, "the test mount was not made inside"
        for pid in ("self", zygote):
            with open(f"/proc/{pid}/mountinfo") as f:
                assert " escape " not in f.read(), pid
        assert _host_mounts() == before                            # the host's mount table: nothing, ever
        # the fork server's namespace: the slot dir, what it mounted for the claim, nothing from inside
        assert {m for m in _host_mounts(zygote) if m.startswith(slot_dir)} == \
            {slot_dir, f"{slot_dir}/task", f"{slot_dir}/tmp"}
    finally:
        sb.destroy()
    assert not [m for m in _host_mounts(zygote) if m.startswith(slot_dir)] and not os.path.exists(slot_dir)


@pytest.mark.parametrize("ephemeral_mb", [32, 600])
def test_slot_tmp_is_sized_as_ephemeral_storage(backend, tmp_path, ephemeral_mb):
    sb = _claimed(backend, tmp_path, "fn-fill", TMP_FILL, ephemeral_mb=ephemeral_mb, memory_mb=1024, timeout_s=20)
    try:
        p = _call(sb, {})
        assert p["errno"] == 28 and ephemeral_mb - 4 <= p["mb"] <= ephemeral_mb   # ENOSPC at EphemeralStorage
    finally:
        sb.destroy()


def test_one_slot_one_environment(backend, tmp_path):
    """A slot is claimed once, never handed out again, and was never a tenant's before: it carries
    none of a previous environment's files, variables or processes."""
    seen = set()
    for i in range(4):
        sb = _claimed(backend, tmp_path, f"fn-{i}", env={"MARK": str(i)})
        slot_dir = sb._slot_dir
        try:
            p = _call(sb, {"mark": f"m{i}"})
            assert p["tmp_before"] == [] and slot_dir not in seen
            assert slot_dir not in {s.dir for q in backend.slots._idle.values() for s in q}
            seen.add(slot_dir)
        finally:
            sb.destroy()
        assert not os.path.exists(slot_dir) and sb.cgroup is None and sb._slot_dir is None
    assert len(seen) == 4


def test_claimed_slot_gets_the_functions_memory_limit(backend, tmp_path):
    sb = _claimed(backend, tmp_path, "fn-mem", memory_mb=300)
    try:
        mem = sb.cgroup.dirs.get("memory") or sb.cgroup.dirs["unified"]
        name = "memory.limit_in_bytes" if "memory" in sb.cgroup.dirs else "memory.max"
        assert int(open(os.path.join(mem, name)).read()) == 300 * 1024 * 1024
    finally:
        sb.destroy()


def test_a_dead_slot_is_not_claimed(backend, tmp_path):
    """A slot whose init died while idle is destroyed at the claim and the environment is built anew."""
    slot = backend.slots._idle[next(iter(backend.slots._idle))][0]
    for pid in slot.cgroup.pids():
        try:
            os.kill(pid, 9)
        except ProcessLookupError:     # gone already: killing its PID 1 ends the whole pid namespace
            pass
    time.sleep(0.1)
    d = write_code(str(tmp_path / "code"), {"app.py": "def handler(e, c):\n    return 'fine'\n"})
    sb = backend.create(make_spec(d))
    try:
        sb.start()
        assert sb.stats().get("slot") is not True
        assert _call(sb, {}) == "fine"
        assert not os.path.exists(slot.dir)
    finally:
        sb.destroy()


def test_idle_slots_expire(tmp_path):
    reason = namespace_unavailable_reason()
    if reason:
        pytest.skip(reason)
    b = open_backend("namespace", uid_base=UID_BASE, uid_count=UID_COUNT, slots=1, slot_ttl_s=0.5,
                     cgroup_parent=f"lambdalet-slots-{os.getpid()}", root_dir=str(tmp_path / "run" / "root"))
    try:
        assert b.slots.wait_full(10)
        end = time.monotonic() + 5
        while b.counts()["idle_slots"] and time.monotonic() < end:
            time.sleep(0.05)
        assert b.counts()["idle_slots"] == 0                     # expired, and not rebuilt without demand
        time.sleep(0.3)
        assert b.counts()["idle_slots"] == 0 and os.listdir(b.slots_dir) == []
        with open(f"/proc/{b.zygote.pid}/mountinfo") as f:
            assert b.slots_dir not in f.read()
    finally:
        b.close()
