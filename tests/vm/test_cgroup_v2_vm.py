"""lambdalet on a real cgroup v2 kernel: Debian's own kernel, unified hierarchy only, systemd as PID 1.

The development and CI machines run a hybrid v1 layout, so cgroups.py's v2 code (delegation, moving
the server into a leaf) is otherwise proven against a fake cgroupfs only. Here a QEMU VM
(qemu_vm.py) runs `lambdalet serve` as the systemd service deploy/lambdalet.service ships
(Delegate=yes), and the host drives it with boto3 through a forwarded loopback port: invoke, the
memory limit (an allocating function is OOM-killed and answered as AWS does), freeze/thaw of an idle
environment, a timeout killing the environment's whole tree, and restarts (clean and crashed)
leaving nothing behind. Skipped, saying why, where QEMU or the image cannot be had; CI sets
LAMBDALET_VM_REQUIRED=1 so that there it fails instead.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import os
import shlex
import time
import uuid
import zipfile

import boto3
import pytest
from botocore.config import Config

from .qemu_vm import REPO, VM, Unavailable, build_image

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1800)]

GUEST_PORT = 8443
DATA = "/var/lib/lambdalet"
UNIT_CG = "/sys/fs/cgroup/system.slice/lambdalet.service"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
# CPU follows MemorySize (128 MB: 7% of a vCPU), and a TCG vCPU is ~50x slower than the host's:
# functions that start processes get more of it, and time
WARM_MB, WARM_TIMEOUT = 512, 300

HANDLER = '''
import os, subprocess, sys, time

TICKER = "import sys, time\\nn = 0\\nwhile True:\\n    n += 1\\n    open('/tmp/ticks', 'w').write(str(n))\\n    time.sleep(0.05)"

def ticks():
    try:
        return int(open("/tmp/ticks").read() or 0)
    except (OSError, ValueError):
        return 0

def handler(event, context):
    op = event.get("op")
    if op == "alloc":           # written, not just reserved: every page counts against memory.max
        hold = [b"\\x01" * (1 << 20) for _ in range(event["mb"])]
        return len(hold)
    if op == "ticker":          # a child that keeps running between invocations unless frozen
        if not os.path.exists("/tmp/ticker"):
            subprocess.Popen([sys.executable, "-S", "-c", TICKER, event["marker"]])
            open("/tmp/ticker", "w").close()
            while ticks() < 3:
                time.sleep(0.05)
        return {"ticks": ticks()}
    if op == "hang":            # a detached grandchild, then past the timeout
        subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(1000)", event["marker"]],
                         start_new_session=True)
        time.sleep(1000)
    return {"ok": True}
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    return buf.getvalue()


def _parse_env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        for word in words[1:] if words[:1] == ["export"] else words:
            k, sep, v = word.partition("=")
            if sep:
                out[k] = v
    return out


class Platform:
    """The VM's lambdalet service, seen from the host."""

    def __init__(self, vm: VM):
        self.vm = vm
        self.pid = 0
        self.env: dict[str, str] = {}

    def install_and_start(self) -> None:
        unit = (REPO / "deploy" / "lambdalet.service").read_text()
        self.vm.run(f"""set -e
cat > /etc/systemd/system/lambdalet.service <<'UNIT'
{unit}
UNIT
mkdir -p /etc/systemd/system/lambdalet.service.d
cat > /etc/systemd/system/lambdalet.service.d/vm.conf <<'UNIT'
[Service]
ExecStart=
ExecStart={REPO}/.venv/bin/lambdalet serve --data-dir {DATA} --host 0.0.0.0 --port {GUEST_PORT}
UNIT
systemctl daemon-reload
systemctl start lambdalet
""")
        self.wait_started()

    def wait_started(self, old_pid: int = 0, timeout: float = 900) -> None:
        """Until endpoint.json names a live server other than old_pid; then fetch its CA and keys."""
        end = time.monotonic() + timeout
        while True:
            out = self.vm.run(f"cat {DATA}/endpoint.json 2>/dev/null; echo; systemctl is-active lambdalet || true",
                              check=False)
            try:
                doc = json.loads(out.splitlines()[0])
            except (json.JSONDecodeError, IndexError):
                doc = {}
            pid = doc.get("pid", 0)
            if pid and pid != old_pid and self.vm.run(f"kill -0 {pid}", check=False) == "":
                break
            if time.monotonic() > end:
                raise AssertionError(f"lambdalet did not start in the VM:\n{self.journal()}")
            time.sleep(1)
        self.pid = pid
        self.wait_idle()
        if not self.env:                 # the data dir's: a restart keeps its CA and keys
            self.env = _parse_env(self.vm.run(f"{REPO}/.venv/bin/lambdalet env --data-dir {DATA}"))
            self.vm.run(f"cp {shlex.quote(self.env['AWS_CA_BUNDLE'])} /mnt/ctl/ca.pem")

    def wait_idle(self, timeout: float = 300) -> None:
        """Until the service's start-up work (building its pre-isolated slots) is done: under TCG on a
        busy host it takes minutes, and an invoke meanwhile can miss AWS's 10 s init limit."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            used = self.vm.run(f"grep usage_usec {UNIT_CG}/cpu.stat; sleep 3; grep usage_usec {UNIT_CG}/cpu.stat")
            a, b = (int(line.split()[1]) for line in used.splitlines())
            if b - a < 600_000:          # under a fifth of one CPU over those 3 s
                return
        raise AssertionError(f"lambdalet still busy after {timeout}s:\n{self.journal()}")

    def client(self, service: str = "lambda"):
        return boto3.session.Session().client(
            service, endpoint_url=f"https://127.0.0.1:{self.vm.host_port}", verify=str(self.vm.ctl / "ca.pem"),
            region_name=self.env.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=20, read_timeout=300))

    def journal(self) -> str:
        return self.vm.run("journalctl -u lambdalet --no-pager | tail -n 80", check=False)

    def environment_groups(self) -> set[str]:
        """The groups of environments and slots below the unit's (not the server's leaf, its parent
        group or the account groups: a restarted server makes those again, with the same names)."""
        out = self.vm.run(f"cd {UNIT_CG} && find . -mindepth 2 -type d")
        return {line[2:] for line in out.split() if not line.rsplit("/", 1)[1].startswith("acct-")}


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (the image build: debootstrap, chroot)")
    started = time.monotonic()
    try:
        image = build_image()
    except Unavailable as e:
        if os.environ.get("LAMBDALET_VM_REQUIRED") == "1":
            pytest.fail(f"LAMBDALET_VM_REQUIRED=1 but no VM: {e}", pytrace=False)
        pytest.skip(f"no VM: {e}")
    machine = VM(image, tmp_path_factory.mktemp("vm"), GUEST_PORT).start()
    print(f"\nVM image ready + booted in {time.monotonic() - started:.1f}s")
    yield machine
    machine.stop()


@pytest.fixture(scope="module")
def platform(vm):
    p = Platform(vm)
    p.install_and_start()
    return p


@pytest.fixture(scope="module")
def lam(platform):
    return platform.client()


def _function(lam, memory: int = 128, timeout: int = 60) -> str:
    name = f"vm-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": _zip()}, MemorySize=memory, Timeout=timeout)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return name


def _invoke(lam, name: str, event: dict) -> tuple[dict, dict]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return resp, json.loads(resp["Payload"].read() or b"null")


def _pids(vm: VM, marker: str) -> list[int]:
    return [int(p) for p in vm.run(f"pgrep -f {marker} || true").split()]


def test_the_vm_is_cgroup_v2_only_and_the_server_delegates(vm, platform):
    mounts = vm.run("grep cgroup /proc/mounts")
    assert "cgroup2 /sys/fs/cgroup" in mounts and " cgroup " not in mounts, mounts
    server_cg = vm.run(f"cat /proc/{platform.pid}/cgroup").strip()
    # the unit's group now holds only groups: the server moved into a leaf, controllers delegated
    assert server_cg.startswith("0::/system.slice/lambdalet.service/") and server_cg.endswith("-server"), server_cg
    assert vm.run(f"cat {UNIT_CG}/cgroup.procs").strip() == ""
    parent = server_cg.rsplit("/", 1)[1].removesuffix("-server")
    ctl = vm.run(f"cat {UNIT_CG}/{parent}/cgroup.subtree_control").split()
    assert {"memory", "cpu", "pids"} <= set(ctl), ctl


def test_invoke(lam):
    name = _function(lam)
    resp, payload = _invoke(lam, name, {})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, payload)
    assert payload == {"ok": True}


def test_memory_limit_kills_an_allocating_function_as_aws_reports_it(vm, lam):
    name = _function(lam, memory=128)
    oom_before = vm.run("dmesg | grep -c 'Memory cgroup out of memory' || true").strip()
    resp, payload = _invoke(lam, name, {"op": "alloc", "mb": 400})
    assert resp.get("FunctionError") == "Unhandled", (resp, payload)
    assert payload["errorType"] == "Runtime.ExitError", payload
    assert "Runtime exited with error: signal: killed" in payload["errorMessage"], payload
    # the environment's own memory.max did it, not the VM running out of memory
    assert int(vm.run("dmesg | grep -c 'Memory cgroup out of memory' || true")) > int(oom_before)
    resp, payload = _invoke(lam, name, {"op": "alloc", "mb": 16})
    assert "FunctionError" not in resp and payload == 16, (resp, payload)


def test_an_idle_environment_is_frozen_and_thawed_for_the_next_invoke(vm, lam):
    name, marker = _function(lam, WARM_MB, WARM_TIMEOUT), f"ticker-{uuid.uuid4().hex[:8]}"
    resp, first = _invoke(lam, name, {"op": "ticker", "marker": marker})
    assert "FunctionError" not in resp, first
    [pid] = _pids(vm, marker)
    group = vm.run(f"cat /proc/{pid}/cgroup").strip().split("::", 1)[1]
    # a claimed slot's tasks moved into a group under the account's (cgroups.move_to_account)
    assert group.startswith("/system.slice/lambdalet.service/") and "/acct-000000000000/" in group, group
    d = f"/sys/fs/cgroup{group}"
    assert vm.run(f"cat {d}/memory.max").strip() == str(WARM_MB << 20)
    assert vm.run(f"cat {d}/pids.max").strip() == "1024"
    end = time.monotonic() + 10
    while "frozen 1" not in (events := vm.run(f"cat {d}/cgroup.events")):
        assert time.monotonic() < end, events
        time.sleep(0.2)
    time.sleep(3)                          # 60 ticks, were the ticker running
    resp, second = _invoke(lam, name, {"op": "ticker", "marker": marker})
    assert "FunctionError" not in resp, second
    assert _pids(vm, marker) == [pid]      # the same (warm) environment, thawed
    assert second["ticks"] - first["ticks"] < 30, (first, second)


def test_a_timeout_kills_the_whole_tree(vm, lam):
    name, marker = _function(lam, WARM_MB, timeout=20), f"orphan-{uuid.uuid4().hex[:8]}"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(_invoke, lam, name, {"op": "hang", "marker": marker})
        while not (seen := _pids(vm, marker)) and not call.done():     # the detached child is up
            time.sleep(0.5)
        resp, payload = call.result()
    assert seen, "the function's child never started"
    assert resp.get("FunctionError") == "Unhandled", (resp, payload)
    assert "Task timed out after 20.00 seconds" in payload["errorMessage"], payload
    end = time.monotonic() + 10
    while (left := _pids(vm, marker)):
        assert time.monotonic() < end, f"the timed-out environment's detached child survived: {left}"
        time.sleep(0.5)


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_a_restart_leaves_nothing_behind(vm, platform, how):
    lam = platform.client()
    name, marker = _function(lam, WARM_MB, WARM_TIMEOUT), f"warm-{uuid.uuid4().hex[:8]}"
    resp, payload = _invoke(lam, name, {"op": "ticker", "marker": marker})
    assert "FunctionError" not in resp, payload
    assert _pids(vm, marker)
    before, old_pid = platform.environment_groups(), platform.pid
    assert before
    if how == "restart":
        vm.run("systemctl restart lambdalet", timeout=180)
    else:                                   # the server alone SIGKILLed: Restart=on-failure brings it back
        vm.run("systemctl kill -s KILL --kill-whom=main lambdalet")
    platform.wait_started(old_pid)
    assert _pids(vm, marker) == [], "an environment of the old server survived it"
    stale = before & platform.environment_groups()
    assert not stale, f"cgroups of the old server left: {sorted(stale)}\n{platform.journal()}"
    lam = platform.client()
    resp, payload = _invoke(lam, name, {})
    assert "FunctionError" not in resp and payload == {"ok": True}, (resp, payload)
