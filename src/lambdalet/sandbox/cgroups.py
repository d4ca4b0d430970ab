"""One cgroup per environment, speaking cgroup v1 (separate controller trees) or v2 (unified).

v1 is what this host has (the v2 tree has no controllers). Each environment's group is created
under the server's own cgroup (from /proc/self/cgroup) + "/lambdalet", so limits nest inside
whatever the operator gave the server, and nothing is placed beside other tenants of the machine.

Process ids are capped at three levels, idle (frozen) environments included since their tasks stay
in their groups: each environment (Limits.pids_max, 1,024 as Lambda), each account (an `acct-<id>`
group between the parent and its environments: on v1 in the pids hierarchy only, the one limit it
carries; on v2 a group of its own) and the parent (every environment and slot of this server).
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time
from dataclasses import dataclass

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")
CFS_PERIOD_US = 100_000
MB_PER_VCPU = 1769                     # Lambda: one full vCPU at 1,769 MB


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    pids_max: int = 1024

    @property
    def cpu_quota_us(self) -> int:
        return max(int(CFS_PERIOD_US * self.memory_mb / MB_PER_VCPU), 1000)


def detect_version() -> int:
    try:
        with open(f"{ROOT}/cgroup.controllers") as f:
            if "memory" in f.read().split():
                return 2
    except OSError:
        pass
    if all(os.path.isdir(f"{ROOT}/{c}") for c in V1_CONTROLLERS):
        return 1
    raise RuntimeError("no usable cgroup hierarchy: need v2 with memory, or v1 memory/cpu/pids/freezer")


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for a v1 controller (or the v2 path when controller is None)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            names = ctrls.split(",") if ctrls else []
            if (controller is None and ctrls == "") or (controller in names):
                return path.rstrip("/")
    return ""


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


V2_CONTROLLERS = ("memory", "cpu", "pids")
ACCOUNT_PREFIX = "acct-"                 # an account's group under the parent: acct-<account id>
_v2_parents: dict[str, str] = {}          # parent name -> its directory, fixed at first use


def _enable_v2(group: str) -> None:
    """Enable the controllers environments need for `group`'s children (only those missing)."""
    have = _read(f"{group}/cgroup.subtree_control").split()
    missing = [c for c in V2_CONTROLLERS if c not in have]
    if missing:
        _write(f"{group}/cgroup.subtree_control", " ".join("+" + c for c in missing))


def v2_parent(parent: str = "lambdalet") -> str:
    """The per-server parent group under cgroup v2, with memory/cpu/pids delegated to its children.

    v2's "no internal processes" rule: a (non-root) group can hand controllers to its children only
    while it has no member processes of its own, and the server itself sits in its own group
    (systemd service, container). When enabling fails with EBUSY for that reason, the server moves
    itself into a leaf `<parent>-server` beside the environments' parent and tries again; if other
    processes share its group too, it says how to give it a delegated group of its own. Computed
    once: after the move, /proc/self/cgroup names the leaf, not the group the tree hangs from."""
    if parent in _v2_parents:
        return _v2_parents[parent]
    own = f"{ROOT}{_own_path(None)}".rstrip("/")
    try:
        _enable_v2(own)
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        leaf = f"{own}/{parent}-server"
        os.makedirs(leaf, exist_ok=True)
        _write(f"{leaf}/cgroup.procs", str(os.getpid()))
        try:
            _enable_v2(own)
        except OSError as again:
            if again.errno != errno.EBUSY:
                raise
            raise RuntimeError(
                f"cgroup v2: cannot delegate memory/cpu/pids below {own}: other processes share lambdalet's "
                f"cgroup. Run it in a group of its own, e.g. `systemd-run --scope -p Delegate=yes lambdalet "
                f"serve`, or as a systemd service with Delegate=yes") from again
    base = f"{own}/{parent}"
    os.makedirs(base, exist_ok=True)
    _enable_v2(base)
    _v2_parents[parent] = base
    return base


