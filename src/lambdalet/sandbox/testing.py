"""Helpers for the shared backend compliance suite (tests/processes/test_sandbox_contract.py) and the
hostile-function tests; kept in the package so any new backend can run the same suite."""
from __future__ import annotations

import os
import time
import uuid

from lambdalet.sandbox.api import EnvironmentSpec, InvokeRequest

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{name}"


def namespace_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, cgroups)"
    if not os.path.exists("/proc/self/ns/pid"):
        return "no namespaces on this kernel"
    return None


def write_code(root: str, files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)) -> str:
    """Write a function's code tree readable by any uid (the environment runs as its own uid)."""
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    for name, content in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(path, 0o755 if os.path.basename(name) in executable else 0o644)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            os.chmod(p, os.stat(p).st_mode | 0o444)
    return root


def make_spec(code_dir: str, runtime: str = "python3.11", handler: str = "app.handler", *,
              name: str = "fn", **kw) -> EnvironmentSpec:
    return EnvironmentSpec(env_id=f"{name}-{uuid.uuid4().hex[:6]}", account_id="123456789012", function_name=name,
                           function_version=kw.pop("function_version", "$LATEST"), function_arn=ARN.format(name=name),
                           runtime=runtime, handler=handler, code_dir=code_dir,
                           log_stream=kw.pop("log_stream", "2024/01/01/[$LATEST]abcdef"), **kw)


def make_request(spec: EnvironmentSpec, payload: bytes = b"{}", timeout_s: float | None = None, **kw) -> InvokeRequest:
    t = spec.timeout_s if timeout_s is None else timeout_s
    return InvokeRequest(request_id=kw.pop("request_id", str(uuid.uuid4())), payload=payload,
                         deadline_ms=int((time.time() + t) * 1000), invoked_function_arn=spec.function_arn, **kw)
