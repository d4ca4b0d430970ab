"""The `namespace` backend (default): Linux namespaces + cgroup + seccomp, forked from a zygote.

Why rootful set-up then setresuid (and no user namespace): the trusted fork-server child builds the
environment as real root (mounts, cgroup join, pivot_root) and then becomes a distinct unprivileged
HOST uid per environment with an empty capability bounding set. The tenant therefore holds no
capability in any namespace (a user namespace would hand it a full set inside, the classic door to
kernel bugs; seccomp also refuses creating one), an escape lands as an unprivileged uid that owns
nothing on the host, and environments cannot signal or trace each other. It is also the cheaper path.

With `slots=N` the backend keeps pre-isolated slots (slots.py) of the runtimes that fork (by default)
and starts an environment from one when it can: claiming costs the cgroup's limits, up to three mounts
in the fork server's mount namespace and the CONFIG frame; everything else was done ahead, for no tenant. Anything wrong with a
claim destroys that slot and builds the environment from scratch, as without slots.
"""
from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import os
import re
import select
import socket
import sys
import threading
import time
import uuid

from lambdalet.runtime import bridge, launch
from lambdalet.runtime.init import CONFIG
from lambdalet.sandbox import egress_policy, mounts
from lambdalet.sandbox.api import Backend, CapacityExceeded, EnvironmentSpec, SandboxError, register_backend
from lambdalet.sandbox.egress import DEFAULT_SUBNET, EgressUnavailable, HostNetwork, Link
from lambdalet.sandbox.cgroups import (Cgroup, Limits, account_group, kill_and_remove, pids_room, remove_empty_account_groups,
                                       remove_parent, set_parent_pids, stale_children)
from lambdalet.sandbox.host import BridgedSandbox
from lambdalet.sandbox.slots import Slot, SlotPool
from lambdalet.sandbox.zygote import ForkServer

log = logging.getLogger(__name__)
MNT_DETACH = 2
SLOT_MEMORY_MB = 128            # an unclaimed slot's limit (Lambda's smallest MemorySize); claiming sets the function's
SLOT_BUILD_TIMEOUT_S = 10.0
START_PIDS = 16                 # tasks a new environment needs to start (init, the runtime and their threads)


@dataclasses.dataclass(frozen=True)
class Family:
    """What an environment's jail and init depend on besides its function: the slot pool's key."""
    lang_prefix: str             # host dir bound at /var/lang
    hide: tuple[str, ...]        # inside paths covered by an empty tmpfs (the interpreter's site-packages)
    python_fork: bool            # the runtime is our python_bootstrap forked from init (pyfork.py)
    inner_exe: str               # the interpreter's path inside
    sdk_bind: tuple[str, str] | None = None   # (host dir of its AWS SDK, where inside): runtime/pysdk.py, nodesdk.py


