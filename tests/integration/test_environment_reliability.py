"""Environments over a long run, end to end (boto3 against a real `lambdalet serve`): discarding an
environment leaks nothing of the server's (descriptors), and an idle environment that died is
replaced, not blamed on the next call (issue 19, items 1 and 5).

As root the server runs the namespace sandbox; otherwise `--sandbox process` (no cgroups, so the
descriptor tests then only show the process backend does not leak either).
"""
from __future__ import annotations

import json
import os
import resource
import time

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, describe, make_zip, unique

IS_ROOT = os.geteuid() == 0
CRASH = "import os\ndef handler(event, context):\n    os._exit(1)\n"
WHO = ("import os, uuid\nENV_ID = uuid.uuid4().hex\n"
       "def handler(event, context):\n    return {'env': ENV_ID, 'uid': os.getuid(), 'pid': os.getpid()}\n")


def create(lam, code: str, prefix: str, **kw) -> str:
    name = unique(prefix)
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": code})}, Timeout=10, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def invoke(lam, name: str, event=None) -> tuple[dict, object]:
    try:
        resp = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    except ClientError as e:
        raise AssertionError(f"Invoke {name} failed at the API: {describe(e)}") from None
    raw = resp.pop("Payload").read()
    return resp, (json.loads(raw) if raw else None)


def crash(lam, name: str) -> None:
    resp, payload = invoke(lam, name)
    assert resp["StatusCode"] == 200 and resp.get("FunctionError") == "Unhandled", payload
    assert payload["errorType"] == "Runtime.ExitError", payload


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, floor_for_s: float = 1.0) -> int:
    """The server's descriptor count once background work (slot refills, the reaper) has settled: the
    lowest count seen over a short window."""
    end, low = time.monotonic() + floor_for_s, open_fds(pid)
    while time.monotonic() < end:
        time.sleep(0.05)
        low = min(low, open_fds(pid))
    return low


# ------------------------------------------------------------------------------------ descriptors

def test_a_crash_looping_function_leaks_no_descriptors(function_server):
    """Every crash discards an environment; the server's open descriptors must not grow with them
    (they grew by one per discarded environment: the cgroup's freezer.state, reopened after destroy)."""
    lam = function_server.client()
    name = create(lam, CRASH, "crashloop")
    for _ in range(5):                      # warm up: slots, caches, connections
        crash(lam, name)
    before = settled_fds(function_server.pid)
    n = 40
    for _ in range(n):
        crash(lam, name)
    after = settled_fds(function_server.pid)
    assert after - before < n // 4, f"{after - before} more descriptors after {n} crashes ({before} -> {after})"


def test_invocations_keep_working_past_a_low_descriptor_limit(lambdalet_server_factory):
    """With RLIMIT_NOFILE lowered to a little above what the server holds, more crashes than that
    headroom still each answer Runtime.ExitError (a leak made them answer 500 once it was used up)."""
    srv = lambdalet_server_factory(*(() if IS_ROOT else ("--sandbox", "process")))
    lam = srv.client()
    name = create(lam, CRASH, "crashlimit")
    for _ in range(3):
        crash(lam, name)
    headroom = 48
    soft, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (settled_fds(srv.pid) + headroom, hard))
    try:
        for _ in range(2 * headroom):
            crash(lam, name)
    finally:
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------------------ dead idle environments

def _own_pid_ns() -> str:
    return os.readlink("/proc/self/ns/pid")


def _host_pids(info: dict) -> tuple[list[int], int]:
    """(every host pid of the environment, the host pid of its runtime) from what WHO returned: under
    the namespace sandbox the processes of its own host uid; under `process`, its process group."""
    pids, runtime = [], None
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = dict(line.split(":", 1) for line in open(f"/proc/{d}/status").read().splitlines() if ":" in line)
            pgid = os.getpgid(int(d))
        except (OSError, ValueError):
            continue
        if status["State"].split()[0] in ("Z", "X"):
            continue
        mine = (int(status["Uid"].split()[0]) == info["uid"] if info["ns"] != _own_pid_ns()
                else pgid == info["pgid"])
        if mine:
            pids.append(int(d))
            if int(status["NSpid"].split()[-1]) == info["pid"]:
                runtime = int(d)
    assert pids and runtime, f"the environment's processes were not found: {info}"
    return pids, runtime


WHO_NS = WHO.replace("'pid': os.getpid()}", "'pid': os.getpid(), 'pgid': os.getpgid(0), "
                                            "'ns': os.readlink('/proc/self/ns/pid')}")


@pytest.mark.parametrize("victims", ["all", "runtime"])
def test_an_environment_killed_while_idle_does_not_fail_the_next_call(function_server, victims):
    """SIGKILL the processes of a frozen (idle) environment: all of them, or only its runtime. The next
    Invoke must run on a fresh environment and succeed: it never ran in the dead one (it answered
    Runtime.ExitError)."""
    lam = function_server.client()
    name = create(lam, WHO_NS, f"idle-{victims}")
    resp, first = invoke(lam, name)
    assert "FunctionError" not in resp, first
    resp, again = invoke(lam, name)
    assert again["env"] == first["env"], "no warm environment: the test would prove nothing"
    time.sleep(0.2)                                      # released: frozen in the pool
    pids, runtime = _host_pids(again)
    for pid in (pids if victims == "all" else [runtime]):
        os.kill(pid, 9)
    for _ in range(3):
        resp, after = invoke(lam, name)
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, after
        assert after["env"] != first["env"]
    assert len({invoke(lam, name)[1]["env"] for _ in range(2)}) == 1   # the fresh one is kept warm


