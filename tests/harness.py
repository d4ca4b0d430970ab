"""End-to-end harness: a real `lambdalet serve` subprocess, talked to by boto3 and the AWS CLI.

The fixtures built on it are in tests/conftest.py; test modules import what they need from here
(`from harness import own_server`), never from a conftest.

The object the fixtures yield (`LambdaletServer`) has: url, data_dir, env (the parsed `lambdalet env`
output), ca, region, access_key, secret_key, client(service="lambda", **kw), cli(*args),
restart(), stop(), start(), log_text().

After restart() the URL (port) changes: create new clients from the server object afterwards.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 20

# Keep the developer's own AWS configuration (profiles, credentials, endpoints) out of every
# client this process builds: the only credentials used are the ones `lambdalet env` prints.
for _var in [v for v in os.environ if v.startswith("AWS_")]:
    del os.environ[_var]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

_BOTO_SESSION = boto3.session.Session()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LAMBDALET_DATA_DIR"}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: don't outlive a killed test run
    except Exception:
        pass


# ---- process-tree helpers (Linux /proc) ----

def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, starttime) of a live process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    return int(rest[1]), rest[0], int(rest[19])


def descendants(root: int) -> dict[int, int]:
    """pid -> starttime for every live descendant of root."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                stats[int(entry)] = st
                children.setdefault(st[0], []).append(int(entry))
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out[child] = stats[child][2]
                todo.append(child)
    return out


def still_alive(procs: dict[int, int]) -> list[int]:
    alive = []
    for pid, start in procs.items():
        st = _proc_stat(pid)
        if st and st[2] == start and st[1] not in ("Z", "X"):
            alive.append(pid)
    return alive


class ServerStartError(RuntimeError):
    pass


