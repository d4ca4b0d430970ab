"""Compile a JSON seccomp profile (src/lambdalet/data/seccomp/*.json) to classic BPF and load it.

Raw BPF via prctl, no libseccomp: the filter is tiny and fixed in shape. Layout:
  arch != x86_64 -> KILL_PROCESS;  nr >= 0x40000000 (x32 ABI) -> KILL_PROCESS;
  clone with any namespace flag -> EPERM;
  socket/socketpair of a family not allowed (netlink: of a protocol not allowed) -> EAFNOSUPPORT;
  each listed syscall -> its errno;  else ALLOW.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import struct

PROFILE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "seccomp")

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
CLONE_FLAGS = {"CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000,
               "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
               "CLONE_NEWNET": 0x40000000}

SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
NETLINK_PROTOCOLS = {"NETLINK_ROUTE": 0}
SYS_SOCKET, SYS_SOCKETPAIR = 41, 53
ARG0_LOW, ARG2_LOW = 16, 32            # offsetof(seccomp_data, args[i]), the low 32 bits (the kernel's int)

# x86_64 numbers for every name a profile may use (arch/x86/entry/syscalls/syscall_64.tbl)
X86_64 = {
    "clone": 56, "ptrace": 101, "syslog": 103, "uselib": 134, "personality": 135, "adjtimex": 159,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "vhangup": 153, "pivot_root": 155,
    "lookup_dcookie": 212, "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249,
    "keyctl": 250, "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "clone3": 435, "mount_setattr": 442,
}


def load_profile(name: str = "default") -> dict:
    with open(os.path.join(PROFILE_DIR, f"{name}.json")) as f:
        return json.load(f)


def compile_profile(profile: dict) -> bytes:
    """Return the filter as packed struct sock_filter[] (8 bytes per instruction)."""
    if profile.get("arch") != "x86_64" or os.uname().machine != "x86_64":
        raise ValueError("only x86_64 profiles are supported on this build")
    ins = [(LD_W_ABS, 0, 0, 4), (JEQ_K, 1, 0, AUDIT_ARCH_X86_64), (RET_K, 0, 0, RET_KILL_PROCESS),
           (LD_W_ABS, 0, 0, 0), (JGE_K, 0, 1, X32_BIT), (RET_K, 0, 0, RET_KILL_PROCESS)]
    mask = 0
    for flag in profile.get("clone_deny_flags", []):
        mask |= CLONE_FLAGS[flag]
    if mask:
        # if nr == clone: load args[0] (low 32 bits; flags fit there) and test the mask
        ins += [(JEQ_K, 0, 4, X86_64["clone"]), (LD_W_ABS, 0, 0, 16), (JSET_K, 0, 1, mask),
                (RET_K, 0, 0, RET_ERRNO | errno.EPERM), (RET_K, 0, 0, RET_ALLOW)]
    if "socket_families" in profile:
        ins += _socket_block(profile["socket_families"], profile.get("netlink_protocols", []))
    for err_name, names in profile.get("errno", {}).items():
        code = getattr(errno, err_name)
        for n in names:
            if n not in X86_64:
                raise ValueError(f"seccomp profile names unknown syscall {n!r}")
            ins += [(JEQ_K, 0, 1, X86_64[n]), (RET_K, 0, 0, RET_ERRNO | code)]
    ins.append((RET_K, 0, 0, RET_ALLOW))
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def _socket_block(families: list[str], netlink: list[str]) -> list[tuple[int, int, int, int]]:
    """socket()/socketpair(): the family (args[0]) must be listed, and for AF_NETLINK the protocol
    (args[2]) too; anything else fails with EAFNOSUPPORT, as if the kernel lacked it. Only the low 32
    bits are compared: the kernel reads both arguments as int."""
    allowed = [SOCKET_FAMILIES[f] for f in families if f != "AF_NETLINK"]
    protos = [NETLINK_PROTOCOLS[p] for p in netlink] if "AF_NETLINK" in families else []
    deny, allow = (RET_K, 0, 0, RET_ERRNO | errno.EAFNOSUPPORT), (RET_K, 0, 0, RET_ALLOW)
    # After the family loads: one JEQ per allowed family, then (if netlink) JEQ netlink + load + one JEQ
    # per protocol, then deny, allow. Jump offsets count the instructions in between.
    tail: list[tuple[int, int, int, int]] = []
    if protos:
        tail = [(JEQ_K, 0, len(protos) + 1, SOCKET_FAMILIES["AF_NETLINK"]), (LD_W_ABS, 0, 0, ARG2_LOW)]
        tail += [(JEQ_K, len(protos) - i, 0, p) for i, p in enumerate(protos)]
    checks = [(JEQ_K, len(allowed) - i + len(tail), 0, f) for i, f in enumerate(allowed)]
    body = [(LD_W_ABS, 0, 0, ARG0_LOW)] + checks + tail + [deny, allow]
    return [(JEQ_K, 1, 0, SYS_SOCKET), (JEQ_K, 0, len(body), SYS_SOCKETPAIR)] + body


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Set no_new_privs and load the filter on the calling thread (call before any thread starts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _Fprog(len(program) // 8, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) != 0:                         # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:        # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
