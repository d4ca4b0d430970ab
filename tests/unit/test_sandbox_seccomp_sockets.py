"""The seccomp program's socket-family rule (issue 10.6), run in a tiny classic-BPF interpreter (no root
needed): only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK/NETLINK_ROUTE sockets; everything else answers
EAFNOSUPPORT. The real-kernel check is tests/security/test_environment_surface.py."""
import errno

from lambdalet.sandbox import seccomp

from .seccomp_support import X86_64, run_filter

SOCKET, SOCKETPAIR = 41, 53
REFUSED = 0x00050000 | errno.EAFNOSUPPORT


def run(nr: int, *args: int) -> int:
    return run_filter(nr, X86_64, args)


def test_needed_families_are_allowed():
    for family in (1, 2, 10):                        # AF_UNIX, AF_INET, AF_INET6
        for nr in (SOCKET, SOCKETPAIR):
            assert run(nr, family, 1, 0) == seccomp.RET_ALLOW, family
    assert run(SOCKET, 16, 3, 0) == seccomp.RET_ALLOW     # AF_NETLINK, NETLINK_ROUTE


def test_other_families_and_netlink_protocols_are_refused():
    for family in (0, 3, 4, 5, 9, 15, 17, 21, 24, 26, 29, 30, 31, 38, 39, 40, 42, 43, 44, 45, 46, 255, 0xFFFFFFFF):
        assert run(SOCKET, family, 1, 0) == REFUSED, family
        assert run(SOCKETPAIR, family, 1, 0) == REFUSED, family
    for proto in (4, 6, 9, 12, 15, 16, 0xFFFFFFFF):
        assert run(SOCKET, 16, 3, proto) == REFUSED, proto


def test_high_bits_do_not_change_the_answer():
    # the kernel reads family and protocol as int: the upper half of the register is ignored by both
    assert run(SOCKET, (1 << 32) | 40, 1, 0) == REFUSED
    assert run(SOCKET, (1 << 32) | 2, 1, 0) == seccomp.RET_ALLOW
    assert run(SOCKET, 16, 3, (1 << 32) | 9) == REFUSED


def test_the_rest_of_the_filter_still_applies():
    assert run(seccomp.X86_64["mount"]) == 0x00050000 | errno.EPERM
    assert run(0) == seccomp.RET_ALLOW
