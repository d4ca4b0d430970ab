"""Functions from tests/integration/functions/: their sources zipped as a user would, a function made
from a zip, and whether this host runs a runtime (what the server discovers)."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from lambdalet.runtime.hostruntimes import discover_managed

from .e2e_support import ROLE, WAIT, unique


FUNCTIONS = Path(__file__).parent / "functions"


def zip_dir(*dirs: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """Zip function sources (later dirs win); `bootstrap` files are executable, as a user would zip them."""
    files: dict[str, tuple[bytes, int]] = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = p.relative_to(d).as_posix()
                files[rel] = (p.read_bytes(), 0o755 if p.name == "bootstrap" or os.access(p, os.X_OK) else 0o644)
    for name, data in (extra or {}).items():
        files[name] = (data, 0o644)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, data)
    return buf.getvalue()


PY_ZIP = zip_dir(FUNCTIONS / "python_app")


def new_function(lam, *, zip_bytes: bytes = PY_ZIP, runtime: str = "python3.11", handler: str = "app.handler",
           prefix: str = "inv", **kw) -> str:
    name = unique(prefix)
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                        Code={"ZipFile": zip_bytes}, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def host_runs(runtime: str) -> bool:
    """What the server (same venv, same host) discovers: runtime/hostruntimes.py."""
    from lambdalet.config import Settings
    return Settings().host_runtimes().runs(runtime)


# the managed python3.11 carries boto3 only once `make install` provisioned it
python_sdk = pytest.mark.skipif(not discover_managed().get("python3.11") or
                                not discover_managed().get("python3.11").sdk_dir,
                                reason="the AWS SDK is not provisioned (make install)")
