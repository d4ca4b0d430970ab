"""The fork server ("zygote"): a trusted, pre-imported Python process that forks environments.

Spawned once per backend (`python -m lambdalet.sandbox.zygote FD`), it holds no user code and no
secrets: only imported modules and compiled seccomp programs. Per request (JSON + the environment's
bridge socket via SCM_RIGHTS over a SOCK_SEQPACKET pair) it forks; the child runs sandbox.jail.enter
and never comes back, so user code never runs in a process that later forks another environment.
It is a child subreaper: environments' PID-1 processes are re-parented to it and reaped here.

Dying with the server: the zygote ends when the server closes its socket, when the server dies
(PR_SET_PDEATHSIG -> SIGTERM; its control socket also reads EOF) and on SIGTERM; every way out first
kills the environments it forked (thawing frozen ones: a frozen task never acts on SIGKILL) and
removes their cgroups. Each environment's PID 1 also has PR_SET_PDEATHSIG=SIGKILL towards the
zygote (jail.py), so even a SIGKILLed zygote takes its running environments with it.
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
from lambdalet.sandbox import cgroups, jail, seccomp

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _terminate(signum, frame):
    raise SystemExit(0)


def _kill_environments(groups: dict[str, dict[str, str]]) -> None:
    """Kill every environment this zygote forked: its adopted PID 1s, then whatever is in their cgroups."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == me:
                    os.kill(int(entry), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
    for dirs in groups.values():
        try:
            cgroups.kill_and_remove(dirs, timeout_s=2.0)
        except Exception as e:                          # best effort: the next server cleans the rest
            print(f"lambdalet zygote: could not clean cgroup {dirs}: {e}", file=sys.stderr, flush=True)
    parents = {os.path.dirname(d) for dirs in groups.values() for d in dirs.values()}
    for d in parents:
        try:
            os.rmdir(d)
        except OSError:
            pass


def _group_of(procs_files: list[str]) -> dict[str, str]:
    """controller (or "unified") -> directory, from the cgroup.procs files a child is told to join."""
    out = {}
    for p in procs_files:
        d = os.path.dirname(p)
        rel = os.path.relpath(d, cgroups.ROOT).split(os.sep)
        out["unified" if rel[0] == "unified" or len(procs_files) == 1 else rel[0]] = d
    return out


def serve(ctl: socket.socket, server_pid: int | None = None) -> None:
    libc = ctypes.CDLL(None)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _terminate)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)   # the server died -> SIGTERM -> clean-up below
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # children and adopted PID 1s are auto-reaped
    groups: dict[str, dict[str, str]] = {}              # environments forked (cgroups not yet seen removed)
    try:
        if server_pid is not None and os.getppid() != server_pid:
            return                                      # the server died before the death signal was armed
        _serve(ctl, groups)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _kill_environments(groups)


def _serve(ctl: socket.socket, groups: dict[str, dict[str, str]]) -> None:
    programs: dict[str, bytes] = {}
    while True:
        fds = array.array("i")
        try:
            msg, anc, _, _ = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
        except InterruptedError:
            continue
        except OSError:
            return
        if not msg:
            return                                      # the backend closed or the server died
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
            for name in [n for n, g in groups.items() if not any(os.path.isdir(d) for d in g.values())]:
                del groups[name]                        # destroyed by the host
            groups[cfg.cgroup_procs[0]] = _group_of(cfg.cgroup_procs)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})   # no zygote handler in the child
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
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
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})   # a pending SIGTERM lands here
        try:
            ctl.send(json.dumps(reply).encode())
        except OSError:
            return                                      # the server is gone


class ForkServer:
    """Host-side handle: one zygote process, requests serialized by a lock (forking takes ~1 ms).

    The zygote is started from a thread of its own that lives as long as the zygote: PR_SET_PDEATHSIG
    fires when the *thread* that forked a child exits, so starting it from a short-lived worker thread
    would kill every environment when that thread retires."""

    def __init__(self, python_exe: str | None = None):
        self._ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": src, "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [python_exe or sys.executable, "-s", "-c", "from lambdalet.sandbox.zygote import main; main()",
                str(child.fileno()), str(os.getpid())]
        started = threading.Event()
        failure: list[BaseException] = []

        def keeper() -> None:
            try:
                self._proc = subprocess.Popen(argv, pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
                                              start_new_session=True)
            except BaseException as e:
                failure.append(e)
                return
            finally:
                started.set()
            self._proc.wait()

        self._keeper = threading.Thread(target=keeper, name="zygote-keeper", daemon=True)
        self._keeper.start()
        started.wait()
        child.close()
        if failure:
            self._ctl.close()
            raise failure[0]
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def spawn(self, jail_cfg: dict, bridge_fd: int) -> dict:
        with self._lock:
            if self._proc.poll() is not None or not self._keeper.is_alive():
                raise RuntimeError(f"fork server exited with {self._proc.returncode}")
            self._ctl.sendmsg([json.dumps({"jail": jail_cfg}).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [bridge_fd]))])
            reply = json.loads(self._ctl.recv(1 << 16) or b'{"ok": false, "error": "fork server closed"}')
        if not reply.get("ok"):
            raise RuntimeError(f"fork server: {reply.get('error')}")
        return reply

    def close(self) -> None:
        self._ctl.close()
        self._keeper.join(timeout=10)
        if self._keeper.is_alive():
            self._proc.kill()
            self._keeper.join()


def main() -> None:
    serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]) if len(sys.argv) > 2 else None)


if __name__ == "__main__":
    main()
