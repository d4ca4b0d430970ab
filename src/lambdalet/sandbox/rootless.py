"""The namespace backend without root ("rootless"): what `--sandbox namespace` gives a server that is
not root (namespace.py's `_open` picks it), when the host lets unprivileged users make user namespaces.

Each environment is jail.py's jail with one step first: the fork server's child unshares a user
namespace of its own, mapping ONE uid (ENV_UID inside, AWS's sbx_user1051) to the server's own host uid
(the only mapping an unprivileged process may write; no newuidmap, so no subordinate range). That
namespace owns the mount/pid/net/ipc/uts/cgroup namespaces unshared with it, so the child may build the
same private root (tmpfs, read-only binds, /proc masked, pivot_root), then drops every capability
(bounding set included), sets no_new_privs and loads the same seccomp filter. Tasks are bounded by
RLIMIT_NPROC, which the kernel counts per user namespace: one environment's own pids limit.

What cannot hold without root, said at start-up (isolation()) and in docs/threat-model.md:
  - one host uid for everything: environments run as the server's own uid (an escape from the
    namespaces lands as the server's user, who owns the data dir and master.key);
  - no cgroup unless systemd delegated one (a cgroup v2 group of the server's own, writable, with memory,
    cpu and pids: `systemd-run --user -p Delegate=yes`; then environments get the root mode's cgroups):
    no memory or CPU limit, no OOM report, no cgroup kill (a timeout kills the PID namespace's PID 1,
    which ends every process in it), freeze = SIGSTOP of each of its processes;
  - no egress (veth pairs and nftables need root; pasta/slirp4netns are not used): only lo;
  - no pre-isolated slots and no neutral overlays: interpreter and SDK paths show in the mount table;
  - unpacked code is written as the server's own uid (codepkg/unpack.py), on a plain /dev/shm dir.
The host tracks an environment by its PID 1 (the fork server reports its host pid), through a pidfd.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import sys
import tempfile

from lambdalet.runtime import bridge
from lambdalet.runtime.init import CONFIG
from lambdalet.sandbox import egress_policy
from lambdalet.sandbox import cgroups
from lambdalet.sandbox.api import EnvironmentSpec, register_backend
from lambdalet.sandbox.cgroups import Cgroup, Limits
from lambdalet.sandbox.namespace import NamespaceBackend, NamespaceSandbox
from lambdalet.sandbox.zygote import ForkServer

log = logging.getLogger(__name__)
ENV_UID = 993                   # the uid (and gid) functions see, as on AWS (sbx_user1051)
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID = 0x10000000, 0x20000, 0x20000000
MISSING = ["per-environment host uid: environments run as the server's own host uid",
           "egress: environments have only lo (veth/nftables need root; pasta/slirp4netns not used)",
           "pre-isolated slots and neutral /var/lang views (host paths show in an environment's mount table)"]
NO_CGROUP = ("cgroup limits: no memory or CPU limit, no OOM report (tasks bounded by RLIMIT_NPROC per "
             "environment), because {why}")
_libc = ctypes.CDLL(None, use_errno=True)


def userns_unavailable_reason() -> str | None:
    """None if this process may make a user namespace owning new mount and pid namespaces, else why not."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                return "user.max_user_namespaces is 0"
    except (OSError, ValueError):
        pass
    pid = os.fork()
    if pid == 0:                   # only a syscall between fork and _exit: safe in a threaded server
        os._exit(0 if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return ("unprivileged user namespaces are disabled here (kernel.unprivileged_userns_clone, "
                "an AppArmor/SELinux policy, or a seccomp filter around this process)")
    return None


def delegated_cgroup_reason() -> str | None:
    """None if this server's own cgroup v2 group is delegated to it with memory, cpu and pids (as under
    `systemd-run --user -p Delegate=yes`): environments then get the root mode's cgroups (cgroups.py)."""
    try:
        if cgroups.detect_version() != 2:
            return "cgroup v1: only root makes groups there"
    except RuntimeError as e:
        return str(e)
    own = f"{cgroups.ROOT}{cgroups._own_path(None)}".rstrip("/")
    if not all(os.access(p, os.W_OK) for p in (own, f"{own}/cgroup.procs", f"{own}/cgroup.subtree_control")):
        return f"this server's cgroup {own} is not delegated to it (start it with `systemd-run --user -p Delegate=yes`)"
    with open(f"{own}/cgroup.controllers") as f:
        missing = [c for c in cgroups.V2_CONTROLLERS if c not in f.read().split()]
    if missing:
        return f"the controllers {', '.join(missing)} are not delegated to {own}"
    return None


class PidNamespace:
    """An environment's processes, known by its PID 1 (a pidfd) and the PID namespace it leads."""

    def __init__(self, pid1: int, parents: tuple[int, int]):
        self.fd = os.pidfd_open(pid1)
        with open(f"/proc/{pid1}/stat") as f:          # the pidfd is ours: check it is the zygote's (or, still
            if int(f.read().rsplit(")", 1)[1].split()[1]) not in parents:   # exiting, its child's) child
                os.close(self.fd)
                raise ProcessLookupError(f"pid {pid1} is not an environment of this fork server")
        st = os.stat(f"/proc/{pid1}/ns/pid")
        self.ns = (st.st_dev, st.st_ino)
        self.pid1 = pid1

    def pids(self) -> list[int]:
        """Host pids of its processes: /proc entries whose PID namespace is its own (a scan: ~1 ms)."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    st = os.stat(f"/proc/{d}/ns/pid")
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == self.ns:
                    out.append(int(d))
        return out

    def signal_all(self, sig: int) -> None:
        """SIGSTOP/SIGCONT every process, again until a pass finds none new (one forking meanwhile)."""
        done: set[int] = set()
        for _ in range(8):
            new = [p for p in self.pids() if p not in done]
            if not new:
                return
            for p in new:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            done.update(new)

    def rss_mb(self) -> int:
        total = 0
        for p in self.pids():
            try:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                pass
        return total >> 20

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL PID 1: the kernel then kills every process of the namespace (stopped ones too) and
        PID 1 exits once they are gone."""
        try:
            signal.pidfd_send_signal(self.fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)        # readable once the process has exited
        if not poller.poll(timeout_s * 1000):
            log.error("environment PID 1 %d did not exit within %.0f s of SIGKILL", self.pid1, timeout_s)
        os.close(self.fd)


class RootlessSandbox(NamespaceSandbox):
    """NamespaceSandbox's life cycle with no cgroup, uid allocation, slot or egress link."""

    def __init__(self, spec: EnvironmentSpec, log_sink, backend: "RootlessBackend"):
        super().__init__(spec, log_sink, backend)
        self._ns: PidNamespace | None = None
        self._b: RootlessBackend = backend

    def _launch(self) -> socket.socket:
        spec, b = self.spec, self._b
        fam = b.family(b.executor(spec.runtime))
        icfg = self._runtime_config(fam)
        if b.egress_policy(spec).needs_link:
            log.warning("%s: its egress policy allows outbound traffic, but rootless environments have none",
                        spec.function_arn)
        if b.delegated:                    # the root mode's limits, in the group systemd delegated to us
            self._limits = Limits(spec.memory_mb, b.pids_max)
            self._cg_name = f"{spec.env_id[:48]}-{os.urandom(4).hex()}".replace("/", "_")
            self._cg = Cgroup.create(self._cg_name, self._limits, parent=b.cgroup_parent)
            self._cg.set_cpu_quota(max(self._limits.cpu_quota_us, b.init_cpu_quota_us))
        cfg = b.jail_config(fam, ENV_UID, self._cg, code_dir=spec.code_dir, layers_dir=spec.layers_dir,
                            tmp_mb=spec.ephemeral_mb)
        host, child = socket.socketpair()
        try:
            bridge.send(host, CONFIG, icfg)
            reply = b.zygote.spawn(cfg, child.fileno())
            if reply.get("pid1"):          # 0: set-up failed before PID 1; its error is on the bridge
                self._ns = PidNamespace(reply["pid1"], (b.zygote.pid, reply["pid"]))
        except BaseException:
            host.close()
            raise
        finally:
            child.close()
        self._timings["zygote_fork_ms"] = reply.get("fork_ms")
        return host

    def _kill(self) -> None:
        ns, self._ns = self._ns, None
        cg, self._cg = self._cg, None
        try:
            if ns is not None:
                ns.kill()
        finally:
            if cg is not None:
                cg.destroy()

    def _init_done(self) -> None:
        if self._cg is not None:
            self._cg.set_cpu_quota(self._limits.cpu_quota_us)

    def _do_freeze(self) -> None:
        if self._cg is not None:
            self._cg.freeze(wait=False)
        elif self._ns is not None:
            self._ns.signal_all(signal.SIGSTOP)

    def _do_thaw(self) -> None:
        if self._cg is not None:
            self._cg.thaw()
        elif self._ns is not None:
            self._ns.signal_all(signal.SIGCONT)

    def _max_memory_mb(self) -> int:
        if self._cg is not None:
            return self._cg.max_memory_mb()
        return self._ns.rss_mb() if self._ns else 0

    def _oom_killed(self) -> bool:
        return bool(self._cg and self._cg.oom_kills() > 0)

    def _pids(self) -> list[int]:
        return self._ns.pids() if self._ns else []


class RootlessBackend(NamespaceBackend):
    """Takes NamespaceBackend's options (the platform passes the same); those about cgroups, uids, slots
    and egress have no effect here (see the module's doc)."""
    name = "rootless"

    def __init__(self, *, root_dir: str | None = None, pids_max: int = 1024, python_prefix: str | None = None,
                 seccomp_profile: str = "default", host_runtimes=None, slots: int = 0, egress: str = "none",
                 api_forwarder=None, cgroup_parent: str = "lambdalet", init_cpu_quota_us: int = 100_000,
                 **_ignored):
        if os.geteuid() == 0:
            raise PermissionError("the rootless backend is for unprivileged servers: as root, use 'namespace'")
        reason = userns_unavailable_reason()
        if reason:
            raise PermissionError(f"no sandbox without root here: {reason}; run as root, or pass "
                                  "--sandbox process (NO isolation, development only)")
        self.python_prefix = os.path.realpath(python_prefix or sys.base_prefix)
        self.python_name = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.host_runtimes, self.api_forwarder = host_runtimes, api_forwarder
        self.pids_max, self.seccomp_profile = pids_max, seccomp_profile
        self.cgroup_parent, self.init_cpu_quota_us = cgroup_parent.strip("/"), init_cpu_quota_us
        self.no_cgroup = delegated_cgroup_reason()
        self.delegated = self.no_cgroup is None
        self._live_cgroups: set[str] = set()
        self.root_dir = root_dir or os.path.join(tempfile.gettempdir(), f"lambdalet-{os.getuid()}", "root")
        os.makedirs(self.root_dir, mode=0o700, exist_ok=True)    # each environment mounts its root here, privately
        self.slots = None
        self._lang_views: dict[str, str] = {}
        self._net = None
        self.egress_default = "none"
        self.default_policy = egress_policy.Policy("none")
        self._requested = {"egress": egress, "slots": slots}
        self.zygote = ForkServer(python_sdk=self.runtimes().forked_python_sdk())

    def isolation(self) -> dict:
        asked = [f"--egress {self._requested['egress']} (none here)"] if self._requested["egress"] != "none" else []
        asked += [f"--sandbox-slots {self._requested['slots']} (none here)"] if self._requested["slots"] else []
        limits = ("cgroup v2 limits in the delegated group (memory, CPU, pids)" if self.delegated
                  else f"{self.pids_max} tasks (RLIMIT_NPROC)")
        missing = MISSING + ([] if self.delegated else [NO_CGROUP.format(why=self.no_cgroup)]) + asked
        return {"mode": "rootless",
                "summary": f"rootless: a user namespace per environment (uid {ENV_UID} inside = host uid "
                           f"{os.getuid()}, the server's own), mount/pid/net/ipc/uts/cgroup namespaces, pivot_root, "
                           f"no capabilities, no_new_privs, seccomp, {limits}",
                "missing": missing, "host_uid": os.getuid(), "env_uid": ENV_UID, "cgroup_delegated": self.delegated}

    def jail_config(self, fam, uid, cg, **kw) -> dict:
        cfg = super().jail_config(fam, uid, cg, **kw)
        cfg["rootless"] = {"host_uid": os.getuid(), "host_gid": os.getgid(), "nproc": self.pids_max}
        return cfg

    def create(self, spec: EnvironmentSpec, *, log_sink=None) -> RootlessSandbox:
        return RootlessSandbox(spec, log_sink, self)

    def cleanup_stale(self) -> list[str]:
        return []          # nothing outlives the fork server: environments die with it (PDEATHSIG), no mounts

    def close(self) -> None:
        self.zygote.close()
        if self.delegated:
            cgroups.remove_parent(self.cgroup_parent)
        try:
            os.rmdir(self.root_dir)
        except OSError:
            pass


register_backend("rootless", RootlessBackend)
