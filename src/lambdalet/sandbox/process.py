"""The `process` backend: the environment is a plain child process group. NO ISOLATION.

For development on machines without root or namespaces. The function runs as the server's user
with full access to the host; it cannot be selected by accident (allow_unisolated=True is required)
and says so loudly. Freeze/thaw are SIGSTOP/SIGCONT to the process group; no memory limit.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from lambdalet.runtime import bridge, launch
from lambdalet.runtime.init import CONFIG, InitConfig
from lambdalet.sandbox.api import Backend, EnvironmentSpec, register_backend
from lambdalet.sandbox.host import BridgedSandbox

log = logging.getLogger(__name__)


class ProcessSandbox(BridgedSandbox):
    def __init__(self, spec, log_sink, python_exe: str, executor=None, *, api_forwarder=None):
        super().__init__(spec, log_sink, api_forwarder=api_forwarder)
        self._python = python_exe
        self._executor = executor
        self._proc: subprocess.Popen | None = None

    def _launch(self) -> socket.socket:
        t0 = time.monotonic()
        spec = self.spec
        ex = self._executor(spec.runtime) if self._executor else None    # this runtime's own interpreter
        layout = launch.Layout(task_root=os.path.abspath(spec.code_dir),
                               opt_root=os.path.abspath(spec.layers_dir) if spec.layers_dir else "/nonexistent-opt",
                               runtime_dir=launch.RUNTIME_DIR,
                               lang_root=(ex and ex.prefix) or os.path.realpath(sys.base_prefix),
                               python_exe=(ex and not ex.fork and ex.exe) or self._python,
                               node_exe=(ex and ex.exe) or _which("node"))
        has_bootstrap = os.path.exists(os.path.join(layout.task_root, "bootstrap"))
        cfg = InitConfig(argv=launch.runtime_argv(spec.runtime, layout, has_bootstrap),
                         env=launch.runtime_env(spec, layout), cwd=layout.task_root, port=0, pid1=False)
        host, child = socket.socketpair()
        try:
            self._proc = subprocess.Popen([self._python, "-m", "lambdalet.runtime.init", str(child.fileno())],
                                          pass_fds=[child.fileno()], start_new_session=True,
                                          stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", ""),
                                                                         "PYTHONPATH": _src_root()})
        finally:
            child.close()
        bridge.send(host, CONFIG, dataclasses.asdict(cfg))
        self._timings["spawn_ms"] = round((time.monotonic() - t0) * 1000, 3)
        return host

    def _kill(self) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)   # init and the runtime share the process group
        except ProcessLookupError:
            pass
        p.wait()
        end = time.monotonic() + 2.0      # orphaned members are reaped by whoever adopts them
        while self._pids_of(p.pid) and time.monotonic() < end:
            time.sleep(0.002)

    def _do_freeze(self) -> None:
        if self._proc:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def _do_thaw(self) -> None:
        if self._proc:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def _pids(self) -> list[int]:
        return self._pids_of(self._proc.pid) if self._proc else []

    @staticmethod
    def _pids_of(pgid: int) -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.getpgid(int(d)) == pgid and _state(int(d)) != "Z":
                        out.append(int(d))
                except OSError:
                    pass
        return out

    def _max_memory_mb(self) -> int:
        try:   # the runtime is init's child: RUSAGE_CHILDREN is not ours to read, so report init's peak
            with open(f"/proc/{self._proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except (OSError, AttributeError):
            pass
        return 0


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _which(name: str) -> str:
    import shutil
    return shutil.which(name) or f"/usr/bin/{name}"


def _src_root() -> str:
    import lambdalet
    return os.path.dirname(os.path.dirname(os.path.abspath(lambdalet.__file__)))


class ProcessBackend(Backend):
    name = "process"

    def isolation(self) -> dict:
        return {"mode": "process", "summary": "NONE: function code runs as an ordinary process of the server",
                "missing": ["every isolation (namespaces, seccomp, uid, limits)"]}

    def __init__(self, *, allow_unisolated: bool = False, python_exe: str | None = None, host_runtimes=None,
                 api_forwarder=None):
        if not allow_unisolated:
            raise PermissionError("the 'process' sandbox backend runs functions WITHOUT isolation; "
                                  "pass allow_unisolated=True to use it (development only)")
        log.warning("!!! sandbox backend 'process': functions run UNISOLATED as uid %d on this host "
                    "(no namespaces, no cgroup limits, no seccomp). Development only. !!!", os.getuid())
        self._python = python_exe or os.path.join(os.path.realpath(sys.base_prefix), "bin", "python3")
        self.host_runtimes = host_runtimes   # runtime.hostruntimes.HostRuntimes, or None: the server's python, PATH's node
        self.api_forwarder = api_forwarder   # every environment's path to the server's API (runtime/api_proxy.py)

    def create(self, spec: EnvironmentSpec, *, log_sink=None) -> ProcessSandbox:
        return ProcessSandbox(spec, log_sink, self._python, self.host_runtimes and self.host_runtimes.get,
                              api_forwarder=self.api_forwarder)


register_backend("process", ProcessBackend)
