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
zygote (jail.py), so even a SIGKILLed zygote takes its running environments with it (but not the
frozen ones, which is why the clean-up must never be skipped).

Pre-isolated slots (sandbox/slots.py): with slots, the zygote first moves into a mount namespace of its
own (a slave of the host's: it sees the host's files, and nothing it mounts reaches the host). A slot's
directory is made a shared mount there before the slot is forked. Claiming it mounts the function's
code, layers and sized /tmp there, from where they propagate into the slot; releasing unmounts them.
Those two requests go to the "mounter", a child forked first, in the same namespace, on a socket of its
own: the zygote's pages are shared copy-on-write with every environment it forks, so each request it
served would first pay page faults (~0.4 ms), and would queue behind forks. Being single-threaded, the
zygote can own that namespace (the server, with its threads, could not enter it): no tenant mount ever
appears in the host's mount table, and the namespace and its mounts end with the zygote and the
mounter, whatever kills them (the zygote's clean-up removes the directories).

Stop signals never raise here. A SIGKILLed server sends its zygote not one SIGTERM but one per
server thread that exits (each exit re-parents the zygote to a surviving thread, and the
parent-death signal fires on every re-parenting), spread over the server's death. When the handler
raised SystemExit, a later SIGTERM landing in the `finally` (before the handler was switched off)
raised again inside it and skipped the clean-up: the frozen environments' PID 1s then sat frozen
for ever, re-parented to init, their own parent-death SIGKILL pending. Now the handler does nothing
and the signal only wakes the serve loop through signal.set_wakeup_fd; the loop returns, and the
clean-up runs with the stop signals blocked.
"""
from __future__ import annotations

import array
import ctypes
import gc
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
import select
import socketserver  # noqa: F401
from lambdalet.runtime import bridge, init, pyfork, pysdk  # noqa: F401  (pyfork: python_bootstrap too)
from lambdalet.sandbox import cgroups, jail, mounts, seccomp

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x20000
MOUNTER_FD = "--mounter-fd="            # argv: own a mount namespace, and serve slots' mounts on this fd
PYTHON_SDK = "--python-sdk="            # argv: the host dir of the forked Python runtime's AWS SDK, pre-imported
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _wake_only(signum, frame):
    """Stop signals must not raise: an exception from a handler can land anywhere, even inside the
    clean-up. The C-level handler has already written to the wakeup fd; the serve loop returns."""


def _children(me: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _group_of_pid(pid: int, parents: set[str]) -> dict[str, str]:
    """The environment group `pid` is in, as controller -> dir: only dirs that sit directly in one of
    the environment parents this zygote used (never its own cgroup, nor anybody else's)."""
    out = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        names = ctrls.split(",") if ctrls else ["unified"]
        for name in names:
            d = f"{cgroups.ROOT}{path}" if name == "unified" else f"{cgroups.ROOT}/{name}{path}"
            if os.path.dirname(d.rstrip("/")) in parents:
                out[name] = d.rstrip("/")
    return out


def _kill_environments(groups: dict[str, dict[str, str]], parents: set[str] = frozenset()) -> None:
    """Kill every environment this zygote forked and remove its cgroups: each group (the ones it
    recorded, plus that of any adopted PID 1 in one of its parents) is frozen, SIGKILLed and thawed
    until cgroup.procs is empty in every controller, then removed; then any other child (say, one
    that had not joined its cgroup yet) is SIGKILLed; then the parents go if empty. Only what this
    zygote forked is touched: a cgroup parent may be shared with another live backend."""
    me = os.getpid()
    parents = set(parents) | {os.path.dirname(d) for dirs in groups.values() for d in dirs.values()}
    todo = list(groups.values())
    for pid in _children(me):
        if (g := _group_of_pid(pid, parents)) and g not in todo:
            todo.append(g)
    for dirs in todo:
        try:
            cgroups.kill_and_remove(dirs, timeout_s=2.0)
        except Exception as e:                          # best effort: the next server cleans the rest
            print(f"lambdalet zygote: could not clean cgroup {dirs}: {e}", file=sys.stderr, flush=True)
    for pid in _children(me):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for d in parents:
        try:
            os.rmdir(d)
        except OSError:
            pass


def _own_mount_namespace(libc) -> None:
    """Mounts made from here on (slots' dirs, code, /tmp) stay in this process's namespace."""
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, jail.MS_REC | jail.MS_SLAVE, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot make the fork server's own mount namespace")


def _sdk_on_a_tmpfs_of_its_own(libc, host_dir: str) -> None:
    """In this namespace only, the SDK's dir becomes a read-only tmpfs copy of itself: an environment's
    bind of it then shows `/` of a tmpfs named python-sdk in its mountinfo, not the checkout's path."""
    src = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)      # the original, once covered
    try:
        if libc.mount(b"python-sdk", host_dir.encode(), b"tmpfs", jail.MS_NOSUID | jail.MS_NODEV,
                      b"size=512m,mode=755") != 0:
            raise OSError(ctypes.get_errno(), f"cannot mount a tmpfs on {host_dir}")
        dst = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _copy_tree(src, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    if libc.mount(None, host_dir.encode(), None, jail.MS_REMOUNT | jail.MS_RDONLY | jail.MS_NOSUID | jail.MS_NODEV,
                  None) != 0:
        raise OSError(ctypes.get_errno(), f"cannot make {host_dir} read-only")


def _copy_tree(src: int, dst: int) -> None:
    """Directories and regular files only (what pip installs), relative to descriptors."""
    for entry in os.scandir(src):
        if entry.is_dir(follow_symlinks=False):
            os.mkdir(entry.name, 0o755, dir_fd=dst)
            s, d = (os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd) for fd in (src, dst))
            try:
                _copy_tree(s, d)
            finally:
                os.close(s)
                os.close(d)
        elif entry.is_file(follow_symlinks=False):
            s = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src)
            d = os.open(entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dst)
            try:
                os.sendfile(d, s, 0, os.fstat(s).st_size)
            finally:
                os.close(s)
                os.close(d)
            os.utime(entry.name, ns=(entry.stat(follow_symlinks=False).st_atime_ns,
                                     entry.stat(follow_symlinks=False).st_mtime_ns), dir_fd=dst)