class LambdaletServer:
    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.extra_args = tuple(extra_args)
        self.log_dir = Path(tempfile.mkdtemp(prefix="lambdalet-log-"))
        self.proc: subprocess.Popen | None = None
        self.endpoint: dict = {}
        self.env: dict[str, str] = {}
        self.starts = 0
        self.leaked: list[str] = []          # problems noticed while stopping (children left, SIGKILL needed)
        self._stdout = self._stderr = None

    # ---- lifecycle ----
    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"stdout.{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"stderr.{self.starts}.log"

    def start(self) -> "LambdaletServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        cmd = [PYTHON, "-m", "lambdalet", "serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
               "--port", "0", *self.extra_args]
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr, preexec_fn=_set_pdeathsig)
        try:
            self.endpoint = self._wait_for_endpoint()
            self.env = self._read_env()
        except BaseException:
            self._kill_quietly()
            raise
        return self

    def _wait_for_endpoint(self) -> dict:
        path = self.data_dir / "endpoint.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"lambdalet serve exited with {self.proc.returncode} before listening:\n"
                                       + self.log_text())
            try:
                doc = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                doc = None
            if doc and doc.get("pid") == self.proc.pid:
                return doc
            time.sleep(0.1)
        raise ServerStartError(f"no endpoint.json with pid {self.proc.pid} after {START_TIMEOUT_S}s:\n" + self.log_text())

    def _read_env(self) -> dict[str, str]:
        res = subprocess.run([PYTHON, "-m", "lambdalet", "env", "--data-dir", str(self.data_dir)], cwd=str(REPO),
                             env=child_env(), capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise ServerStartError(f"`lambdalet env` failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return parse_env_output(res.stdout)

    def stop(self, *, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (then SIGKILL after STOP_TIMEOUT_S); records leaked children / forced kills in self.leaked."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            kids = descendants(self.proc.pid)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.leaked.append(f"server pid {self.proc.pid} ignored SIGTERM for {STOP_TIMEOUT_S}s; SIGKILLed")
                kids.update(descendants(self.proc.pid))
                self.proc.kill()
                self.proc.wait(10)
            time.sleep(0.2)
            left = still_alive(kids)
            if left:
                self.leaked.append(f"child processes left after the server exited: {left}")
                for pid in left:  # ours: started by the server we started
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        for f in (self._stdout, self._stderr):
            if f:
                f.close()
        return self.proc.returncode

    def restart(self) -> "LambdaletServer":
        self.stop()
        return self.start()

    def _kill_quietly(self) -> None:
        if self.proc and self.proc.poll() is None:
            kids = descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
            for pid in still_alive(kids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def log_text(self, limit: int = 6000) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            for f in (self._stdout, self._stderr):
                if f and not f.closed:
                    f.flush()
            try:
                text = p.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            parts.append(f"--- {p.name} ---\n{text[-limit:]}")
        return "\n".join(parts)

    # ---- what tests use ----
    @property
    def url(self) -> str:
        return self.endpoint["url"]

    @property
    def pid(self) -> int:
        return self.endpoint["pid"]

    @property
    def region(self) -> str:
        return self.env.get("AWS_DEFAULT_REGION") or self.endpoint.get("region") or "us-east-1"

    @property
    def ca(self) -> str | None:
        return self.env.get("AWS_CA_BUNDLE") or self.endpoint.get("ca_bundle")

    @property
    def verify(self):
        return self.ca if self.ca else True

    @property
    def access_key(self) -> str:
        return self.env["AWS_ACCESS_KEY_ID"]

    @property
    def secret_key(self) -> str:
        return self.env["AWS_SECRET_ACCESS_KEY"]

    @property
    def account_id(self) -> str:
        return "000000000000"

    def client(self, service: str = "lambda", **kw):
        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=120)
        if "config" in kw:
            cfg = cfg.merge(kw.pop("config"))
        params = dict(endpoint_url=self.url, verify=self.verify, region_name=self.region,
                      aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        params.update(kw)
        return _BOTO_SESSION.client(service, config=cfg, **params)

    def cli_env(self) -> dict[str, str]:
        env = child_env()
        env.update(self.env)
        env["AWS_MAX_ATTEMPTS"] = "1"
        env["AWS_RETRY_MODE"] = "standard"
        env["AWS_PAGER"] = ""
        return env

    def cli(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "awscli", "lambda", *args], env=self.cli_env(), capture_output=True,
                              text=True, timeout=timeout, input=input, cwd=str(REPO))

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn


def parse_env_output(text: str) -> dict[str, str]:
    """`export K='v'` lines -> {K: v} (shell-unquoted)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words and words[0] == "export":
            words = words[1:]
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                out[key] = value
    return out


def stop_and_check(srv: LambdaletServer) -> None:
    srv.stop()
    problems = list(srv.leaked)
    if srv.proc is not None and srv.proc.returncode not in (0, -signal.SIGTERM, None) and not problems:
        problems.append(f"server exited with {srv.proc.returncode} on SIGTERM:\n{srv.log_text()}")
    if problems:
        pytest.fail("server teardown: " + "; ".join(problems), pytrace=False)


def own_server(tmp_path_factory, *extra_args: str, prefix: str = "lambdalet-data"):
    """Body of a module- or session-scoped fixture: a server of its own, started, then stopped and
    checked for leaks (`yield from own_server(...)`)."""
    srv = LambdaletServer(tmp_path_factory.mktemp(prefix), extra_args)
    try:
        srv.start()
    except ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    stop_and_check(srv)


def run_lambdalet(srv: LambdaletServer, *args: str, input: str | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess:
    """`lambdalet ARGS --data-dir <the server's>`: an operator's command on the server's host."""
    return subprocess.run([PYTHON, "-m", "lambdalet", *args, "--data-dir", str(srv.data_dir)], cwd=str(REPO),
                          env=child_env(), capture_output=True, text=True, input=input, timeout=timeout)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A tmpfs of `size` (mount's spelling: 48m) at path, for a data dir that fills up; root only (the
    test skips otherwise). Unmounted lazily afterwards, whatever still holds it open."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
