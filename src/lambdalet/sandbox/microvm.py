"""The `microvm` backend (Firecracker-style): same `Backend`/`Sandbox` contract, one VM per environment.

Not available on this host: there is no usable /dev/kvm (QEMU TCG boots in ~2.8 s, far outside a
cold-start budget). Constructing it fails with a clear message so a misconfiguration is loud. A real
implementation would: boot a minimal guest kernel + rootfs with the code as a read-only block device,
run runtime/init.py as the guest's PID 1, carry runtime/bridge.py frames over vsock, and map
freeze/thaw to VM pause/resume.
"""
from __future__ import annotations

import os

from lambdalet.sandbox.api import Backend, EnvironmentSpec, Sandbox, register_backend


class MicroVMBackend(Backend):
    name = "microvm"

    def __init__(self, **_options):
        why = "no /dev/kvm" if not os.path.exists("/dev/kvm") else "not implemented yet"
        raise RuntimeError(f"sandbox backend 'microvm' is unavailable on this host ({why}); "
                           "use 'namespace' (default)")

    def create(self, spec: EnvironmentSpec, *, log_sink=None) -> Sandbox:   # pragma: no cover
        raise NotImplementedError


register_backend("microvm", MicroVMBackend)
