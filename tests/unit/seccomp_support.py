"""A tiny classic-BPF interpreter: the compiled seccomp program run on a syscall without root or a kernel."""
from __future__ import annotations

import struct

from lambdalet.sandbox import seccomp

PROG = seccomp.compile_profile(seccomp.load_profile("default"))
X86_64, I386 = 0xC000003E, 0x40000003


def run_filter(nr: int, arch: int = X86_64, args: tuple[int, ...] = ()) -> int:
    """The program's verdict (RET_* | data) for syscall `nr` with up to six arguments."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    ins = [struct.unpack("HBBI", PROG[i:i + 8]) for i in range(0, len(PROG), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ins[pc]
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:
            return k
        else:
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        pc += 1
