"""What a freshly forked child does to become an environment (runs in the fork server's child, as root).

Order matters and is the point of this module (cf. Firecracker's jailer):
  setsid -> join the cgroup -> unshare mnt/uts/ipc/net/cgroup/pid -> with egress, pull the host-made veth end
  in as eth0 (envnet.py) -> fork (the child is PID 1)
  -> private tmpfs root: ro /usr, ro /var/lang (interpreter), /var/runtime (copied), ro /var/task, ro /opt,
     sized /tmp, /proc (container runtimes' masks), minimal /dev and /etc -> pivot_root, drop the old root, remount / ro
  -> lo up, hostname -> drop the bounding set, setgroups/setresgid/setresuid to the environment's own
     unprivileged uid (all capabilities go) -> no_new_privs + seccomp LAST -> read the runtime's
  configuration from the bridge -> runtime/init.main().
Nothing of the tenant runs before the last step. Failures are reported over the bridge as SETUP_ERROR.

A pre-isolated slot (sandbox/slots.py, `slot_dir` set) is built the same way without a tenant: its
/var/task, /opt and /tmp are slave binds of its slot directory, a shared mount in the fork server's
namespace (mounts.py, zygote.py), and init starts (servers up, Python runtime forked) before it reads
the CONFIG frame, which comes only when the host claims the slot, after the code is mounted there
(runtime/init.serve_slot).

The tenant's configuration (its environment variables, credentials included) travels host -> init
over the bridge, never through the fork server: the fork server's memory is what every environment
starts from (and Python runtimes are forked from init, runtime/pyfork.py), so it must never have
held anything of any tenant, not even in freed heap.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import time
import traceback
from dataclasses import dataclass, field

from lambdalet.runtime import bridge, init
from lambdalet.sandbox import envnet, seccomp

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUSER = 0x20000000, 0x40000000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MS_SLAVE = 1 << 19
SLOT_MOUNTS = (("task", "/var/task"), ("opt", "/opt"), ("tmp", "/tmp"))   # a slot dir's subdirs -> inside
MNT_DETACH = 2
SYS_pivot_root = 155
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 47, 4


@dataclass
class JailConfig:
    root_dir: str                       # an empty host directory; each env mounts its own tmpfs there
    uid: int                            # the environment's own unprivileged host uid (gid = uid)
    cgroup_procs: list[str]             # cgroup.procs files to join (v1: the `tasks` file beside each is used)
    binds: list[tuple[str, str]]        # (host path, path inside), all read-only
    copies: list[tuple[str, str]] = field(default_factory=list)   # (host file, path inside): copied into the
                                        # root tmpfs, so the mount table names no host path for them
    hide: list[str] = field(default_factory=list)    # inside paths covered by an empty ro tmpfs
    tmp_mb: int = 512
    hostname: str = "lambdalet"
    seccomp_profile: str = "default"
    slot_dir: str = ""                  # a slot: this shared dir's task/opt/tmp are followed (see above)
    python_fork: bool = False           # a slot's runtime is forked before its configuration (pyfork.prespawn)
    net: dict | None = None             # an egress link (egress.Link.jail() + nameservers), else only lo
    rootless: dict | None = None        # rootless.py: {"host_uid", "host_gid", "nproc"}: a user namespace of its own
    pid_report_fd: int = -1             # rootless: PID 1's host pid is written here (set by the fork server)


class SetupError(Exception):
    pass


def _chk(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(e)}")


def _mount(src, dst, fstype, flags, data=None) -> None:
    def enc(s):
        return s.encode() if isinstance(s, str) else s
    _chk(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {dst}")


# statvfs flags -> mount flags a remount must repeat: in a user namespace (rootless.py) a bind keeps its
# source's noexec/atime flags "locked", and a remount that would clear one is refused (EPERM).
_KEPT_FLAGS = ((os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))


def _bind_ro(src: str, dst: str) -> None:
    _mount(src, dst, None, MS_BIND | MS_REC)
    kept = os.statvfs(dst).f_flag
    _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
           | sum(ms for st, ms in _KEPT_FLAGS if kept & st))


def _mkfile(path: str, data: str = "", mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, data.encode())
    os.close(fd)


def setup_fs(cfg: JailConfig) -> None:
    # Nothing we mount propagates back: everything private, or for a slot slave (a slave receives from
    # its master, the shared slot dir, and sends nothing); a slot makes its new root private below,
    # before binding the slot dir, so only those three binds keep following their master.
    _mount(None, "/", None, MS_REC | (MS_SLAVE if cfg.slot_dir else MS_PRIVATE))
    _mount("lambdalet-root", cfg.root_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=755")
    os.chdir(cfg.root_dir)
    for d in ("usr", "var/task", "var/runtime", "var/lang", "opt", "tmp", "proc", "dev", "etc", ".oldroot"):
        os.makedirs(d, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):        # merged-/usr hosts (Debian 12, AL2023)
        if os.path.islink("/" + link):
            os.symlink(os.readlink("/" + link), link)
    for src, dst in cfg.binds:
        rel = dst.lstrip("/")
        if os.path.isdir(src):
            os.makedirs(rel, exist_ok=True)
        elif not os.path.exists(rel):
            _mkfile(rel)
        _bind_ro(src, rel)
    for src, dst in cfg.copies:
        rel = dst.lstrip("/")
        os.makedirs(os.path.dirname(rel), exist_ok=True)
        with open(src, "rb") as f, open(rel, "wb") as out:
            out.write(f.read())
    for dst in cfg.hide:
        rel = dst.lstrip("/")
        if os.path.isdir(rel):
            _mount("hidden", rel, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")
    if not cfg.slot_dir:
        _mount("tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg.tmp_mb}m,mode=1777")
    _mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mask_proc("proc")
    _mount("dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for d in ("null", "zero", "random", "urandom"):
        _mkfile(f"dev/{d}", mode=0o666)
        _mount(f"/dev/{d}", f"dev/{d}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"dev/{name}")
    _mount(None, "dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    uid = cfg.uid
    _mkfile("etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nsbx_user:x:{uid}:{uid}::/tmp:/sbin/nologin\n")
    _mkfile("etc/group", f"root:x:0:\nsbx_user:x:{uid}:\n")
    _mkfile("etc/hosts", "127.0.0.1\tlocalhost sandbox.localdomain\n::1\tlocalhost\n")   # AWS: the Telemetry API listener
    resolvers = (cfg.net or {}).get("nameservers") or []
    _mkfile("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files" + (" dns" if resolvers else "") + "\n")
    if resolvers:                                        # the host's, which the egress policy lets through
        _mkfile("etc/resolv.conf", "".join(f"nameserver {ns}\n" for ns in resolvers))
    if cfg.slot_dir:
        _mount(None, ".", None, MS_REC | MS_PRIVATE)     # the binds above (slaves of a shared host /usr...) stop following
        for sub, dst in SLOT_MOUNTS:                     # empty read-only dirs until the claim mounts on them
            _bind_ro(os.path.join(cfg.slot_dir, sub), dst.lstrip("/"))
    _chk(libc.syscall(SYS_pivot_root, b".", b".oldroot"), "pivot_root")
    _chk(libc.umount2(b"/.oldroot", MNT_DETACH), "umount old root")
    os.rmdir("/.oldroot")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


# What container runtimes hide in /proc (runc/Docker's default masked and read-only paths), plus
# kallsyms: kernel addresses, other tenants' timers and keys, host hardware, knobs. The environment
# cannot undo these (no capabilities; mount/umount are refused by seccomp).
PROC_MASKED = ("kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug", "kallsyms",
               "scsi", "acpi")
PROC_READ_ONLY = ("asound", "bus", "fs", "irq", "sys", "sysrq-trigger")


def mask_proc(proc: str) -> None:
    for name in PROC_MASKED:
        path = os.path.join(proc, name)
        if os.path.isdir(path):
            _mount("masked", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
    for name in PROC_READ_ONLY:
        path = os.path.join(proc, name)
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))   # SIOCSIFFLAGS UP|LOOPBACK|RUNNING


def drop_privileges(uid: int, rootless: bool = False) -> None:
    if rootless:
        return _drop_in_user_namespace(uid)
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last_cap + 1):                     # needs CAP_SETPCAP: do it while still root
        _chk(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"capbset drop {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)                          # uid 0 -> non-zero clears permitted/effective caps
    if os.getuid() != uid or os.geteuid() != uid:
        raise SetupError("setresuid did not stick")


def _drop_in_user_namespace(uid: int) -> None:
    """Rootless: we are already `uid` (the only one the map holds), with every capability of our own user
    namespace: drop the bounding set, then the rest (uid stays non-zero, so nothing hands them back)."""
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last_cap + 1):
        _chk(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"capbset drop {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("Ii", 0x20080522, 0)            # _LINUX_CAPABILITY_VERSION_3, this thread
    _chk(libc.capset(header, bytes(24)), "capset")       # effective, permitted, inheritable: all empty
    if os.getuid() != uid or os.geteuid() != uid:
        raise SetupError("not the environment's uid")


def enter_user_namespace(spec: dict, uid: int) -> None:
    """Rootless (rootless.py): a user namespace owning the namespaces unshared next, mapping `uid` (the
    environment's, gid alike) to the server's own host uid: the only mapping an unprivileged process may
    write. setgroups is denied first, as the kernel requires for an unprivileged gid map."""
    _chk(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    for name, data in (("uid_map", f"{uid} {spec['host_uid']} 1\n"), ("setgroups", "deny"),
                       ("gid_map", f"{uid} {spec['host_gid']} 1\n")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(data)
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    n = spec["nproc"] if hard == resource.RLIM_INFINITY else min(hard, spec["nproc"])
    resource.setrlimit(resource.RLIMIT_NPROC, (n, n))   # tasks, counted per user namespace: pids.max's stand-in


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _host_ppid() -> int:
    """Our parent's pid as the host sees it (the host's /proc is still mounted: run before setup_fs)."""
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _await_parent(pid: int, timeout_s: float = 2.0) -> None:
    end = time.monotonic() + timeout_s
    while _host_ppid() != pid:                          # the intermediate child is exiting right now
        if time.monotonic() > end:
            raise SetupError(f"PID 1 was not adopted by the fork server {pid}")
        time.sleep(0.0001)


def die_with_zygote(zygote_fd: int | None) -> None:
    """PR_SET_PDEATHSIG=SIGKILL towards the fork server: PID 1 dying ends the whole PID namespace.
    Armed once adopted (the exiting intermediate would trigger it) and after setresuid (which clears
    it); a zygote that died before that is caught through its pidfd."""
    _chk(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if zygote_fd is not None:
        try:
            p = select.poll()
            p.register(zygote_fd, select.POLLIN)
            if p.poll(0):
                raise SetupError("the fork server died during set-up")
        finally:
            os.close(zygote_fd)


def _report(sock: socket.socket, message: str) -> None:
    try:
        bridge.send(sock, bridge.SETUP_ERROR, {"error": message[-4000:]})
    except OSError:
        pass


def enter(cfg: JailConfig, sock: socket.socket, filter_prog: bytes) -> None:
    """Run in the fork server's child; never returns."""
    t = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        nonlocal t
        now = time.monotonic()
        timings[f"{step}_ms"] = round((now - t) * 1000, 3)
        t = now

    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # the fork server ignores it; init must reap
        zygote = os.getppid()
        zygote_fd = _pidfd(zygote)                      # opened here: the zygote is invisible from the new PID ns
        os.setsid()
        for p in cfg.cgroup_procs:
            # v1: "0" into `tasks` moves this thread alone; the kernel then skips the global
            # threadgroup lock whose write side waits for an RCU grace period (cgroup.procs: ~2.5-10 ms
            # per controller here). We are single-threaded (just forked), so the process moves.
            tasks = os.path.join(os.path.dirname(p), "tasks")
            with open(tasks if os.path.exists(tasks) else p, "w") as f:
                f.write("0")                             # "0" = the writing thread/process
        mark("cgroup_join")
        host_nl = envnet.open_netlink() if cfg.net else None   # speaks for the host's namespace: the move
        if cfg.rootless:
            enter_user_namespace(cfg.rootless, cfg.uid)
        _chk(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWPID),
             "unshare")
        mark("unshare")
        if cfg.net:
            envnet.join(cfg.net, host_nl)               # our veth end becomes eth0 (egress.py, envnet.py)
            mark("network")
        if (pid1 := os.fork()) != 0:
            if cfg.pid_report_fd >= 0:                   # rootless: the host tracks the environment by PID 1
                os.write(cfg.pid_report_fd, str(pid1).encode())
            os._exit(0)                                  # the fork server (a subreaper) adopts PID 1
        if cfg.pid_report_fd >= 0:
            os.close(cfg.pid_report_fd)
        _await_parent(zygote)                           # adopted: from now on our parent is the zygote
        mark("fork_pid1")
        setup_fs(cfg)
        mark("rootfs")
        loopback_up()
        hn = cfg.hostname.encode()
        _chk(libc.sethostname(hn, len(hn)), "sethostname")
        drop_privileges(cfg.uid, rootless=bool(cfg.rootless))
        die_with_zygote(zygote_fd)                      # after setresuid: a credential change clears it
        mark("drop_privileges")
        seccomp.install(filter_prog)
        mark("seccomp")
        reader = bridge.FrameReader()
        if cfg.slot_dir:
            init.serve_slot(sock, reader, cfg.python_fork, timings)   # never returns
        os.chdir("/var/task")
        kind, hdr, _ = bridge.recv_blocking(sock, reader)   # sent by the host, read only now (see above)
        if kind != init.CONFIG:
            raise SetupError(f"expected the CONFIG frame, got kind {kind}")
        icfg = init.InitConfig(**hdr)
        icfg.timings = timings
    except BaseException as e:
        _report(sock, f"{e.__class__.__name__}: {e}\n{traceback.format_exc()}")
        os._exit(1)
    try:
        init.main(icfg, sock, reader)
    except BaseException as e:     # init failing is still a platform failure, not the function's
        _report(sock, f"init: {e.__class__.__name__}: {e}\n{traceback.format_exc()}")
    os._exit(1)