# ------------------------------------------------------------------------ data dir and leftovers

def _args() -> tuple[str, ...]:
    return () if IS_ROOT else ("--sandbox", "process")


def _instance(data_dir) -> str:
    import hashlib
    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]


def _run_dir(data_dir):
    from pathlib import Path
    return Path("/dev/shm") / f"lambdalet-{_instance(data_dir)}"


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_data_files_are_private_from_the_start(lambdalet_server_factory):
    srv = lambdalet_server_factory(*_args())
    lam = srv.client()
    name = create(lam, WHO, "private")
    invoke(lam, name)                                     # writes: the WAL and shared-memory files exist
    assert _mode(srv.data_dir) == 0o700
    db = srv.data_dir / "state.db"
    files = [p for p in (db, db.with_name("state.db-wal"), db.with_name("state.db-shm")) if p.exists()]
    assert len(files) == 3, files
    for p in files:
        assert _mode(p) == 0o600, (p, oct(_mode(p)))


def test_loose_permissions_are_fixed_at_start_with_a_warning(lambdalet_server_factory, tmp_path):
    data = tmp_path / "loose"
    srv = lambdalet_server_factory(*_args(), data_dir=data)
    srv.stop()
    os.chmod(data, 0o755)
    os.chmod(data / "state.db", 0o644)
    srv.start()
    assert _mode(data) == 0o700 and _mode(data / "state.db") == 0o600
    assert "data dir permissions" in srv.log_text(), srv.log_text()


def test_sigterm_leaves_no_run_dir(lambdalet_server_factory):
    srv = lambdalet_server_factory(*_args())
    lam = srv.client()
    invoke(lam, create(lam, WHO, "runsigterm"))          # unpacked code, environments, slots
    run_dir = _run_dir(srv.data_dir)
    assert run_dir.is_dir()
    srv.stop()
    assert srv.proc.returncode in (0, -15)
    assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())


def _cgroup_dirs(instance: str) -> list[str]:
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d == f"lambdalet-{instance}":
                found.append(os.path.join(root, d))
        if root.count("/") > 8:
            dirs[:] = []
    return found


def test_a_new_server_cleans_what_a_killed_one_left(lambdalet_server_factory):
    """kill -9 leaves the victim's run dir (its unpacked code, in plain text) and, under the namespace
    sandbox, its cgroups (one environment frozen); any server starting on the host removes them."""
    victim = lambdalet_server_factory(*_args())
    lam = victim.client()
    invoke(lam, create(lam, WHO, "victim"))              # an idle, frozen environment and unpacked code
    instance, run_dir = _instance(victim.data_dir), _run_dir(victim.data_dir)
    victim.proc.kill()
    victim.proc.wait(10)
    time.sleep(0.3)
    assert any(run_dir.rglob("*")), "nothing was left behind: the test would prove nothing"
    if IS_ROOT:
        assert _cgroup_dirs(instance), "no cgroups were left behind"
    other = lambdalet_server_factory(*_args())             # another data dir, another instance
    assert not run_dir.exists(), sorted(str(p) for p in run_dir.rglob("*"))[:20]
    assert _cgroup_dirs(instance) == []
    with open("/proc/self/mountinfo") as f:
        assert str(run_dir) not in f.read()
    assert other.proc.poll() is None     # (whichever server started first cleaned it: any server does)


@pytest.mark.skipif(not IS_ROOT, reason="a mount namespace of the server's own needs root")
def test_a_killed_server_leaves_no_plaintext_code_even_before_the_next_start(lambdalet_server_factory):
    """The server's mounts (unpacked code and layers) live in a mount namespace of its own, which ends
    with its processes: after kill -9 no tenant code is readable on the host, with no server to clean."""
    victim = lambdalet_server_factory(*_args())
    lam = victim.client()
    marker = f"PLAINTEXT-{os.urandom(6).hex()}"
    name = create(lam, WHO + f"\nMARK = {marker!r}\n", "plain")
    invoke(lam, name)
    run_dir = _run_dir(victim.data_dir)
    with open(f"/proc/{victim.pid}/mountinfo") as f:
        assert str(run_dir / "code") in f.read(), "the code is not on a mount of its own: nothing to prove"
    with open("/proc/self/mountinfo") as f:
        assert str(run_dir) not in f.read(), "the server's mounts reached the host's mount table"
    victim.proc.kill()
    victim.proc.wait(10)
    deadline = time.time() + 10
    while True:
        found = [p for p in run_dir.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
        if not found or time.time() > deadline:
            break
        time.sleep(0.2)              # the environments die with their parent (PDEATHSIG) a moment later
    assert found == [], found