def _make_slot_dir(d: str) -> None:
    os.makedirs(d, mode=0o755, exist_ok=True)
    mounts.make_shared_tmpfs(d, [sub for sub, _ in jail.SLOT_MOUNTS])


def _slot_request(req: dict) -> dict:
    """`claim`: mount a function's code (read-only), layers and a sized /tmp on its slot's dir, from where
    they propagate into the slot; `release`: unmount them and remove the dir."""
    d = req["slot_dir"]
    if not os.path.isabs(d) or not os.path.basename(d).startswith("slot-"):
        raise ValueError(f"not a slot dir: {d}")
    if req["op"] == "claim":
        mounts.bind_readonly(req["code_dir"], os.path.join(d, "task"))
        if req.get("layers_dir"):
            mounts.bind_readonly(req["layers_dir"], os.path.join(d, "opt"))
        mounts.mount_tmpfs(os.path.join(d, "tmp"), int(req["tmp_mb"]))
    elif req["op"] == "release":
        mounts.unmount_tree(d)
        mounts.remove_empty_tree(d)
    else:
        raise ValueError(f"unknown request {req['op']!r}")
    return {"ok": True}


def _start_mounter(libc, sock: socket.socket) -> int:
    """Fork the mounter (see above): it serves _slot_request on `sock` until the server closes it, and
    dies with the zygote."""
    zygote = os.getpid()
    pid = os.fork()
    if pid:
        sock.close()
        return pid
    try:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != zygote:
            os._exit(0)
        while msg := sock.recv(1 << 16):
            try:
                reply = _slot_request(json.loads(msg))
            except Exception as e:
                reply = {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
            sock.send(json.dumps(reply).encode())
    finally:
        os._exit(0)


def _unmount_slots(slot_dirs: set[str]) -> None:
    """What is left of the slots this zygote forked: their mounts (gone with this namespace anyway) and
    their directories on the host."""
    for d in slot_dirs:
        try:
            mounts.unmount_tree(d)
            mounts.remove_empty_tree(d)
        except Exception as e:                          # best effort: the next server cleans the rest
            print(f"lambdalet zygote: could not remove slot {d}: {e}", file=sys.stderr, flush=True)


def _group_of(procs_files: list[str]) -> dict[str, str]:
    """controller (or "unified") -> directory, from the cgroup.procs files a child is told to join."""
    out = {}
    for p in procs_files:
        d = os.path.dirname(p)
        rel = os.path.relpath(d, cgroups.ROOT).split(os.sep)
        out["unified" if rel[0] == "unified" or len(procs_files) == 1 else rel[0]] = d
    return out


def serve(ctl: socket.socket, server_pid: int | None = None, mounter: socket.socket | None = None,
          python_sdk: str = "") -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    rootless = os.geteuid() != 0                        # rootless.py: no mounts here; environments bind the SDK
    if (mounter is not None or python_sdk) and not rootless:   # before any thread or child: our own namespace
        _own_mount_namespace(libc)
    if python_sdk:                                      # the forked Python runtime's boto3 (runtime/pysdk.py)
        try:
            if not rootless:
                _sdk_on_a_tmpfs_of_its_own(libc, python_sdk)
        except Exception as e:                          # environments bind the original dir instead
            libc.umount2(python_sdk.encode(), 2)        # MNT_DETACH: no half-made copy stays
            print(f"lambdalet zygote: could not copy the AWS SDK onto a tmpfs: {e!r}", file=sys.stderr, flush=True)
        try:
            pysdk.preload(python_sdk)
        except Exception as e:                          # then functions import it themselves, slower
            print(f"lambdalet zygote: the AWS SDK in {python_sdk} could not be pre-imported: {e!r}",
                  file=sys.stderr, flush=True)
    # Everything imported so far goes to the permanent generation: the children's (init's, the forked
    # Python runtime's) collections never visit these objects, so their pages stay shared, not copied.
    pyfork.prepare()
    gc.freeze()
    if mounter is not None:
        _start_mounter(libc, mounter)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _wake_only)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)   # the server died -> SIGTERM -> clean-up below
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # children and adopted PID 1s are auto-reaped
    groups: dict[str, dict[str, str]] = {}              # environments forked (cgroups not yet seen removed)
    parents: set[str] = set()                           # the cgroup parents they were made in
    slot_dirs: set[str] = set()                         # host dirs of the slots forked (not yet seen removed)
    try:
        if server_pid is not None and os.getppid() != server_pid:
            return                                      # the server died before the death signal was armed
        _serve(ctl, groups, parents, slot_dirs, wake_r)
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)   # nothing interrupts the clean-up
        _kill_environments(groups, parents)
        _unmount_slots(slot_dirs)


