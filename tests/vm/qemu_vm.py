"""A Debian VM under QEMU for tests/vm/: a stock cgroup v2 (unified only) system with systemd as PID 1.

The image is tools/vm/build_image.sh's (built once, cached outside the repo). QEMU runs with TCG
(no usable KVM on the machines this runs on), the root disk in snapshot mode (nothing the VM writes
survives it), the checkout shared read-only over 9p at its own path (so the venv's scripts and its
editable install resolve), and a loopback port forwarded to a port in the VM (QEMU user networking).
The host drives the VM through tests/vm/agent.sh: a shell script per command, dropped into a
read-write 9p share the agent polls; no ssh, no serial-console scraping.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "vm" / "build_image.sh"
AGENT = Path(__file__).resolve().parent / "agent.sh"
QEMU = "qemu-system-x86_64"
BUILD_TIMEOUT_S = 1200         # a first build (debootstrap from Debian's archive): ~1.5 min measured
BOOT_TIMEOUT_S = 300           # TCG boot to the agent: ~35 s measured


class Unavailable(Exception):
    """The VM cannot be had here (no QEMU, no image): the test skips, saying why."""


def build_image() -> Path:
    if shutil.which(QEMU) is None:
        raise Unavailable(f"{QEMU} not installed (apt-get install qemu-system-x86 debootstrap)")
    try:
        res = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{BUILD} did not finish in {BUILD_TIMEOUT_S}s") from None
    if res.returncode != 0:
        raise Unavailable(f"{BUILD} failed ({res.returncode}): {res.stderr[-2000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """In the child before exec: a killed test run takes its VM with it (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, image: Path, work: Path, guest_port: int):
        self.image, self.work, self.guest_port = image, work, guest_port
        self.ctl = work / "ctl"
        self.serial = work / "serial.log"
        self.host_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self._seq = itertools.count(1)

    def start(self) -> "VM":
        (self.ctl / "cmd").mkdir(parents=True)
        shutil.copy(AGENT, self.ctl / "agent.sh")
        prefix = os.path.realpath(sys.base_prefix)       # the venv's interpreter, unless the VM has it
        prefix = "" if prefix == "/usr" else prefix
        (self.ctl / "env.sh").write_text(f"REPO='{REPO}'\nPYPREFIX='{prefix}'\n")
        shares = {"ctl": (self.ctl, False), "repo": (REPO, True)}
        if prefix:
            shares["pyprefix"] = (Path(prefix), True)
        cmd = [QEMU, "-accel", "tcg,thread=multi", "-smp", "2", "-m", "2048", "-nographic", "-no-reboot",
               "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
               # unified hierarchy only, as stock distributions boot (v1 controllers unavailable)
               "-append", "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all panic=-1",
               "-drive", f"file={self.image / 'rootfs.img'},format=raw,if=virtio,snapshot=on",
               "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.host_port}-:{self.guest_port}",
               "-serial", f"file:{self.serial}", "-monitor", "none", "-display", "none"]
        for tag, (path, ro) in shares.items():
            cmd += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none"
                    + (",readonly=on" if ro else "")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(self.work / "qemu.log", "wb"),
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        end = time.monotonic() + BOOT_TIMEOUT_S
        while not (self.ctl / "ready").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"VM did not come up in {BOOT_TIMEOUT_S}s:\n{self.serial_tail()}")
            time.sleep(0.2)
        return self

    def run(self, script: str, timeout: float = 120, check: bool = True) -> str:
        """Run a shell script in the VM as root; its output (stdout and stderr together)."""
        n = f"{next(self._seq):04d}"
        tmp = self.ctl / "cmd" / f"{n}.tmp"
        tmp.write_text(script)
        tmp.rename(self.ctl / "cmd" / f"{n}.sh")
        rc_path, out_path = self.ctl / "cmd" / f"{n}.rc", self.ctl / "cmd" / f"{n}.out"
        end = time.monotonic() + timeout
        while not rc_path.exists():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"VM exited while running:\n{script}\n{self.serial_tail()}")
            if time.monotonic() > end:
                raise TimeoutError(f"VM command did not finish in {timeout}s:\n{script}")
            time.sleep(0.1)
        out, rc = out_path.read_text(errors="replace"), int(rc_path.read_text())
        if check and rc != 0:
            raise AssertionError(f"VM command exited {rc}:\n{script}\n--- output ---\n{out}")
        return out

    def serial_tail(self, limit: int = 4000) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.serial.read_text(errors="replace")[-limit:]
        return ""

    def stop(self) -> None:
        """The disk is a snapshot: nothing to save, so QEMU is simply ended."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