class Cgroup:
    """Create with `Cgroup.create(name, limits)`; `destroy()` kills every member and removes it."""

    def __init__(self, version: int, dirs: dict[str, str]):
        self.version = version
        self.dirs = dirs                 # controller (or "unified") -> directory
        self._fds: dict[str, int] = {}   # freeze/thaw control files, kept open: they are written per invoke
        self._destroyed = False          # after destroy() nothing (re)opens a descriptor: _fd() refuses

    @classmethod
    def create(cls, name: str, limits: Limits, parent: str = "lambdalet", version: int | None = None,
               account: str | None = None) -> "Cgroup":
        """account: the account group (account_group(), made beforehand) whose pids the group counts in."""
        version = version or detect_version()
        if version == 2:
            cg = cls(2, {"unified": f"{v2_parent(parent)}/{account + '/' if account else ''}{name}"})
        else:
            cg = cls(1, {c: f"{ROOT}/{c}{_own_path(c)}/{parent}/{account + '/' if account and c == 'pids' else ''}{name}"
                         for c in V1_CONTROLLERS})
        try:
            for d in cg.dirs.values():
                os.makedirs(d)
            cg._apply(limits)
        except BaseException:
            cg.destroy()
            raise
        return cg

    def _apply(self, lim: Limits) -> None:
        mem = lim.memory_mb * 1024 * 1024
        if self.version == 2:
            d = self.dirs["unified"]
            _write(f"{d}/memory.max", str(mem))
            if os.path.exists(f"{d}/memory.swap.max"):
                _write(f"{d}/memory.swap.max", "0")
            _write(f"{d}/cpu.max", f"{lim.cpu_quota_us} {CFS_PERIOD_US}")
            _write(f"{d}/pids.max", str(lim.pids_max))
            return
        m = self.dirs["memory"]
        _write(f"{m}/memory.limit_in_bytes", str(mem))
        if os.path.exists(f"{m}/memory.memsw.limit_in_bytes"):   # memory+swap == memory: no swap
            _write(f"{m}/memory.memsw.limit_in_bytes", str(mem))
        _write(f"{self.dirs['cpu']}/cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(f"{self.dirs['cpu']}/cpu.cfs_quota_us", str(lim.cpu_quota_us))
        _write(f"{self.dirs['pids']}/pids.max", str(lim.pids_max))

    def set_memory(self, memory_mb: int) -> None:
        """Change a live group's memory limit (a claimed slot gets its function's MemorySize). v1 keeps
        memory <= memory+swap at every step, so the order depends on the direction."""
        mem = memory_mb * 1024 * 1024
        if self.version == 2:
            _write(f"{self.dirs['unified']}/memory.max", str(mem))
            return
        m = self.dirs["memory"]
        files = [f"{m}/memory.limit_in_bytes"]
        if os.path.exists(f"{m}/memory.memsw.limit_in_bytes"):
            growing = mem > int(_read(files[0]))
            files.insert(0 if growing else 1, f"{m}/memory.memsw.limit_in_bytes")
        for path in files:
            _write(path, str(mem))

    def set_cpu_quota(self, quota_us: int) -> None:
        if self.version == 2:
            _write(f"{self.dirs['unified']}/cpu.max", f"{quota_us} {CFS_PERIOD_US}")
        else:
            _write(f"{self.dirs['cpu']}/cpu.cfs_quota_us", str(quota_us))

    def _cpu_max_file(self) -> str:
        return f"{self.dirs['unified']}/cpu.max" if self.version == 2 else f"{self.dirs.get('cpu')}/cpu.cfs_quota_us"

    def procs_files(self) -> list[str]:
        """Files a child writes its own pid into (before unsharing its cgroup namespace)."""
        return [f"{d}/cgroup.procs" for d in self.dirs.values()]

    def attach(self, pid: int) -> None:
        for p in self.procs_files():
            _write(p, str(pid))

    def move_to_account(self, parent: str, account: str, limits: Limits, timeout_s: float = 2.0) -> None:
        """Move a live group's processes into a new group of the same name under `account` (a claimed
        slot was built for no account). v1: the pids group only (memory stays charged where it is);
        v2: the whole group, its limits applied first. Nothing may fork meanwhile (a slot waits idle)."""
        key = "unified" if self.version == 2 else "pids"
        old = self.dirs[key]
        new = f"{parent_dirs(parent, self.version)[key]}/{account}/{os.path.basename(old)}"
        os.makedirs(new)
        moved = Cgroup(self.version, {key: new})
        try:
            if self.version == 2:
                moved._apply(limits)
            else:
                _write(f"{new}/pids.max", str(limits.pids_max))
            end = time.monotonic() + timeout_s
            while (pids := _procs(old)):
                if time.monotonic() > end:
                    raise TimeoutError(f"cgroup {old} still has members: {sorted(pids)}")
                for pid in pids:
                    try:
                        _write(f"{new}/cgroup.procs", str(pid))
                    except ProcessLookupError:
                        pass
        except BaseException:
            kill_and_remove({key: new}, timeout_s)     # whatever moved dies: the caller destroys the rest
            raise
        self.dirs[key] = new
        os.rmdir(old)

    def _main(self) -> str:
        return self.dirs.get("unified") or self.dirs["pids"]

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in _read(f"{self._main()}/cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def freeze(self, timeout_s: float = 2.0, *, wait: bool = True) -> None:
        """Freeze every member. With wait=False only the request is written: the kernel stops each
        task before it next returns to user space, so nothing runs once this returns either way; the
        wait (v1 passes through FREEZING, ~0.3 ms here) only confirms it, which kill_all needs and an
        idle environment going back to its pool does not."""
        if self.version == 2:
            self._set_frozen("cgroup.freeze", "1", "cgroup.events", "frozen 1", timeout_s, wait)
        else:
            _ensure_freeze_anchor(os.path.dirname(self.dirs["freezer"]))
            self._set_frozen("freezer.state", "FROZEN", "freezer.state", "FROZEN", timeout_s, wait)

    def thaw(self) -> None:
        if self.version == 2:
            _write(f"{self.dirs['unified']}/cgroup.freeze", "0")
        else:
            os.pwrite(self._fd("freezer.state"), b"THAWED", 0)

    def _fd(self, name: str, controller: str = "freezer") -> int:
        fd = self._fds.get(name)
        if fd is None:     # (one sandbox's freeze/thaw are serialised by its own lock)
            if self._destroyed:
                raise OSError(errno.ENOENT, f"cgroup destroyed: no {name}")
            d = self.dirs[controller]
            fd = self._fds[name] = os.open(f"{d}/{name}", os.O_RDWR | os.O_CLOEXEC)
        return fd

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass

    def _set_frozen(self, ctl: str, value: str, status: str, want: str, timeout_s: float, wait: bool) -> None:
        if self.version == 2:
            d = self.dirs["unified"]
            _write(f"{d}/{ctl}", value)
            state = lambda: _read(f"{d}/{status}")     # noqa: E731
        else:       # v1 (this machine's): the files stay open, os.pwrite/pread instead of open() each time
            os.pwrite(self._fd(ctl), value.encode(), 0)
            status_fd = self._fd(status)
            state = lambda: os.pread(status_fd, 256, 0).decode()     # noqa: E731
        if not wait:
            return
        end = time.monotonic() + timeout_s
        while want not in state():     # v1 passes through FREEZING
            if time.monotonic() > end:
                raise TimeoutError("cgroup did not freeze")
            time.sleep(0.0002)

    def max_memory_mb(self) -> int:
        try:
            if self.version == 2:
                peak = _read(f"{self.dirs['unified']}/memory.peak")
            else:       # read after every invocation (REPORT): the file stays open, one pread
                peak = os.pread(self._fd("memory.max_usage_in_bytes", "memory"), 64, 0)
            return -(-int(peak) // (1024 * 1024))
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        d = self.dirs.get("unified") or self.dirs["memory"]
        try:
            text = _read(f"{d}/memory.events" if self.version == 2 else f"{d}/memory.oom_control")
        except OSError:
            return 0
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every member. A freeze is requested first (v1), so nothing returns to user space to
        fork while we walk the list; it is not waited for (a fork bomb can keep a group FREEZING for
        long): a child forked meanwhile is caught by the next pass."""
        if self.version == 2 and os.path.exists(f"{self.dirs['unified']}/cgroup.kill"):
            _write(f"{self.dirs['unified']}/cgroup.kill", "1")
        try:        # no fork succeeds from here on: nothing refills what each pass kills
            _write(f"{self.dirs.get('unified') or self.dirs.get('pids')}/pids.max", "0")
        except OSError:
            pass
        end = time.monotonic() + timeout_s
        quota_lifted = False
        while (pids := self.pids()):
            try:
                self.freeze(wait=False)
            except OSError:
                pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not quota_lifted:     # dying tasks exit in this group: under a 128 MB function's quota a
                quota_lifted = True  # thousand of them took a second; all have SIGKILL pending, none runs code
                try:
                    _write(self._cpu_max_file(), "max" if self.version == 2 else "-1")
                except OSError:
                    pass
            try:
                self.thaw()           # SIGKILL is delivered once the tasks run again
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"cgroup still has members: {pids}")
            time.sleep(0.0005)

    def destroy(self, timeout_s: float = 5.0) -> None:
        """Idempotent: kill members (through the descriptors kept open), close those descriptors
        exactly once, then rmdir (retrying while the kernel still holds them). Nothing reopens one
        afterwards: each discarded environment leaked one while kill_all ran after the close."""
        if self._destroyed:         # a second call (the first failed): path-based, no descriptor kept
            kill_and_remove(self.dirs, timeout_s)
            return
        try:
            if any(os.path.isdir(d) for d in self.dirs.values()):
                self.kill_all(timeout_s)
        finally:
            self._destroyed = True
            self._close_fds()
        end = time.monotonic() + timeout_s
        for d in self.dirs.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > end:
                        raise
                    time.sleep(0.001)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())


# v1's freezer toggles a kernel static key (freezer_active) whenever the number of freezing groups
# goes 0 <-> 1: live code patching, ~80 us of CPU per freeze and per thaw here, on every invoke while
# one environment is alone. An empty group kept FROZEN under the server's parent holds the count
# above zero (then a write costs ~1 us). It has no members; remove_parent() removes it.
FREEZE_ANCHOR = "freeze-anchor"
_anchored: set[str] = set()
_anchor_lock = threading.Lock()


def _ensure_freeze_anchor(freezer_parent: str) -> None:
    if freezer_parent in _anchored:
        return
    with _anchor_lock:
        if freezer_parent in _anchored:
            return
        anchor = f"{freezer_parent}/{FREEZE_ANCHOR}"
        try:
            os.makedirs(anchor, exist_ok=True)
            _write(f"{anchor}/freezer.state", "FROZEN")
        except OSError:
            pass                              # only an optimisation: freezing works without it
        _anchored.add(freezer_parent)


def _remove_freeze_anchor(freezer_parent: str) -> None:
    _anchored.discard(freezer_parent)
    anchor = f"{freezer_parent}/{FREEZE_ANCHOR}"
    try:
        _write(f"{anchor}/freezer.state", "THAWED")
        os.rmdir(anchor)
    except OSError:
        pass


def account_group(parent: str, account_id: str, pids_max: int, version: int | None = None) -> str:
    """Make (or update) an account's group under the parent with its pids.max; returns its name."""
    name = ACCOUNT_PREFIX + "".join(ch for ch in account_id if ch.isalnum())[:64]
    version = version or detect_version()
    d = f"{parent_dirs(parent, version)['unified' if version == 2 else 'pids']}/{name}"
    os.makedirs(d, exist_ok=True)
    if version == 2:
        _enable_v2(d)
    _write(f"{d}/pids.max", str(pids_max))
    return name


def set_parent_pids(parent: str, pids_max: int, version: int | None = None) -> None:
    """The ceiling for every environment and slot of this server (the parent group's pids.max)."""
    version = version or detect_version()
    d = parent_dirs(parent, version)["unified" if version == 2 else "pids"]
    os.makedirs(d, exist_ok=True)
    _write(f"{d}/pids.max", str(pids_max))


def pids_room(parent: str, account: str | None = None, version: int | None = None) -> int:
    """How many more tasks fit under the parent and, if given, the account group (the smaller)."""
    version = version or detect_version()
    base = parent_dirs(parent, version)["unified" if version == 2 else "pids"]
    room = 1 << 30
    for d in (base, f"{base}/{account}") if account else (base,):
        try:
            limit, current = _read(f"{d}/pids.max").strip(), _read(f"{d}/pids.current").strip()
        except FileNotFoundError:
            continue
        if limit != "max":
            room = min(room, int(limit) - int(current))
    return room


def default_platform_pids(cap: int = 16_384) -> int:
    """16,384 or half of kernel.pid_max, whichever is smaller: the host keeps the rest."""
    try:
        return min(cap, int(_read("/proc/sys/kernel/pid_max")) // 2)
    except (OSError, ValueError):
        return cap


def parent_dirs(parent: str = "lambdalet", version: int | None = None) -> dict[str, str]:
    """controller (or "unified") -> this process's per-server parent group directory."""
    version = version or detect_version()
    if version == 2:
        return {"unified": v2_parent(parent)}
    return {c: f"{ROOT}/{c}{_own_path(c)}/{parent}" for c in V1_CONTROLLERS}


def existing_parent_dirs(parent: str) -> dict[str, str]:
    """Like parent_dirs, but only computed and only those that exist: creates nothing (v2's parent_dirs
    sets the group up). For another server's leftovers: a gone server's parent sits where ours would,
    under the cgroup both were started in (beside our "-server" leaf on v2, if we moved into one)."""
    if detect_version() == 1:
        dirs = {c: f"{ROOT}/{c}{_own_path(c)}/{parent}" for c in V1_CONTROLLERS}
        return {c: d for c, d in dirs.items() if os.path.isdir(d)}
    own = f"{ROOT}{_own_path(None)}".rstrip("/")
    for base in (own, os.path.dirname(own)):
        if os.path.isdir(f"{base}/{parent}"):
            return {"unified": f"{base}/{parent}"}
    return {}


def remove_stale_parent(parent: str, timeout_s: float = 5.0) -> list[int]:
    """Empty and remove a gone server's whole parent group (its environments, slots and freeze anchor)
    without creating anything. Returns the pids killed."""
    dirs = existing_parent_dirs(parent)
    if not dirs:
        return []
    if "freezer" in dirs:
        _remove_freeze_anchor(dirs["freezer"])
    return kill_and_remove(dirs, timeout_s)


def remove_parent(parent: str = "lambdalet") -> None:
    """Remove the (empty) per-server parent groups; leaves them if anything is still inside."""
    dirs = parent_dirs(parent)
    if "freezer" in dirs:
        _remove_freeze_anchor(dirs["freezer"])
    for d in [sub for top in dirs.values() for sub in _subtree(top)]:     # empty account groups, then the parent
        try:
            os.rmdir(d)
        except OSError:
            pass


def _procs(d: str) -> set[int]:
    try:
        return {int(x) for x in _read(f"{d}/cgroup.procs").split()}
    except (OSError, ValueError):
        return set()


def _subtree(d: str) -> list[str]:
    """`d` and every group below it, children before parents (the order to remove them in)."""
    return [root for root, _, _ in os.walk(d, topdown=False)] if os.path.isdir(d) else []


def kill_and_remove(dirs: dict[str, str], timeout_s: float = 5.0) -> list[int]:
    """Empty and remove ONE group given as controller -> directory, whatever state it was left in:
    frozen, even with SIGKILL already pending (v1 keeps a frozen task frozen, signal or not, until
    thawed), partly created (missing controllers) or with nested groups. The group's whole subtree is
    one unit: frozen from the top (nothing forks while we walk the lists), every member SIGKILLed,
    every freezer in it thawed (a frozen task dies only once it runs again), repeated until
    cgroup.procs is empty in every controller and every nested group; then removed, deepest first.
    Returns the pids it killed. Used where no `Cgroup` object survives: a restarted server cleaning
    up after a crashed one, the fork server on exit."""
    killed: set[int] = set()
    end = time.monotonic() + timeout_s
    live = {c: d for c, d in dirs.items() if os.path.isdir(d)}
    if not live:
        return []
    freezer, unified = live.get("freezer"), live.get("unified")
    if unified:
        for ctl, value in (("cgroup.freeze", "0"), ("cgroup.kill", "1")):   # v2: kills the subtree
            if os.path.exists(f"{unified}/{ctl}"):
                try:
                    _write(f"{unified}/{ctl}", value)
                except OSError:
                    pass
    while True:
        tree = [sub for d in live.values() for sub in _subtree(d)]
        pids = set().union(*(_procs(d) for d in tree))
        if not pids:
            break
        killed |= pids
        if time.monotonic() > end:
            raise TimeoutError(f"cgroup {next(iter(live.values()))} still has members: {sorted(pids)}")
        if freezer:
            try:
                _write(f"{freezer}/freezer.state", "FROZEN")
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        thaw = [(f"{d}/freezer.state", "THAWED") for d in _subtree(freezer)] if freezer else []
        thaw += [(f"{d}/cgroup.freeze", "0") for d in _subtree(unified)] if unified else []
        for path, value in thaw:            # nested groups too: their own FROZEN outlives the top's thaw
            try:
                _write(path, value)
            except OSError:
                pass
        time.sleep(0.001)
    for d in [sub for top in live.values() for sub in _subtree(top)]:
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > end:
                    raise
                time.sleep(0.001)
    return sorted(killed)


def stale_children(parent: str = "lambdalet") -> dict[str, dict[str, str]]:
    """The environment groups found under this process's parent group: name -> controller -> dir
    (the union over controllers, so a group left in only some of them is found too)."""
    out: dict[str, dict[str, str]] = {}
    for ctrl, pdir in parent_dirs(parent).items():
        for path in _groups_in(pdir):
            if os.path.basename(path).startswith(ACCOUNT_PREFIX):    # an account's: its environments are inside
                for inner in _groups_in(path):
                    out.setdefault(os.path.basename(inner), {})[ctrl] = inner
            else:
                out.setdefault(os.path.basename(path), {})[ctrl] = path
    return out


def _groups_in(d: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False) and e.name != FREEZE_ANCHOR]
    except FileNotFoundError:
        return []


def remove_empty_account_groups(parent: str = "lambdalet") -> None:
    """Account groups with no environment left (after a stale clean-up)."""
    for pdir in parent_dirs(parent).values():
        for path in _groups_in(pdir):
            if os.path.basename(path).startswith(ACCOUNT_PREFIX):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