def _serve(ctl: socket.socket, groups: dict[str, dict[str, str]], parents: set[str], slot_dirs: set[str],
           wake_fd: int) -> None:
    programs: dict[str, bytes] = {}
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(wake_fd, select.POLLIN)
    while True:
        if wake_fd in {fd for fd, _ in poller.poll()}:
            return                                      # SIGTERM: the server died, or we are told to stop
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
            reply = _spawn(json.loads(msg), fds, ctl, groups, parents, slot_dirs, programs)
            reply["fork_ms"] = round((time.monotonic() - t0) * 1000, 3)
        except Exception as e:
            reply = {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
        finally:
            for fd in fds:
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # a pending SIGTERM wakes the next poll
        try:
            ctl.send(json.dumps(reply).encode())
        except OSError:
            return                                      # the server is gone


def _spawn(req: dict, fds, ctl: socket.socket, groups: dict[str, dict[str, str]], parents: set[str],
           slot_dirs: set[str], programs: dict[str, bytes]) -> dict:
    """Fork one environment (or slot); the child runs jail.enter and never comes back."""
    cfg = jail.JailConfig(**req["jail"])
    cfg.binds = [tuple(b) for b in cfg.binds]
    if cfg.seccomp_profile not in programs:
        programs[cfg.seccomp_profile] = seccomp.compile_profile(seccomp.load_profile(cfg.seccomp_profile))
    if len(fds) != 1:
        raise ValueError("expected exactly one bridge fd")
    for name in [n for n, g in groups.items() if not any(os.path.isdir(d) for d in g.values())]:
        del groups[name]                                # destroyed by the host
    if cfg.cgroup_procs:                                # rootless without a delegated cgroup: none
        groups[cfg.cgroup_procs[0]] = group = _group_of(cfg.cgroup_procs)
    else:
        group = {}
    slot_dirs.difference_update([d for d in slot_dirs if not os.path.isdir(d)])   # released by the mounter
    if cfg.slot_dir:
        slot_dirs.add(cfg.slot_dir)
        _make_slot_dir(cfg.slot_dir)
    parents.update(os.path.dirname(d) for d in group.values())
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC) if cfg.rootless else (-1, -1)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)   # no zygote handler in the child
    pid = os.fork()
    if pid == 0:
        cfg.pid_report_fd = pid_w
        signal.set_wakeup_fd(-1)                        # a signal here must not wake the zygote's loop
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            sock = socket.socket(fileno=fds[0])
            ctl.close()
            keep = sorted({sock.fileno(), pid_w} - {-1})
            for lo, hi in zip([3] + [k + 1 for k in keep], keep + [65536]):   # nothing of the server or others
                os.closerange(lo, hi)
            jail.enter(cfg, sock, programs[cfg.seccomp_profile])
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(1)
    if pid_w < 0:
        return {"ok": True, "pid": pid}
    os.close(pid_w)
    try:                                                # rootless: the host tracks PID 1 (rootless.py)
        ready = select.select([pid_r], [], [], 10)[0]
        pid1 = int(os.read(pid_r, 32) or 0) if ready else 0
    finally:
        os.close(pid_r)
    return {"ok": True, "pid": pid, "pid1": pid1}     # 0: set-up failed first (its error is on the bridge)


