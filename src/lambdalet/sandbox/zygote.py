"""The fork server ("zygote"): a trusted, pre-imported Python process that forks environments.

Spawned once per backend (`python -m lambdalet.sandbox.zygote FD`), it holds no user code and no
secrets: only imported modules and compiled seccomp programs. Per request (JSON + the environment's
bridge socket via SCM_RIGHTS over a SOCK_SEQPACKET pair) it forks; the child runs sandbox.jail.enter
and never comes back, so user code never runs in a process that later forks another environment.
It is a child subreaper: environments' PID-1 processes are re-parented to it and reaped here.
"""
from __future__ import annotations

import array
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# Pre-import everything a child needs, so forking is all a cold start pays for.
# (after pivot_root the host's module files are gone, so a lazy import in init would fail)
import encodings.idna  # noqa: F401
import http.server  # noqa: F401
import select  # noqa: F401
import socketserver  # noqa: F401
from lambdalet.runtime import bridge, init  # noqa: F401
from lambdalet.sandbox import jail, seccomp

PR_SET_CHILD_SUBREAPER = 36


def serve(ctl: socket.socket) -> None:
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # children and adopted PID 1s are auto-reaped
    programs: dict[str, bytes] = {}
    while True:
        fds = array.array("i")
        try:
            msg, anc, _, _ = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
        except InterruptedError:
            continue
        if not msg:
            return                                      # the backend closed: exit, environments live on
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        t0 = time.monotonic()
        try:
            req = json.loads(msg)
            cfg = jail.JailConfig(**req["jail"])
            cfg.binds = [tuple(b) for b in cfg.binds]
            if cfg.seccomp_profile not in programs:
                programs[cfg.seccomp_profile] = seccomp.compile_profile(seccomp.load_profile(cfg.seccomp_profile))
            if len(fds) != 1:
                raise ValueError("expected exactly one bridge fd")
            pid = os.fork()
            if pid == 0:
                try:
                    sock = socket.socket(fileno=fds[0])
                    ctl.close()
                    os.closerange(3, sock.fileno())        # nothing of the server or other environments
                    os.closerange(sock.fileno() + 1, 65536)
                    jail.enter(cfg, sock, programs[cfg.seccomp_profile])
                except BaseException:
                    import traceback
                    traceback.print_exc()
                finally:
                    os._exit(1)
            reply = {"ok": True, "pid": pid, "fork_ms": round((time.monotonic() - t0) * 1000, 3)}
        except Exception as e:
            reply = {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
        ctl.send(json.dumps(reply).encode())


class ForkServer:
    """Host-side handle: one zygote process, requests serialized by a lock (forking takes ~1 ms)."""

    def __init__(self, python_exe: str | None = None):
        self._ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": src, "PYTHONDONTWRITEBYTECODE": "1"}
        self._proc = subprocess.Popen([python_exe or sys.executable, "-s", "-c",
                                       "from lambdalet.sandbox.zygote import main; main()", str(child.fileno())], pass_fds=[child.fileno()], env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        child.close()
        self._lock = threading.Lock()

    def spawn(self, jail_cfg: dict, bridge_fd: int) -> dict:
        with self._lock:
            if self._proc.poll() is not None:
                raise RuntimeError(f"fork server exited with {self._proc.returncode}")
            self._ctl.sendmsg([json.dumps({"jail": jail_cfg}).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [bridge_fd]))])
            reply = json.loads(self._ctl.recv(1 << 16) or b'{"ok": false, "error": "fork server closed"}')
        if not reply.get("ok"):
            raise RuntimeError(f"fork server: {reply.get('error')}")
        return reply

    def close(self) -> None:
        self._ctl.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> None:
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
