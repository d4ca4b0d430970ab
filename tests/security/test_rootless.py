"""The hostile-function suite against a ROOTLESS server (sandbox/rootless.py): `lambdalet serve` run by
the test as a fresh unprivileged user (rootless_support.py), driven through boto3 only.

The attacks are test_hostile.py's; what rootless mode cannot give (one host uid for all environments,
no cgroup limits, no egress) is what the server says at start-up and in `lambdalet status`, checked
first. Functions see uid 993 (AWS's sbx_user1051), mapped to the server's own host uid.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

from polling import eventually

from .hostile_support import ATTACKS, CONNECT, create, host_addresses, invoke, ok
from .rootless_support import rootless_server_fixture

pytestmark = pytest.mark.root
ENV_UID = 993


@pytest.fixture(scope="module")
def rootless(tmp_path_factory):
    yield from rootless_server_fixture()


@pytest.fixture(scope="module")
def lam(rootless):
    return rootless[0].client()


@pytest.fixture(scope="module")
def attacks(lam):
    """One run of test_hostile.ATTACKS, shared by the tests that read its report."""
    return ok(lam, create(lam, ATTACKS))


@pytest.fixture(scope="module")
def serving(lam):
    name = create(lam, "def handler(event, context):\n    return {'n': event['n']}\n", prefix="canary")
    n = iter(range(1_000_000))

    def check() -> None:
        i = next(n)
        assert ok(lam, name, {"n": i}) == {"n": i}
    return check


def _other_pid_namespaces(user, server_pid: int) -> set[int]:
    """The user's processes outside the server's PID namespace: its environments' (host pids)."""
    mine = os.stat(f"/proc/{server_pid}/ns/pid").st_ino
    out = set()
    for pid in user.processes():
        try:
            if os.stat(f"/proc/{pid}/ns/pid").st_ino != mine:
                out.add(pid)
        except FileNotFoundError:
            pass
    return out


def test_start_up_and_status_say_rootless_and_what_is_missing(rootless):
    srv, user = rootless
    log = srv.log_text(20000)
    assert "isolation: rootless" in log, log
    assert "Permission denied" not in log, log         # e.g. root's run dirs in /dev/shm: not its to sweep
    for missing in ("per-environment host uid", "cgroup limits", "egress"):
        assert f"ISOLATION MISSING (rootless): {missing}" in log, (missing, log)
    doc = srv.status()
    assert doc["running"] and doc["isolation"]["mode"] == "rootless"
    assert doc["isolation"]["host_uid"] == user.uid and doc["isolation"]["env_uid"] == ENV_UID
    assert any(m.startswith("cgroup limits") for m in doc["isolation"]["missing"])
    text = srv.status_text()
    assert "isolation: rootless" in text and "isolation MISSING: egress" in text, text


def test_the_server_runs_as_the_user_without_privilege(rootless):
    srv, user = rootless
    status = dict(line.split(":", 1) for line in open(f"/proc/{srv.pid}/status").read().splitlines() if ":" in line)
    assert status["Uid"].split() == [str(user.uid)] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0


def test_privileged_operations_are_refused(attacks):
    p = attacks
    for k in ("mount", "umount", "unshare_user", "unshare_net", "ptrace_init", "setns", "chroot", "clone_newpid",
              "bpf", "keyctl", "personality", "userfaultfd", "perf_event_open", "kexec_load", "init_module"):
        assert p[k] == 1, (k, p[k])                     # EPERM: seccomp (or no capability), never success
    assert p["clone3"] == 38 and p["io_uring_setup"] == 38   # ENOSYS
    assert p["write_task"] == 30 and p["write_usr"] == 30 and p["write_root"] == 30   # EROFS


def test_host_files_are_invisible(attacks):
    p = attacks
    for path in ("/etc/shadow", "/root", "/root/.bash_history", "/home", "/work", "/sys/fs/cgroup",
                 "/var/run/docker.sock"):
        assert p["exists:" + path] is False, path
    assert "/work" not in p["mounts"] and " /root" not in p["mounts"]


def test_no_capabilities_no_new_privs_seccomp(attacks):
    p = attacks
    s = p["status"]
    assert p["uid"] == ENV_UID and s["Uid"].split() == [str(ENV_UID)] * 4 and s["Gid"].split() == [str(ENV_UID)] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(s[cap], 16) == 0, cap
    assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2" and s["Groups"] == ""


def test_sees_only_its_own_processes(attacks):
    p = attacks
    assert p["pids"][0] == 1 and len(p["pids"]) <= 3, p["pids"]
    assert p["hostname"] == "lambdalet"
    assert p["ifaces"] == ["lo"]                        # rootless: no egress, only loopback
    assert all(line.endswith(":/") for line in p["cgroup"].split()), p["cgroup"]   # its own cgroup namespace


