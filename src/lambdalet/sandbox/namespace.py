"""The `namespace` backend (default): Linux namespaces + cgroup + seccomp, forked from a zygote.

Why rootful set-up then setresuid (and no user namespace): the trusted fork-server child builds the
environment as real root (mounts, cgroup join, pivot_root) and then becomes a distinct unprivileged
HOST uid per environment with an empty capability bounding set. The tenant therefore holds no
capability in any namespace (a user namespace would hand it a full set inside, the classic door to
kernel bugs; seccomp also refuses creating one), an escape lands as an unprivileged uid that owns
nothing on the host, and environments cannot signal or trace each other. It is also the cheaper path.
"""
from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import os
import re
import socket
import sys
import threading
import uuid

from lambdalet.runtime import bridge, launch
from lambdalet.runtime.init import CONFIG
from lambdalet.sandbox.api import Backend, EnvironmentSpec, SandboxError, register_backend
from lambdalet.sandbox.cgroups import Cgroup, Limits, kill_and_remove, remove_parent, stale_children
from lambdalet.sandbox.host import BridgedSandbox
from lambdalet.sandbox.zygote import ForkServer

log = logging.getLogger(__name__)
MNT_DETACH = 2


class NamespaceSandbox(BridgedSandbox):
    def __init__(self, spec: EnvironmentSpec, log_sink, backend: "NamespaceBackend"):
        super().__init__(spec, log_sink)
        self._b = backend
        self._cg: Cgroup | None = None
        self._uid: int | None = None

    def _launch(self) -> socket.socket:
        spec, b = self.spec, self._b
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.env_id)[:64] + "-" + uuid.uuid4().hex[:8]
        self._limits = Limits(spec.memory_mb, b.pids_max)
        b._live_cgroups.add(name)
        self._cg_name = name
        self._cg = Cgroup.create(name, self._limits, parent=b.cgroup_parent)
        # Init runs with at least one full vCPU, as Lambda boosts the init phase; _init_done restores it.
        self._cg.set_cpu_quota(max(self._limits.cpu_quota_us, b.init_cpu_quota_us))
        self._uid = b._alloc_uid()
        ex = b.executor(spec.runtime)     # this runtime's own interpreter; its prefix becomes /var/lang
        inner = ex.inner_exe or f"/var/lang/bin/{b.python_name}"
        layout = launch.Layout(python_exe=inner, node_exe=inner)
        binds = [("/usr", "/usr"), (ex.prefix or b.python_prefix, "/var/lang"), (launch.RUNTIME_DIR, "/var/runtime"),
                 (os.path.abspath(spec.code_dir), "/var/task")]
        if spec.layers_dir:
            binds.append((os.path.abspath(spec.layers_dir), "/opt"))
        binds += [(p, p) for p in ("/etc/ld.so.cache", "/etc/localtime") if os.path.exists(p)]
        has_bootstrap = os.path.exists(os.path.join(spec.code_dir, "bootstrap"))
        jail_cfg = {
            "root_dir": b.root_dir, "uid": self._uid, "cgroup_procs": self._cg.procs_files(), "binds": binds,
            "hide": [f"/var/lang/lib/{os.path.basename(inner) if ex.runtime.startswith('python') else b.python_name}"
                     "/site-packages"],   # the host interpreter's packages
            "tmp_mb": spec.ephemeral_mb, "seccomp_profile": b.seccomp_profile,
        }
        # The runtime's configuration goes straight to the environment's init over the bridge (it
        # waits in the socket buffer until init reads it, after seccomp): never through the fork server.
        icfg = {"argv": launch.runtime_argv(spec.runtime, layout, has_bootstrap),
                "env": launch.runtime_env(spec, layout), "cwd": "/var/task", "port": 9001, "pid1": True,
                "python_fork": launch.family(spec.runtime) == "python" and ex.fork}   # exec any other Python
        host, child = socket.socketpair()
        try:
            bridge.send(host, CONFIG, icfg)
            reply = b.zygote.spawn(jail_cfg, child.fileno())
        except BaseException:
            host.close()
            raise
        finally:
            child.close()
        self._timings["zygote_fork_ms"] = reply.get("fork_ms")
        return host

    def _kill(self) -> None:
        cg, self._cg = self._cg, None
        try:
            if cg is not None:
                cg.destroy()
            self._b._live_cgroups.discard(getattr(self, "_cg_name", None))
        finally:
            if self._uid is not None:
                self._b._free_uid(self._uid)
                self._uid = None

    def _init_done(self) -> None:
        self._cg.set_cpu_quota(self._limits.cpu_quota_us)

    def _do_freeze(self) -> None:
        self._cg.freeze()

    def _do_thaw(self) -> None:
        self._cg.thaw()

    def _max_memory_mb(self) -> int:
        return self._cg.max_memory_mb() if self._cg else 0

    def _oom_killed(self) -> bool:
        return bool(self._cg and self._cg.oom_kills() > 0)

    def _pids(self) -> list[int]:
        return self._cg.pids() if self._cg else []

    @property
    def cgroup(self) -> Cgroup | None:
        return self._cg


