"""Execution environments behind one interface (see api.py for the contract).

    backend = open_backend("namespace")            # once per server
    sb = backend.create(spec); sb.start()           # InitFailed -> return e.result to the caller
    result = sb.invoke(req); sb.freeze() ... sb.thaw(); sb.destroy()
    backend.close()

Backends register themselves on import: namespace (default), process (dev only), microvm (stub).
"""
from lambdalet.sandbox.api import (Backend, EnvironmentSpec, InitFailed, InvokeRequest, InvokeResult, Sandbox,
                                   SandboxError, backend_names, lookup_backend, open_backend, register_backend)
from lambdalet.sandbox import process as _process, microvm as _microvm  # noqa: F401  (registration)

try:   # the namespace backend needs Linux; importing it must not break other platforms
    from lambdalet.sandbox import namespace as _namespace, rootless as _rootless  # noqa: F401
except ImportError:   # pragma: no cover
    pass

DEFAULT_BACKEND = "namespace"

__all__ = ["Backend", "EnvironmentSpec", "InitFailed", "InvokeRequest", "InvokeResult", "Sandbox", "SandboxError",
           "backend_names", "lookup_backend", "open_backend", "register_backend", "DEFAULT_BACKEND"]
