"""Which Lambda instruction set architectures (`Architectures`) this host can honestly run.

Native: the machine's own (x86_64 or aarch64 -> "x86_64" / "arm64"). Another architecture only under
user-mode emulation registered with the kernel (binfmt_misc: qemu-aarch64 / qemu-x86_64, enabled,
with the F flag so that the emulator, opened at registration, also runs inside an environment whose
mount namespace does not contain it). Emulation covers what the function itself brings: a `provided.*`
bootstrap and its binaries. The managed runtimes' interpreters here are the host's own (native)
builds, so a python/nodejs function would not run on the architecture it asked for: refused.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_QEMU = {"arm64": "qemu-aarch64", "x86_64": "qemu-x86_64"}


@dataclass(frozen=True)
class HostArchitectures:
    native: str                          # "x86_64" | "arm64" | the machine's own name
    emulated: tuple[str, ...] = ()       # architectures with a usable binfmt_misc emulator

    def supports(self, arch: str, runtime: str | None) -> bool:
        if arch == self.native:
            return True
        return arch in self.emulated and bool(runtime) and runtime.startswith("provided")

    def refusal(self, arch: str, runtime: str | None) -> str:
        """Why `arch` is refused for `runtime` (the message of InvalidParameterValueException)."""
        head = f"Architectures [{arch}] is not available on this lambdalet host: it runs {self.native} natively"
        if arch in self.emulated:
            return (f"{head} and {arch} only under emulation (binfmt_misc {_QEMU.get(arch, arch)}), for provided.* "
                    f"runtimes; the {runtime} interpreter here is an {self.native} build. "
                    f"Use Architectures [{self.native}] or a provided.* runtime.")
        emulator = _QEMU.get(arch)
        why = f"no {emulator} emulator registered in binfmt_misc" if emulator else "no emulator for it"
        return f"{head}, with {why}. Use Architectures [{self.native}]."

    def describe(self) -> list[str]:
        """Lines for `lambdalet runtimes`."""
        lines = [f"architecture   {self.native} (native)"]
        for arch, emulator in _QEMU.items():
            if arch == self.native:
                continue
            if arch in self.emulated:
                lines.append(f"architecture   {arch} (emulated: binfmt_misc {emulator}; provided.* runtimes only)")
            else:
                lines.append(f"not available here: {arch} (no binfmt_misc {emulator})")
        return lines


def _emulator_usable(path: str) -> bool:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return False
    lines = text.splitlines()
    if not lines or lines[0].strip() != "enabled":
        return False
    flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
    return "F" in flags


def detect(binfmt_dir: str = BINFMT_DIR, machine: str | None = None) -> HostArchitectures:
    native = _MACHINE.get(machine or platform.machine(), machine or platform.machine())
    emulated = tuple(arch for arch, name in _QEMU.items()
                     if arch != native and _emulator_usable(os.path.join(binfmt_dir, name)))
    return HostArchitectures(native, emulated)