def test_cannot_reach_host_services(lam, serving):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        name = create(lam, CONNECT)
        p = ok(lam, name, {"hosts": host_addresses(), "port": port})
        for host, outcome in p.items():
            assert outcome != "connected", (host, outcome)
        assert p["127.0.0.1"].startswith("ConnectionRefusedError")   # its own loopback: nobody listens
    finally:
        listener.close()
    serving()


THREAD_BOMB = r'''
import threading
def handler(event, context):
    threading.stack_size(64 * 1024)
    stop, started, err = threading.Event(), [], None
    for _ in range(4000):
        t = threading.Thread(target=stop.wait)
        try:
            t.start()
        except RuntimeError as e:
            err = str(e); break
        started.append(t)
    stop.set()
    for t in started:
        t.join()
    return {"started": len(started), "error": err}
'''


def test_tasks_are_bounded_per_environment(lam, serving):
    """RLIMIT_NPROC (tasks, counted per user namespace) stands in for pids.max: 1,024 per environment,
    and an environment at its limit leaves the others alone."""
    p = ok(lam, create(lam, THREAD_BOMB, Timeout=60))
    assert p["error"] and 900 < p["started"] < 1024, p
    serving()


TMP_FILL_AND_FREE = r'''
import os
def handler(event, context):
    n = 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"x" * (1 << 20)); f.flush(); n += 1
    except OSError as e:
        os.unlink("/tmp/fill")
        return {"mb": n, "errno": e.errno}
'''


def test_tmp_is_sized_as_ephemeral_storage(lam, serving):
    p = ok(lam, create(lam, TMP_FILL_AND_FREE, EphemeralStorage={"Size": 512}, MemorySize=1024, Timeout=60))
    assert p["errno"] == 28 and 500 <= p["mb"] <= 512, p
    serving()


SPAWNER = r'''
import os, time
def handler(event, context):
    for _ in range(5):
        if os.fork() == 0:
            os.setsid()                  # out of init's session and process group: still in its PID namespace
            time.sleep(300)
            os._exit(0)
    time.sleep(300)
'''


def test_timeout_ends_the_environment_and_everything_it_started(rootless, lam, serving):
    srv, user = rootless
    before = _other_pid_namespaces(user, srv.pid)
    name = create(lam, SPAWNER, Timeout=2)
    t0 = time.monotonic()
    resp, payload = invoke(lam, name)
    assert resp.get("FunctionError") == "Unhandled" and payload["errorType"] == "Sandbox.Timedout", payload
    assert time.monotonic() - t0 < 10
    assert eventually(lambda: _other_pid_namespaces(user, srv.pid) <= before, timeout=5), \
        "the timed-out environment's processes outlived it"
    serving()


def test_an_idle_environment_is_stopped_and_resumes(rootless, lam):
    """No cgroup freezer: an idle environment's processes are SIGSTOPped, and resumed on the next call."""
    srv, user = rootless
    name = create(lam, "import time\nn = 0\ndef handler(e, c):\n    global n\n    n += 1\n    return n\n")
    before = _other_pid_namespaces(user, srv.pid)
    assert ok(lam, name) == 1
    env = _other_pid_namespaces(user, srv.pid) - before

    def stopped() -> bool:
        states = []
        for pid in env:
            try:
                states.append(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass
        return bool(states) and all(s == "T" for s in states)
    assert env
    assert eventually(stopped, timeout=5), "the idle environment's processes were not stopped"
    assert ok(lam, name) == 2                        # the same environment, resumed


WRITE_SECRET = "def handler(event, context):\n    open('/tmp/secret', 'w').write(event['secret'])\n    return 'ok'\n"
LOOK_FOR_IT = r'''
import glob, os
def handler(event, context):
    found = []
    for path in ["/tmp/secret"] + glob.glob("/proc/*/root/tmp/secret") + glob.glob("/proc/*/cwd/../tmp/secret"):
        try:
            found.append((path, open(path).read()))
        except OSError:
            pass
    return {"found": found, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
'''


def test_another_functions_tmp_and_processes_are_invisible(lam):
    """Every environment runs as the same host uid here, so only the namespaces keep them apart."""
    secret = os.urandom(8).hex()
    assert ok(lam, create(lam, WRITE_SECRET), {"secret": secret}) == "ok"
    p = ok(lam, create(lam, LOOK_FOR_IT))
    assert not any(secret in content for _, content in p["found"]), p
    assert len(p["pids"]) <= 3, p["pids"]
