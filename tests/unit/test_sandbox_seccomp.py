"""The compiled seccomp program, checked by running it in a tiny classic-BPF interpreter (no root needed)."""
import errno

from lambdalet.sandbox import seccomp
from lambdalet.sandbox.cgroups import Limits

from .seccomp_support import I386, X86_64, run_filter


def run(nr: int, arch: int = X86_64, arg0: int = 0) -> int:
    return run_filter(nr, arch, (arg0,))


def test_every_required_syscall_is_denied():
    required = ["mount", "umount2", "unshare", "setns", "ptrace", "kexec_load", "kexec_file_load", "init_module",
                "finit_module", "delete_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "reboot",
                "swapon", "swapoff", "pivot_root", "chroot", "open_by_handle_at", "userfaultfd"]
    for name in required:
        assert run(seccomp.X86_64[name]) == 0x00050000 | errno.EPERM, name


def test_clone3_enosys_and_clone_namespace_flags():
    assert run(435) == 0x00050000 | errno.ENOSYS
    assert run(56, arg0=0x11) == seccomp.RET_ALLOW                          # plain fork-style clone
    assert run(56, arg0=0x3D0F00) == seccomp.RET_ALLOW                      # pthread_create flags
    for flag in seccomp.CLONE_FLAGS.values():
        assert run(56, arg0=flag | 0x11) == 0x00050000 | errno.EPERM


def test_foreign_arch_and_x32_are_killed():
    assert run(0, arch=I386) == seccomp.RET_KILL_PROCESS
    assert run(0x40000000 | 1) == seccomp.RET_KILL_PROCESS


def test_ordinary_syscalls_allowed():
    for nr in (0, 1, 2, 3, 9, 57, 59, 60, 231, 257):     # read write open close mmap fork execve exit exit_group openat
        assert run(nr) == seccomp.RET_ALLOW


def test_cpu_proportional_to_memory():
    assert Limits(1769).cpu_quota_us == 100_000
    assert Limits(128).cpu_quota_us == 7_235
    assert Limits(10240).cpu_quota_us > 500_000
