"""Crash recovery of the namespace backend: environments die with the server (even on SIGKILL), and a
backend opened on the same cgroup parent / root dir cleans up what a crashed one left behind."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from lambdalet.sandbox import mounts, open_backend
from lambdalet.sandbox.cgroups import Cgroup, Limits, detect_version, kill_and_remove, parent_dirs
from lambdalet.sandbox.testing import make_request, make_spec, namespace_unavailable_reason, write_code

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(namespace_unavailable_reason() is not None, reason=str(namespace_unavailable_reason()))]

SRC = str(Path(__file__).resolve().parents[2] / "src")
APP = "import os, time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return os.getpid()\n"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):      # gone, or reaped between open and read
        return False


def _wait_gone(pids, timeout_s: float = 5.0) -> list[int]:
    end = time.monotonic() + timeout_s
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < end:
        time.sleep(0.02)
    return left


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture
def names(tmp_path):
    parent = f"lambdalet-test-{uuid.uuid4().hex[:8]}"
    root = str(tmp_path / "run" / "root")
    yield parent, root
    for d in parent_dirs(parent).values():      # in case a test failed half-way
        if os.path.isdir(d):
            for sub in [r for r, _, _ in os.walk(d, topdown=False)]:   # deepest first; best effort
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


def test_open_cleans_frozen_cgroup_mounts_and_dirs(names):
    parent, root = names
    os.makedirs(root)
    # a leftover environment: a process frozen in its cgroup, as a SIGKILLed server leaves it, its
    # parent-death SIGKILL pending (v1 keeps it frozen all the same until thawed)
    cg = Cgroup.create("fn-deadbeef-01234567", Limits(128), parent=parent)
    sleeper = subprocess.Popen(["sleep", "1000"])
    cg.attach(sleeper.pid)
    cg.freeze()
    sleeper.send_signal(signal.SIGKILL)
    time.sleep(0.05)
    if detect_version() == 1:
        assert sleeper.poll() is None, "a frozen task acted on SIGKILL?"
    # a group left in only one controller (a crash between mkdirs), nested one level
    partial = next(iter(parent_dirs(parent).values())) + "/half-made"
    os.makedirs(partial + "/inner")
    # a mount and a mount point left under the root dir
    os.makedirs(f"{root}/stale/tmp")
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mount(b"tmpfs", f"{root}/stale/tmp".encode(), b"tmpfs", 0, b"size=1m") == 0
    assert _mounted(f"{root}/stale/tmp")

    backend = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    try:
        assert sleeper.wait(timeout=5) == -signal.SIGKILL       # thawed and killed
        assert not cg.exists() and not os.path.exists(partial)
        assert not _mounted(f"{root}/stale/tmp") and os.listdir(root) == []
        # and the backend works afterwards
        sb = backend.create(make_spec(write_code(f"{root}-code", {"app.py": APP})))
        sb.start()
        assert sb.invoke(make_request(sb.spec)).function_error is None
        sb.destroy()
    finally:
        backend.close()
    assert not any(os.path.isdir(d) for d in parent_dirs(parent).values())


def test_kill_and_remove_empties_a_frozen_group_whose_members_sit_in_a_nested_group(names):
    """v1: a nested group of a FROZEN group is frozen through its parent; thawing only the nested one
    thaws nothing. The whole subtree is one unit, or a SIGKILLed member there stays frozen for ever."""
    parent, _ = names
    cg = Cgroup.create("fn-nested-01234567", Limits(128), parent=parent)
    inner = {c: f"{d}/inner" for c, d in cg.dirs.items()}
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        for d in inner.values():
            os.makedirs(d)
            Path(d, "cgroup.procs").write_text(str(sleeper.pid))
        cg.freeze()
        sleeper.send_signal(signal.SIGKILL)           # pending, as the parent-death SIGKILL would be
        assert kill_and_remove(cg.dirs, timeout_s=3) == [sleeper.pid]
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        assert not cg.exists() and not any(os.path.isdir(d) for d in inner.values())
    finally:
        if sleeper.poll() is None:
            cg.thaw()
            sleeper.kill()
            sleeper.wait()


def test_cleanup_never_touches_a_live_backend(names, tmp_path):
    parent, root = names
    a = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    try:
        sb = a.create(make_spec(write_code(str(tmp_path / "code"), {"app.py": APP})))
        sb.start()
        sb.freeze()
        assert a.cleanup_stale() == []            # its own live environments are not stale
        b = open_backend("namespace", cgroup_parent=parent, root_dir=root)   # a second user: no clean-up
        b.close()
        r = sb.invoke(make_request(sb.spec))
        assert r.function_error is None and sb.alive
        sb.destroy()
    finally:
        a.close()


def test_running_environment_dies_with_a_sigkilled_zygote(names, tmp_path):
    parent, root = names
    backend = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    try:
        sb = backend.create(make_spec(write_code(str(tmp_path / "code"), {"app.py": APP})))
        sb.start()
        pids = sb.stats()["pids"]
        assert pids
        os.kill(backend.zygote.pid, signal.SIGKILL)
        assert _wait_gone(pids) == []             # PID 1's parent-death signal took the namespace down
        sb.destroy()
    finally:
        backend.close()


def _sigterm_storm(zygote: int) -> None:
    """What a SIGKILLed server does to its zygote: one parent-death SIGTERM per server thread that exits
    (each exit re-parents the zygote to a surviving thread, and PR_SET_PDEATHSIG fires on every
    re-parenting), spread over the server's death; here, as densely as we can, from another CPU."""
    cpus, mine = sorted(os.sched_getaffinity(0)), os.sched_getaffinity(0)
    if len(cpus) > 1:
        os.sched_setaffinity(zygote, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:                 # until reaped (a zombie still takes signals)
            try:
                for _ in range(100):
                    os.kill(zygote, signal.SIGTERM)
            except ProcessLookupError:
                break
    finally:
        os.sched_setaffinity(0, mine)


def _two_stop_signals_at_once(zygote: int) -> None:
    """Deterministic: SIGINT and SIGTERM pending together when the zygote wakes up, so a second stop
    signal is due while the first one's exception is unwinding (it used to land in the `finally`)."""
    os.kill(zygote, signal.SIGSTOP)
    end = time.monotonic() + 5
    while Path(f"/proc/{zygote}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < end, "zygote did not stop"
        time.sleep(0.001)
    os.kill(zygote, signal.SIGINT)
    os.kill(zygote, signal.SIGTERM)
    os.kill(zygote, signal.SIGCONT)


@pytest.mark.parametrize("stop", [_two_stop_signals_at_once, _sigterm_storm], ids=["two-at-once", "storm"])
def test_stop_signals_while_the_zygote_exits_never_skip_its_clean_up(names, tmp_path, stop):
    """A stop signal landing while the zygote is already on its way out must not cut its clean-up
    short: a frozen environment's PID 1 would keep its own parent-death SIGKILL pending for ever
    (frozen, re-parented to init), as after 1 in 5 SIGKILLs of a server."""
    parent, root = names
    backend = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    dirs: dict[str, str] = {}
    try:
        sb = backend.create(make_spec(write_code(str(tmp_path / "code"), {"app.py": APP})))
        sb.start()
        sb.invoke(make_request(sb.spec))
        sb.freeze()
        dirs, pids, zygote = dict(sb.cgroup.dirs), sb.stats()["pids"], backend.zygote.pid
        assert pids
        stop(zygote)
        assert _wait_gone([zygote]) == []
        assert _wait_gone(pids) == [], "a frozen environment outlived its zygote"
        assert not any(os.path.isdir(d) for d in dirs.values())
        sb.destroy()
    finally:
        backend.close()
        if dirs:                                      # never leave a frozen orphan behind
            kill_and_remove(dirs)

SERVER = textwrap.dedent("""
    import json, sys, time
    from lambdalet.sandbox import open_backend
    from lambdalet.sandbox.testing import make_request, make_spec, write_code
    parent, root, code = sys.argv[1:4]
    b = open_backend("namespace", cgroup_parent=parent, root_dir=root, slots=int(sys.argv[5]))
    ready = lambda: b.slots is None or b.slots.wait_full(10)
    ready()
    frozen = b.create(make_spec(write_code(code, {"app.py": sys.argv[4]})))
    frozen.start(); frozen.invoke(make_request(frozen.spec)); frozen.freeze()
    ready()
    busy = b.create(make_spec(code))
    busy.start()
    ready()
    idle = [s for q in b.slots._idle.values() for s in q] if b.slots else []
    print(json.dumps({"zygote": b.zygote.pid, "slots_dir": b.slots_dir,
                      "from_slots": [s.stats().get("slot", False) for s in (frozen, busy)],
                      "pids": frozen.stats()["pids"] + busy.stats()["pids"] + [p for s in idle for p in s.cgroup.pids()],
                      "cgroups": [d for s in (frozen, busy) for d in s.cgroup.dirs.values()]
                                 + [d for s in idle for d in s.cgroup.dirs.values()]}), flush=True)
    busy.invoke(make_request(busy.spec, b'{"sleep": 60}', timeout_s=60))
""")


@pytest.mark.parametrize("slots", [0, 2], ids=["fresh", "slots"])
def test_sigkilled_server_leaves_nothing(names, tmp_path, slots):
    """A server SIGKILLed with one frozen and one busy environment (and, with slots, two idle slots and
    the mounts of the claimed ones): within seconds no process, no cgroup, no slot mount and no slot
    directory of it remain (the zygote notices, thaws, kills, and its mount namespace ends with it);
    nothing is left for a restart to find."""
    parent, root = names
    proc = subprocess.Popen([sys.executable, "-c", SERVER, parent, root, str(tmp_path / "code"), APP, str(slots)],
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": SRC})
    try:
        info = json.loads(proc.stdout.readline())
        assert info["from_slots"] == [bool(slots)] * 2
        if slots:                                 # in the fork server's own mount namespace, never the host's
            with open(f"/proc/{info['zygote']}/mountinfo") as f:
                inside = [line.split()[4] for line in f if line.split()[4].startswith(info["slots_dir"] + "/")]
            assert len(inside) >= 4 + 2 * 2, inside             # 4 slot dirs, 2 codes, 2 /tmp
            assert mounts.mount_points(info["slots_dir"]) == []
        time.sleep(0.3)                           # the busy one is inside its handler now
        assert all(_alive(p) for p in info["pids"])
        proc.kill()
        proc.wait()
        assert _wait_gone(info["pids"] + [info["zygote"]]) == []
        end = time.monotonic() + 5
        while (any(os.path.isdir(d) for d in info["cgroups"]) or mounts.mount_points(info["slots_dir"])) \
                and time.monotonic() < end:
            time.sleep(0.05)
        assert not any(os.path.isdir(d) for d in info["cgroups"])
        assert mounts.mount_points(info["slots_dir"]) == []
        assert not os.path.exists(info["slots_dir"]) or os.listdir(info["slots_dir"]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    backend = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    try:
        assert backend.cleanup_stale() == []
    finally:
        backend.close()


def test_open_cleans_stale_slot_mounts(names, tmp_path):
    """Slot leftovers on the host (directories of a SIGKILLed fork server; mounts, had any been made in
    the host's namespace): the next backend on the same root unmounts and removes them."""
    parent, root = names
    slot = f"{root}-slots/slot-0123456789ab"
    for sub in ("task", "opt", "tmp"):
        os.makedirs(f"{slot}/{sub}")
    code = write_code(str(tmp_path / "code"), {"app.py": APP})
    mounts.make_shared_dir(slot)
    mounts.bind_readonly(code, f"{slot}/task")
    mounts.mount_tmpfs(f"{slot}/tmp", 4)
    with open(f"{slot}/tmp/tenant-file", "w") as f:
        f.write("left behind")
    assert len(mounts.mount_points(slot)) == 3
    backend = open_backend("namespace", cgroup_parent=parent, root_dir=root)
    try:
        assert mounts.mount_points(f"{root}-slots") == [] and os.listdir(f"{root}-slots") == []
        assert os.listdir(code) == ["app.py"]                 # the code dir itself is untouched
    finally:
        backend.close()
    assert not os.path.exists(f"{root}-slots")


def test_cgroup_version_is_known():
    assert detect_version() in (1, 2)