class ForkServer:
    """Host-side handle: one zygote process, requests serialized by a lock (forking takes ~1 ms).

    The zygote is started from a thread of its own that lives as long as the zygote: PR_SET_PDEATHSIG
    fires when the *thread* that forked a child exits, so starting it from a short-lived worker thread
    would kill every environment when that thread retires."""

    def __init__(self, python_exe: str | None = None, own_mount_namespace: bool = False, python_sdk: str = ""):
        """own_mount_namespace: for slots (see the module's doc); request_mounts() then reaches the mounter.
        python_sdk: the AWS SDK dir of the forked Python runtime, pre-imported (runtime/pysdk.py)."""
        self._ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._mounter = mounter_child = None
        pass_fds = [child.fileno()]
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": src, "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [python_exe or sys.executable, "-s", "-c", "from lambdalet.sandbox.zygote import main; main()",
                str(child.fileno()), str(os.getpid())]
        if own_mount_namespace:
            self._mounter, mounter_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._mounter_lock = threading.Lock()
            pass_fds.append(mounter_child.fileno())
            argv.append(f"{MOUNTER_FD}{mounter_child.fileno()}")
        if python_sdk:
            argv.append(f"{PYTHON_SDK}{python_sdk}")
        started = threading.Event()
        failure: list[BaseException] = []

        def keeper() -> None:
            try:
                self._proc = subprocess.Popen(argv, pass_fds=pass_fds, env=env, stdin=subprocess.DEVNULL,
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
        if mounter_child is not None:
            mounter_child.close()
        if failure:
            self._ctl.close()
            if self._mounter is not None:
                self._mounter.close()
            raise failure[0]
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def spawn(self, jail_cfg: dict, bridge_fd: int) -> dict:
        return self.request({"jail": jail_cfg}, bridge_fd)

    def request(self, req: dict, fd: int | None = None) -> dict:
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd is not None else []
        with self._lock:
            if self._proc.poll() is not None or not self._keeper.is_alive():
                raise RuntimeError(f"fork server exited with {self._proc.returncode}")
            self._ctl.sendmsg([json.dumps(req).encode()], fds)
            reply = json.loads(self._ctl.recv(1 << 16) or b'{"ok": false, "error": "fork server closed"}')
        if not reply.get("ok"):
            raise RuntimeError(f"fork server: {reply.get('error')}")
        return reply

    def request_mounts(self, req: dict, meanwhile=None) -> dict:
        """A slot's `claim` or `release` (see the module's doc), to the mounter: not queued behind forks.
        `meanwhile()` runs while the mounter works (its exceptions propagate once the reply is in)."""
        if self._mounter is None:
            raise RuntimeError("this fork server has no mount namespace of its own")
        with self._mounter_lock:
            self._mounter.send(json.dumps(req).encode())
            try:
                if meanwhile is not None:
                    meanwhile()
            finally:
                reply = json.loads(self._mounter.recv(1 << 16) or b'{"ok": false, "error": "mounter closed"}')
        if not reply.get("ok"):
            raise RuntimeError(f"fork server's mounter: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self._mounter is not None:
            self._mounter.close()
        self._ctl.close()
        self._keeper.join(timeout=10)
        if self._keeper.is_alive():
            self._proc.kill()
            self._keeper.join()


def main() -> None:
    mounter = [int(a[len(MOUNTER_FD):]) for a in sys.argv[3:] if a.startswith(MOUNTER_FD)]
    sdk = [a[len(PYTHON_SDK):] for a in sys.argv[3:] if a.startswith(PYTHON_SDK)]
    serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]) if len(sys.argv) > 2 else None,
          socket.socket(fileno=mounter[0]) if mounter else None, sdk[0] if sdk else "")


if __name__ == "__main__":
    main()
