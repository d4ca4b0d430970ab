"""Secrets at rest: environment variable values, function code and the administrator's secret key never
appear in clear anywhere under the data dir (database, WAL, blobs, keys...), while running or stopped."""
from __future__ import annotations

import base64
import hashlib
import uuid
import zipfile
from pathlib import Path

import pytest

from .at_rest_support import needles_for, scan
from .e2e_support import HANDLER_CODE, WAIT, create_function, make_zip


@pytest.fixture
def seeded(fresh_server):
    srv = fresh_server
    lam = srv.client()
    tag = uuid.uuid4().hex
    env1, env2 = f"MARKER-{tag}-env1", f"MARKER-{tag}-env2"
    code = f"CODEMARKER-{tag}"
    # ZIP_STORED: the marker is literally in the zip bytes, so a clear-text zip on disk would show it.
    zip_bytes = make_zip({"app.py": HANDLER_CODE + f"SECRET = {code!r}\n"}, compression=zipfile.ZIP_STORED)
    assert code.encode() in zip_bytes
    create_function(lam, "secret-fn", zip_bytes=zip_bytes, Environment={"Variables": {"TOKEN": env1}})
    lam.publish_version(FunctionName="secret-fn")
    lam.update_function_configuration(FunctionName="secret-fn", Environment={"Variables": {"TOKEN": env2}})
    lam.get_waiter("function_updated_v2").wait(FunctionName="secret-fn", WaiterConfig=WAIT)
    lam.publish_version(FunctionName="secret-fn")
    # the values are really there (so their absence on disk means something)
    assert lam.get_function_configuration(FunctionName="secret-fn")["Environment"]["Variables"]["TOKEN"] == env2
    assert lam.get_function_configuration(FunctionName="secret-fn", Qualifier="1")["Environment"][
        "Variables"]["TOKEN"] == env1
    markers = {"env marker 1": env1.encode(), "env marker 2": env2.encode(), "code marker": code.encode(),
               "admin secret key": srv.secret_key.encode()}
    return srv, markers, zip_bytes


@pytest.mark.slow
def test_no_plaintext_secrets_in_data_dir(seeded):
    srv, markers, zip_bytes = seeded
    needles = needles_for(markers)
    needles["zip (base64 prefix)"] = base64.b64encode(zip_bytes)[:120]
    hits = scan(srv.data_dir, needles)
    wal = list(Path(srv.data_dir).rglob("*-wal"))
    assert not hits, f"while running (WAL files: {wal}): " + "; ".join(hits)
    srv.stop()
    assert not srv.leaked, srv.leaked
    hits = scan(srv.data_dir, needles)
    assert not hits, "after stopping: " + "; ".join(hits)


@pytest.mark.slow
def test_blob_names_do_not_reveal_code_digest(seeded):
    srv, _, zip_bytes = seeded
    digest = hashlib.sha256(zip_bytes).digest()
    forms = {digest.hex(), base64.b64encode(digest).decode(), base64.urlsafe_b64encode(digest).decode().rstrip("="),
             base64.b64encode(digest).decode().rstrip("=")}
    names = [str(p.relative_to(srv.data_dir)) for p in Path(srv.data_dir).rglob("*")]
    leaks = [n for n in names for f in forms if f in n or f[:32] in n]
    assert not leaks, f"file names reveal the code's sha256: {leaks}"


@pytest.mark.slow
def test_no_secrets_in_server_logs(seeded):
    srv, markers, _ = seeded
    srv.stop()
    logs = b"".join(p.read_bytes() for p in srv.log_dir.glob("*.log"))
    hits = [label for label, needle in needles_for(markers).items() if needle in logs]
    assert not hits, f"server stdout/stderr contain: {hits}"
