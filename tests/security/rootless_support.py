"""A rootless `lambdalet serve` (sandbox/rootless.py) for the security tests: the test, as root, makes a
throw-away unprivileged user, starts the server as that user with `setpriv` (no capabilities, no
supplementary groups) and removes the user, its files and processes afterwards.

One wrinkle of this test host, not of rootless mode: the venv's interpreter lives under /root (0700),
which an ordinary user cannot traverse. The server is therefore started in a private mount namespace
of the test where /root is an empty 0711 tmpfs with only ~/.pyenv bound into it; the host's own /root
is untouched. On a developer's machine the interpreter is theirs and none of this is needed.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, LambdaletServer, ServerStartError, _child_env

_TRAVERSABLE_ROOT = r'''
set -e
stage=$(mktemp -d /tmp/lambdalet-rootless-stage.XXXXXX)
if [ -d /root/.pyenv ]; then mount --bind /root/.pyenv "$stage"; fi
mount -t tmpfs -o mode=0711,size=1m lambdalet-test-root /root
if mountpoint -q "$stage"; then mkdir /root/.pyenv; mount --move "$stage" /root/.pyenv; fi
rmdir "$stage"
exec "$@"
'''


class TestUser:
    """A system user made for one test module: name, uid, gid, home (its files go with it)."""

    def __init__(self) -> None:
        self.name = f"lbrl{uuid.uuid4().hex[:8]}"
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.name],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.home = Path(tempfile.mkdtemp(prefix=f"lambdalet-{self.name}-", dir="/tmp"))
        os.chmod(self.home, 0o755)
        os.chown(self.home, self.uid, self.gid)

    def run_as(self, *argv: str) -> list[str]:
        """argv run as this user: no capabilities, no supplementary groups, SIGTERM if the test dies."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--pdeathsig=TERM", "--", *argv]

    def processes(self) -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == self.uid:
                        out.append(int(d))
                except FileNotFoundError:
                    pass
        return out

    def remove(self) -> None:
        for pid in self.processes():                # none should be left; the test says so before this
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)
        subprocess.run(["userdel", self.name], check=False, capture_output=True)


def userns_unavailable_reason(user: TestUser) -> str | None:
    """Can `user` make a user namespace with mount and pid namespaces here?"""
    r = subprocess.run(user.run_as("unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "true"),
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return f"unprivileged user namespaces are not available here: {r.stderr.strip()[:200]}"
    return None


class RootlessServer(LambdaletServer):
    """LambdaletServer started as `user` (its pid is the server's: unshare, sh and setpriv exec)."""

    def __init__(self, user: TestUser, extra_args: tuple[str, ...] = ()):
        data = user.home / "data"
        data.mkdir(mode=0o700)
        os.chown(data, user.uid, user.gid)
        super().__init__(data, extra_args)
        self.user = user

    def start(self) -> "RootlessServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        serve = [PYTHON, "-m", "lambdalet", "serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                 "--port", "0", *self.extra_args]
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _TRAVERSABLE_ROOT, "sh",
               *self.user.run_as(*serve)]
        env = {**_child_env(), "HOME": str(self.user.home), "USER": self.user.name, "LOGNAME": self.user.name}
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr)
        try:
            self.endpoint = self._wait_for_endpoint()
            self.env = self._read_env()
        except BaseException:
            self._kill_quietly()
            raise
        return self

    def status(self) -> dict:
        r = subprocess.run([PYTHON, "-m", "lambdalet", "status", "--json", "--data-dir", str(self.data_dir)],
                           cwd=str(REPO), env=_child_env(), capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout)

    def status_text(self) -> str:
        return subprocess.run([PYTHON, "-m", "lambdalet", "status", "--data-dir", str(self.data_dir)],
                              cwd=str(REPO), env=_child_env(), capture_output=True, text=True, timeout=60).stdout


def rootless_server_fixture(*extra_args: str):
    """Body of a module-scoped fixture: (server, user); skips where the host cannot run one. Teardown
    fails the test module if the server leaves a process, its run dir or anything in /dev/shm."""
    if os.geteuid() != 0:
        pytest.skip("makes a throw-away user and runs the server as it: needs root")
    if not (shutil.which("useradd") and shutil.which("setpriv") and shutil.which("unshare")):
        pytest.skip("needs useradd, setpriv and unshare (util-linux)")
    user = TestUser()
    try:
        reason = userns_unavailable_reason(user)
        if reason:
            pytest.skip(reason)
        srv = RootlessServer(user, extra_args)
        shm_before = set(os.listdir("/dev/shm"))
        try:
            srv.start()
        except ServerStartError as e:
            pytest.fail(str(e), pytrace=False)
        yield srv, user
        srv.stop()
        problems = list(srv.leaked)
        end = time.monotonic() + 5
        while (left := user.processes()) and time.monotonic() < end:
            time.sleep(0.1)
        if left:
            problems.append(f"processes of the server's user left after it stopped: {left}")
        mine = [e.name for e in os.scandir("/dev/shm")
                if e.name not in shm_before and e.stat(follow_symlinks=False).st_uid == user.uid]
        if mine:
            problems.append(f"left in /dev/shm: {mine}")
        if problems:
            pytest.fail("rootless server teardown: " + "; ".join(problems), pytrace=False)
    finally:
        user.remove()