class NamespaceBackend(Backend):
    """Owns a cgroup parent (under the server's own cgroup) and a root dir (the mount point every
    environment puts its private root on). Opening one cleans up what a crashed predecessor on the
    same pair left behind, unless another live backend shares them (a lock file says so)."""
    name = "namespace"

    def __init__(self, *, uid_base: int = 200_000, uid_count: int = 50_000, pids_max: int = 1024,
                 root_dir: str = "/run/lambdalet/root", cgroup_parent: str = "lambdalet",
                 python_prefix: str | None = None, seccomp_profile: str = "default",
                 init_cpu_quota_us: int = 100_000, host_runtimes=None):
        if os.geteuid() != 0:
            raise PermissionError("the 'namespace' backend needs root (it builds namespaces and cgroups)")
        if "/" in cgroup_parent.strip("/") or cgroup_parent.strip("/") in ("", ".", ".."):
            raise ValueError(f"cgroup_parent must be one plain name, not {cgroup_parent!r}")
        self.python_prefix = os.path.realpath(python_prefix or sys.base_prefix)
        self.python_name = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.host_runtimes = host_runtimes        # runtime.hostruntimes.HostRuntimes; discovered when None
        self.pids_max, self.root_dir, self.cgroup_parent = pids_max, root_dir, cgroup_parent.strip("/")
        self.seccomp_profile = seccomp_profile
        self.init_cpu_quota_us = init_cpu_quota_us
        os.makedirs(os.path.dirname(os.path.realpath(root_dir).rstrip("/")), mode=0o755, exist_ok=True)
        self._uids = set(range(uid_base, uid_base + uid_count))
        self._uid_lock = threading.Lock()
        self._live_cgroups: set[str] = set()
        # Shared while open; exclusive only to clean up, so a live backend's environments are never touched.
        self._lock_path = os.path.realpath(root_dir).rstrip("/") + ".lock"
        self._owner, alone = _open_lock(self._lock_path)
        os.makedirs(root_dir, mode=0o755, exist_ok=True)     # under the lock: a closing last user removes it
        if alone:
            self.cleanup_stale()
            fcntl.flock(self._owner, fcntl.LOCK_SH)
        else:
            log.info("another live sandbox backend uses %s / cgroup %s: no stale clean-up", root_dir, cgroup_parent)
        self.zygote = ForkServer()

    def cleanup_stale(self) -> list[str]:
        """Kill and remove leftover environment cgroups (thawing frozen ones), unmount leftover mounts
        under root_dir, remove leftover empty mount points there. Never touches this backend's own live
        environments, nor anything outside its cgroup parent and root dir."""
        cleaned: list[str] = []
        for name, dirs in sorted(stale_children(self.cgroup_parent).items()):
            if name in self._live_cgroups:
                continue
            try:
                pids = kill_and_remove(dirs)
            except (OSError, TimeoutError) as e:
                log.error("stale cgroup %s could not be removed: %s", name, e)
                continue
            cleaned.append(f"cgroup {self.cgroup_parent}/{name}" + (f" (killed pids {pids})" if pids else ""))
        cleaned += self._cleanup_root_dir()
        for line in cleaned:
            log.warning("cleaned up after a previous server: %s", line)
        return cleaned

    def _cleanup_root_dir(self) -> list[str]:
        root = os.path.realpath(self.root_dir)
        if root.count("/") < 2:            # never "/" or a top-level directory, whatever was configured
            log.error("root_dir %s is too close to / to clean up", root)
            return []
        cleaned = []
        for _ in range(16):                # stacked mounts need one pass each
            progress = False
            for mp in _mounts_under(root):
                if libc.umount2(mp.encode(), MNT_DETACH) == 0:
                    cleaned.append(f"mount {mp}")
                    progress = True
                else:
                    log.error("stale mount %s could not be unmounted: %s", mp, os.strerror(ctypes.get_errno()))
            if not progress:
                break
        if _mounts_under(root):
            return cleaned                 # never delete files through a mount we could not remove
        for entry in os.scandir(root):     # the host side stays empty; leftovers are mount points
            if entry.is_dir(follow_symlinks=False):
                for dirpath, _, _ in os.walk(entry.path, topdown=False):
                    try:
                        os.rmdir(dirpath)  # empty directories only: files are never deleted here
                    except OSError:
                        pass
            if os.path.lexists(entry.path):
                log.warning("unexpected entry %s in the sandbox root dir: left alone", entry.path)
            else:
                cleaned.append(f"directory {entry.path}")
        return cleaned

    def executor(self, runtime: str):
        """The interpreter that runs `runtime` here (SandboxError if this host has none)."""
        if self.host_runtimes is None:
            from lambdalet.runtime.hostruntimes import default_runtimes_dir, discover
            from lambdalet.services.runtimes import default_catalogue
            self.host_runtimes = discover(default_catalogue().managed(), runtimes_dir=default_runtimes_dir())
        ex = self.host_runtimes.get(runtime)
        if ex is None:
            raise SandboxError(f"runtime {runtime} is not available on this lambdalet host")
        if ex.fork and ex.prefix != self.python_prefix:    # python_prefix= given: the server's Python from there
            ex = dataclasses.replace(ex, exe=os.path.join(self.python_prefix, "bin", self.python_name),
                                     prefix=self.python_prefix)
        return ex

    def _alloc_uid(self) -> int:
        with self._uid_lock:
            return self._uids.pop()   # KeyError when exhausted: more environments than uids

    def _free_uid(self, uid: int) -> None:
        with self._uid_lock:
            self._uids.add(uid)

    def create(self, spec: EnvironmentSpec, *, log_sink=None) -> NamespaceSandbox:
        return NamespaceSandbox(spec, log_sink, self)

    def close(self) -> None:
        self.zygote.close()
        remove_parent(self.cgroup_parent)
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass                           # another backend still uses the root dir
        else:                              # the last user: leave no empty root dir or lock file behind
            try:
                os.rmdir(self.root_dir)
            except OSError:
                pass
            try:
                os.unlink(self._lock_path)
            except OSError:
                pass
        self._owner.close()


def _open_lock(path: str):
    """(file, alone): exclusive if nobody else holds the lock (then the caller may clean up), else shared.
    Exclusive holders only ever hold it briefly (clean-up, or the last user's close), so waiting for a
    shared lock is short. Retries if a closing last user unlinked the file between our open and lock."""
    while True:
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            fcntl.flock(fh, fcntl.LOCK_SH)
            alone = False
        try:
            if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                return fh, alone
        except FileNotFoundError:
            pass
        fh.close()


libc = ctypes.CDLL(None, use_errno=True)
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts_under(root: str) -> list[str]:
    """Mount points in this mount namespace below `root`, or on it if an environment's root tmpfs;
    deepest first (the order to unmount them)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = _unescape(left.split()[4])
            source = right.split()[1] if len(right.split()) > 1 else ""
            if mp.startswith(root + "/") or (mp == root and source == "lambdalet-root"):
                found.append(mp)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


register_backend("namespace", NamespaceBackend)
