"""The `namespace` backend (default): Linux namespaces + cgroup + seccomp, forked from a zygote.

Why rootful set-up then setresuid (and no user namespace): the trusted fork-server child builds the
environment as real root (mounts, cgroup join, pivot_root) and then becomes a distinct unprivileged
HOST uid per environment with an empty capability bounding set. The tenant therefore holds no
capability in any namespace (a user namespace would hand it a full set inside, the classic door to
kernel bugs; seccomp also refuses creating one), an escape lands as an unprivileged uid that owns
nothing on the host, and environments cannot signal or trace each other. It is also the cheaper path.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
import uuid

from lambdalet.runtime import launch
from lambdalet.sandbox.api import Backend, EnvironmentSpec, register_backend
from lambdalet.sandbox.cgroups import Cgroup, Limits, remove_parent
from lambdalet.sandbox.host import BridgedSandbox
from lambdalet.sandbox.zygote import ForkServer


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
        self._cg = Cgroup.create(name, self._limits, parent=b.cgroup_parent)
        # Init runs with at least one full vCPU, as Lambda boosts the init phase; _init_done restores it.
        self._cg.set_cpu_quota(max(self._limits.cpu_quota_us, b.init_cpu_quota_us))
        self._uid = b._alloc_uid()
        layout = launch.Layout(python_exe=f"/var/lang/bin/{b.python_name}")
        binds = [("/usr", "/usr"), (b.python_prefix, "/var/lang"), (launch.RUNTIME_DIR, "/var/runtime"),
                 (os.path.abspath(spec.code_dir), "/var/task")]
        if spec.layers_dir:
            binds.append((os.path.abspath(spec.layers_dir), "/opt"))
        binds += [(p, p) for p in ("/etc/ld.so.cache", "/etc/localtime") if os.path.exists(p)]
        has_bootstrap = os.path.exists(os.path.join(spec.code_dir, "bootstrap"))
        jail_cfg = {
            "root_dir": b.root_dir, "uid": self._uid, "cgroup_procs": self._cg.procs_files(), "binds": binds,
            "hide": [f"/var/lang/lib/{b.python_name}/site-packages"],   # the host interpreter's packages
            "tmp_mb": spec.ephemeral_mb, "seccomp_profile": b.seccomp_profile,
            "init": {"argv": launch.runtime_argv(spec.runtime, layout, has_bootstrap),
                     "env": launch.runtime_env(spec, layout), "cwd": "/var/task", "port": 9001, "pid1": True},
        }
        host, child = socket.socketpair()
        try:
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
    name = "namespace"

    def __init__(self, *, uid_base: int = 200_000, uid_count: int = 50_000, pids_max: int = 1024,
                 root_dir: str = "/run/lambdalet/root", cgroup_parent: str = "lambdalet",
                 python_prefix: str | None = None, seccomp_profile: str = "default",
                 init_cpu_quota_us: int = 100_000):
        if os.geteuid() != 0:
            raise PermissionError("the 'namespace' backend needs root (it builds namespaces and cgroups)")
        self.python_prefix = os.path.realpath(python_prefix or sys.base_prefix)
        self.python_name = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.pids_max, self.root_dir, self.cgroup_parent = pids_max, root_dir, cgroup_parent
        self.seccomp_profile = seccomp_profile
        self.init_cpu_quota_us = init_cpu_quota_us
        os.makedirs(root_dir, mode=0o755, exist_ok=True)
        self._uids = set(range(uid_base, uid_base + uid_count))
        self._uid_lock = threading.Lock()
        self.zygote = ForkServer()

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


register_backend("namespace", NamespaceBackend)