class NamespaceSandbox(BridgedSandbox):
    init_outlives_tenant = True          # init is PID 1 of the environment's PID namespace: signals from inside miss it

    def __init__(self, spec: EnvironmentSpec, log_sink, backend: "NamespaceBackend"):
        super().__init__(spec, log_sink, api_forwarder=backend.api_forwarder)
        self._b = backend
        self._cg: Cgroup | None = None
        self._uid: int | None = None
        self._slot_dir: str | None = None     # set when started from a slot: its dir and mounts are ours to remove
        self._link: Link | None = None        # its egress link (egress.py), if its policy allows anything

    def _runtime_config(self, fam: Family) -> dict:
        """The runtime's configuration: it goes straight to the environment's init over the bridge (it
        waits in the socket buffer until init reads it, after seccomp), never through the fork server."""
        spec = self.spec
        layout = launch.Layout(python_exe=fam.inner_exe, node_exe=fam.inner_exe)
        has_bootstrap = os.path.exists(os.path.join(spec.code_dir, "bootstrap"))
        return {"argv": launch.runtime_argv(spec.runtime, layout, has_bootstrap),
                "env": launch.runtime_env(spec, layout), "cwd": "/var/task", "port": 9001, "pid1": True,
                "python_fork": fam.python_fork, "account_id": spec.account_id}

    def _launch(self) -> socket.socket:
        spec, b = self.spec, self._b
        fam = b.family(b.executor(spec.runtime))     # this runtime's own interpreter; its prefix becomes /var/lang
        icfg = self._runtime_config(fam)
        self._limits = Limits(spec.memory_mb, b.pids_max)
        account = b.account_group(spec.account_id)       # None: no per-account pids limit configured
        b.check_pids_room(account)                        # CapacityExceeded (429) rather than a failed fork
        policy = b.egress_policy(spec)
        # Slots have a link when the server's default allows anything: a function needing one otherwise builds.
        slot_ok = not policy.needs_link or b.egress_default != "none"
        slot = b.slots.take(fam) if b.slots is not None and slot_ok else None
        if slot is not None:
            try:
                return self._claim(slot, icfg, account, policy)
            except Exception as e:
                log.warning("slot %s could not be claimed, building an environment instead: %s", slot.name, e)
                slot.sock.close()
                try:
                    self._kill()
                except Exception:
                    log.exception("slot %s could not be destroyed", slot.name)
                self._reader = bridge.FrameReader()
                self._timings.clear()
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.env_id)[:64] + "-" + uuid.uuid4().hex[:8]
        b._live_cgroups.add(name)
        self._cg_name = name
        self._cg = Cgroup.create(name, self._limits, parent=b.cgroup_parent, account=account)
        # Init runs with at least one full vCPU, as Lambda boosts the init phase; _init_done restores it.
        self._cg.set_cpu_quota(max(self._limits.cpu_quota_us, b.init_cpu_quota_us))
        self._uid = b._alloc_uid()
        if policy.needs_link:
            t0 = time.monotonic()
            self._link = b.network().make_link()
            if policy != b.default_policy:
                b.network().bind(self._link, policy)
            self._timings["egress_link_ms"] = round((time.monotonic() - t0) * 1000, 3)
        jail_cfg = b.jail_config(fam, self._uid, self._cg, code_dir=spec.code_dir, layers_dir=spec.layers_dir,
                                 tmp_mb=spec.ephemeral_mb, link=self._link)
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

    def _claim(self, slot: Slot, icfg: dict, account: str | None, policy) -> socket.socket:
        """Make a slot this environment: from here on its cgroup, uid and mounts are ours (destroyed with
        us, or by the caller if the claim fails)."""
        spec, b = self.spec, self._b
        t0 = time.monotonic()
        self._cg, self._cg_name, self._uid, self._slot_dir = slot.cgroup, slot.name, slot.uid, slot.dir
        self._link = slot.link
        idle = select.poll()                     # poll, not select: a busy server's fds pass 1024
        idle.register(slot.sock, select.POLLIN)
        if idle.poll(0):
            raise SandboxError("the slot said something while idle (its init or runtime died?)")

        def limits() -> None:
            if account is not None:      # built for no account: its tasks now count in the account's pids
                self._cg.move_to_account(b.cgroup_parent, account, self._limits)
            self._cg.set_memory(spec.memory_mb)
            self._cg.set_cpu_quota(max(self._limits.cpu_quota_us, b.init_cpu_quota_us))   # init's boost, as above

        # The code, layers and /tmp are mounted in the fork server's namespace (zygote.py), while we set the limits.
        b.zygote.request_mounts({"op": "claim", "slot_dir": slot.dir, "code_dir": os.path.abspath(spec.code_dir),
                                 "layers_dir": os.path.abspath(spec.layers_dir) if spec.layers_dir else None,
                                 "tmp_mb": spec.ephemeral_mb}, meanwhile=limits)
        if slot.link is not None and policy != b.default_policy:
            b.network().bind(slot.link, policy)       # before CONFIG: no tenant code runs under the default
        self._reader = slot.reader
        bridge.send(slot.sock, CONFIG, icfg)      # after the mounts: init chdirs to /var/task on receipt
        self._timings.update({"slot": True, "slot_age_s": round(t0 - slot.created, 3),
                              "claim_ms": round((time.monotonic() - t0) * 1000, 3),
                              **{f"slot_build_{k}": v for k, v in slot.timings.items()}})
        return slot.sock

    def _kill(self) -> None:
        cg, self._cg = self._cg, None
        try:
            if cg is not None:
                cg.destroy()
            self._b._live_cgroups.discard(getattr(self, "_cg_name", None))
        finally:
            slot_dir, self._slot_dir = self._slot_dir, None
            try:
                if slot_dir is not None:
                    self._b.remove_slot_dir(slot_dir)
            finally:
                if self._uid is not None:
                    self._b._free_uid(self._uid)
                    self._uid = None
                link, self._link = self._link, None
                if link is not None:                  # after the processes: nothing uses it any more
                    self._b.network().release(link)

    def _init_done(self) -> None:
        self._cg.set_cpu_quota(self._limits.cpu_quota_us)

    def _do_freeze(self) -> None:
        self._cg.freeze(wait=False)     # off the invoke's path: the request stops the tasks (cgroups.py)

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
                 init_cpu_quota_us: int = 100_000, host_runtimes=None, slots: int = 0,
                 slot_runtimes: list[str] | None = None, slot_ttl_s: float = 300.0, slots_dir: str | None = None,
                 account_pids: int | None = None, platform_pids: int | None = None, egress: str = "none",
                 egress_subnet: str = DEFAULT_SUBNET, api_forwarder=None):
        """slots: idle pre-isolated slots kept per family (0: none); slot_runtimes: the runtimes to keep
        them for (default: those whose runtime forks, the server's own Python); slot_ttl_s: how long an
        idle slot lives, and how long after the last cold start the pool is refilled; slots_dir: the
        slots' directories (default: beside root_dir). egress: the default policy of environments' outbound
        traffic, none | public | all (egress_policy.py); a function's tag may set its own."""
        if os.geteuid() != 0:
            raise PermissionError("the 'namespace' backend needs root (it builds namespaces and cgroups)")
        if slots > 0 and not mounts.supported():
            log.warning("no sandbox slots: this kernel lacks open_tree/mount_setattr (Linux >= 5.12)")
            slots = 0
        if "/" in cgroup_parent.strip("/") or cgroup_parent.strip("/") in ("", ".", ".."):
            raise ValueError(f"cgroup_parent must be one plain name, not {cgroup_parent!r}")
        self.python_prefix = os.path.realpath(python_prefix or sys.base_prefix)
        self.python_name = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.host_runtimes = host_runtimes        # runtime.hostruntimes.HostRuntimes; discovered when None
        self.api_forwarder = api_forwarder        # every environment's path to the server's API (runtime/api_proxy.py)
        self.pids_max, self.root_dir, self.cgroup_parent = pids_max, root_dir, cgroup_parent.strip("/")
        self.account_pids, self.platform_pids = account_pids, platform_pids
        self._account_groups: dict[str, str] = {}     # account id -> its group's name (made once)
        self._account_lock = threading.Lock()
        self.seccomp_profile = seccomp_profile
        self.init_cpu_quota_us = init_cpu_quota_us
        self.slots_dir = os.path.realpath(slots_dir or os.path.realpath(root_dir).rstrip("/") + "-slots").rstrip("/")
        self.slots: SlotPool | None = None
        os.makedirs(os.path.dirname(os.path.realpath(root_dir).rstrip("/")), mode=0o755, exist_ok=True)
        self._uids = set(range(uid_base, uid_base + uid_count))
        self._uid_lock = threading.Lock()
        self._live_cgroups: set[str] = set()
        # Shared while open; exclusive only to clean up, so a live backend's environments are never touched.
        self._lock_path = os.path.realpath(root_dir).rstrip("/") + ".lock"
        self._lang_dir = os.path.realpath(root_dir).rstrip("/") + "-lang"     # neutral views of /var/lang
        self._owner, alone = _open_lock(self._lock_path)
        os.makedirs(root_dir, mode=0o755, exist_ok=True)     # under the lock: a closing last user removes it
        if alone:
            self.cleanup_stale()
            fcntl.flock(self._owner, fcntl.LOCK_SH)
        else:
            log.info("another live sandbox backend uses %s / cgroup %s: no stale clean-up", root_dir, cgroup_parent)
        if platform_pids is not None:
            set_parent_pids(self.cgroup_parent, platform_pids)
        self._net: HostNetwork | None = None
        self._net_lock = threading.Lock()
        self._egress_subnet = egress_subnet
        self.egress_default = egress
        if egress != "none":
            try:
                self.network()                        # made now: a host that cannot do it says so at start
            except (EgressUnavailable, OSError) as e:
                log.error("EGRESS OFF: environments get no outbound network (the default %r needs `ip` and "
                          "`nft`): %s", egress, e)
                self.egress_default = "none"
        self.default_policy = egress_policy.Policy(self.egress_default)
        self._own_lang_dir = os.path.join(self._lang_dir, uuid.uuid4().hex[:12])   # this backend's views
        self._lang_views = self._neutral_lang_views(self._own_lang_dir)
        self.zygote = ForkServer(own_mount_namespace=slots > 0,   # the slots' mounts live there, not on the host
                                 python_sdk=self.runtimes().forked_python_sdk())
        if slots > 0:
            os.makedirs(self.slots_dir, mode=0o700, exist_ok=True)
            self.slots = SlotPool(self._build_slot, self._destroy_slot, lambda: self._slot_families(slot_runtimes),
                                  size=slots, ttl_s=slot_ttl_s)

    def _neutral_lang_views(self, where: str) -> dict[str, str]:
        """Each interpreter prefix this host runs, as an overlay whose mount table entry names no host
        path (mounts.neutral_view), made before the fork server copies the mount table; a prefix that
        cannot get one is bound as it is (its path then shows in /proc/self/mountinfo)."""
        prefixes = {self.python_prefix} | {ex.prefix for ex in self.runtimes().executors() if ex.prefix}
        # Node's AWS SDK dirs too (runtime/nodesdk.py); Python's forked one is a tmpfs copy in the fork server.
        prefixes |= {ex.sdk_dir for ex in self.runtimes().executors()
                     if getattr(ex, "sdk_dir", "") and ex.runtime.startswith("nodejs")}
        views = {}
        for n, prefix in enumerate(sorted(prefixes)):
            try:
                views[prefix] = mounts.neutral_view(prefix, os.path.join(where, str(n)))
            except OSError as e:
                log.warning("interpreter prefix %s is bound as it is (its path shows inside environments): %s",
                            prefix, e)
        return views

    @staticmethod
    def _drop_lang_views(where: str) -> list[str]:
        if not os.path.isdir(where):
            return []
        try:
            cleaned = [f"mount {mp}" for mp in mounts.unmount_tree(where)]
        except OSError as e:
            log.error("interpreter views under %s could not be unmounted: %s", where, e)
            return []
        mounts.remove_empty_tree(where)
        return cleaned

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
        remove_empty_account_groups(self.cgroup_parent)
        cleaned += self._cleanup_root_dir()
        cleaned += self._cleanup_slots_dir()
        if os.path.isdir(self._lang_dir):          # other (dead) backends' views; never this one's own
            for entry in os.scandir(self._lang_dir):
                if entry.path != getattr(self, "_own_lang_dir", None):
                    cleaned += self._drop_lang_views(entry.path)
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

    def _cleanup_slots_dir(self) -> list[str]:
        """A crashed server's slots: their directories (their mounts ended with its fork server's mount
        namespace; any left in this namespace, by an older server, are unmounted first)."""
        root = self.slots_dir
        if root.count("/") < 2 or not os.path.isdir(root):
            return []
        try:
            cleaned = [f"mount {mp}" for mp in mounts.unmount_tree(root)]
        except OSError as e:
            log.error("stale slot mounts under %s could not be unmounted: %s", root, e)
            return []
        for entry in os.scandir(root):
            if entry.is_dir(follow_symlinks=False):
                mounts.remove_empty_tree(entry.path)
                cleaned += [] if os.path.lexists(entry.path) else [f"directory {entry.path}"]
        return cleaned

    # --- outbound networking (egress.py) --------------------------------------------------------
    def network(self) -> HostNetwork:
        """This server's nftables table and links, made on first need (the default `none` needs none)."""
        with self._net_lock:
            if self._net is None:
                self._net = HostNetwork(self.cgroup_parent, self.egress_default, self._egress_subnet)
            return self._net

    def egress_policy(self, spec: EnvironmentSpec) -> egress_policy.Policy:
        """The function's policy (its tag), else the default; a tag that does not parse allows nothing."""
        try:
            return egress_policy.parse(spec.egress, self.egress_default)
        except egress_policy.PolicyError as e:
            log.warning("%s: %s: no outbound network for its environments", spec.function_arn, e)
            return egress_policy.Policy("none")

    # --- per-account pids (cgroups.py) ---------------------------------------------------------
    def account_group(self, account_id: str) -> str | None:
        """The account's group under the parent (made once, with --account-pids), or None."""
        if self.account_pids is None:
            return None
        with self._account_lock:
            if account_id not in self._account_groups:
                self._account_groups[account_id] = account_group(self.cgroup_parent, account_id, self.account_pids)
            return self._account_groups[account_id]

    def check_pids_room(self, account: str | None) -> None:
        """Refuse a new environment whose start would hit the account's or the platform's pids limit."""
        if self.account_pids is None and self.platform_pids is None:
            return
        if pids_room(self.cgroup_parent, account) < START_PIDS:
            raise CapacityExceeded("the processes and threads of this account's execution environments (or of "
                                   "all of them) are at their limit")

    # --- slots (slots.py) ------------------------------------------------------------------------
    def family(self, ex) -> Family:
        inner = ex.inner_exe or f"/var/lang/bin/{self.python_name}"
        hide = f"/var/lang/lib/{os.path.basename(inner) if ex.runtime.startswith('python') else self.python_name}" \
               "/site-packages"            # the host interpreter's packages
        sdk_dir = getattr(ex, "sdk_dir", "")
        # Node's SDK is bound from its neutral view (as the prefixes are); the forked Python's is not viewed
        sdk = (self._lang_views.get(sdk_dir, sdk_dir), getattr(ex, "sdk_inner", "")) if sdk_dir else None
        prefix = ex.prefix or self.python_prefix
        python_sdk = sdk is not None and ex.runtime.startswith("python")     # it covers the hidden site-packages
        return Family(lang_prefix=self._lang_views.get(prefix, prefix), hide=() if python_sdk else (hide,),
                      inner_exe=inner,
                      python_fork=launch.family(ex.runtime) == "python" and ex.fork, sdk_bind=sdk)   # exec any other Python

    def isolation(self) -> dict:
        return {"mode": "namespace", "summary": "root: namespaces, pivot_root, seccomp, a host uid per environment, "
                f"cgroup limits, egress {self.egress_default}", "missing": []}

    def jail_config(self, fam: Family, uid: int, cg: Cgroup | None, *, code_dir: str | None = None,
                    layers_dir: str | None = None, tmp_mb: int = 512, slot_dir: str = "", link: Link | None = None) -> dict:
        binds = [("/usr", "/usr"), (fam.lang_prefix, "/var/lang")] + ([fam.sdk_bind] if fam.sdk_bind else [])
        # The bootstraps are copied, not bound: a bind would show the checkout's path in /proc/self/mountinfo.
        copies = [(os.path.join(launch.RUNTIME_DIR, f), f"/var/runtime/{f}") for f in launch.RUNTIME_FILES]
        if code_dir:
            binds.append((os.path.abspath(code_dir), "/var/task"))
        if layers_dir:
            binds.append((os.path.abspath(layers_dir), "/opt"))
        binds += [(p, p) for p in ("/etc/ld.so.cache", "/etc/localtime") if os.path.exists(p)]
        cfg = {"root_dir": self.root_dir, "uid": uid, "cgroup_procs": cg.procs_files() if cg else [], "binds": binds, "copies": copies,
               "hide": list(fam.hide), "tmp_mb": tmp_mb, "seccomp_profile": self.seccomp_profile}
        if slot_dir:
            cfg.update(slot_dir=slot_dir, python_fork=fam.python_fork)
        if link is not None:
            cfg["net"] = {**link.jail(), "nameservers": self.network().nameservers}
        return cfg

    def _slot_families(self, runtimes: list[str] | None) -> list[Family]:
        if runtimes is None:
            host = self.runtimes()
            runtimes = [r for r in host.identifiers() if host.get(r).fork]
        return [self.family(self.executor(r)) for r in runtimes]

    def _build_slot(self, fam: Family) -> Slot:
        t0 = time.monotonic()
        name = f"slot-{uuid.uuid4().hex[:12]}"
        slot_dir = os.path.join(self.slots_dir, name)
        cg = uid = sock = link = None
        try:
            self._live_cgroups.add(name)
            cg = Cgroup.create(name, Limits(SLOT_MEMORY_MB, self.pids_max), parent=self.cgroup_parent)
            cg.set_cpu_quota(self.init_cpu_quota_us)
            uid = self._alloc_uid()
            if self.egress_default != "none":        # under the default policy until claimed (namespace._claim)
                link = self.network().make_link()
            sock, child = socket.socketpair()       # the fork server makes slot_dir a shared mount, then forks
            try:
                reply = self.zygote.spawn(self.jail_config(fam, uid, cg, slot_dir=slot_dir, link=link),
                                          child.fileno())
            finally:
                child.close()
            reader = bridge.FrameReader()
            timings = {"zygote_fork_ms": reply.get("fork_ms"), **self._await_slot(sock, reader)}
            timings["total_ms"] = round((time.monotonic() - t0) * 1000, 3)
            return Slot(fam, name, cg, uid, slot_dir, sock, reader, timings=timings, link=link)
        except BaseException:
            self._destroy_slot(Slot(fam, name, cg, uid, slot_dir, sock, None, link=link))
            raise

    @staticmethod
    def _await_slot(sock: socket.socket, reader: bridge.FrameReader) -> dict:
        deadline = time.monotonic() + SLOT_BUILD_TIMEOUT_S
        while True:
            frame = reader.next_frame()
            if frame is not None:
                kind, hdr, body = frame
                if kind == bridge.SLOT_READY:
                    return {k: v for k, v in hdr.items() if isinstance(v, (int, float))}
                said = hdr.get("error") or body[-2000:].decode(errors="replace") or f"frame kind {kind}"
                raise SandboxError(f"slot set-up failed: {said}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxError("slot set-up timed out")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise SandboxError("slot set-up failed: the bridge closed")
            reader.feed(data)

    def _destroy_slot(self, slot: Slot) -> None:
        """An unclaimed (or half-built) slot: processes, cgroup, dir and mounts, uid, bridge."""
        try:
            if slot.cgroup is not None:
                slot.cgroup.destroy()
            self._live_cgroups.discard(slot.name)
            self.remove_slot_dir(slot.dir)
        finally:
            if slot.uid is not None:
                self._free_uid(slot.uid)
            if slot.sock is not None:
                slot.sock.close()
            if slot.link is not None:
                self.network().release(slot.link)

    def remove_slot_dir(self, slot_dir: str) -> None:
        """Unmount a slot's code, layers and /tmp (in the fork server's namespace) and remove its dir."""
        if os.path.dirname(slot_dir) != self.slots_dir:        # only ever our own slots
            raise ValueError(f"not a slot dir: {slot_dir}")
        try:
            self.zygote.request_mounts({"op": "release", "slot_dir": slot_dir})
        except (RuntimeError, OSError) as e:     # a fork server that is gone took its mounts with it
            log.debug("slot %s: %s", slot_dir, e)
        mounts.remove_empty_tree(slot_dir)

    def counts(self) -> dict[str, int]:
        return self.slots.counts() if self.slots is not None else {"idle_slots": 0}

    def runtimes(self):
        """What this host runs (runtime/hostruntimes.HostRuntimes), discovered on first use if not given."""
        if self.host_runtimes is None:
            from lambdalet.runtime.hostruntimes import discover_managed
            self.host_runtimes = discover_managed()
        return self.host_runtimes

    def executor(self, runtime: str):
        """The interpreter that runs `runtime` here (SandboxError if this host has none)."""
        ex = self.runtimes().get(runtime)
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
        if self.slots is not None:
            self.slots.close()
        self.zygote.close()
        if self._net is not None:                  # every environment is gone with the fork server
            self._net.close()
        remove_parent(self.cgroup_parent)
        self._drop_lang_views(self._own_lang_dir)
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass                           # another backend still uses the root dir
        else:                              # the last user: leave no empty root dir or lock file behind
            for d in (self.root_dir, self.slots_dir, self._lang_dir):
                try:
                    os.rmdir(d)
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


def _open(**options) -> Backend:
    """`namespace` is the strongest isolation this host allows: as root the backend above, otherwise the
    same jail in a user namespace of its own (rootless.py), which says what it cannot give."""
    if os.geteuid() == 0:
        return NamespaceBackend(**options)
    from lambdalet.sandbox.rootless import RootlessBackend
    return RootlessBackend(**options)


register_backend("namespace", _open)
