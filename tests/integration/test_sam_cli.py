"""`sam remote invoke` (AWS SAM CLI, unmodified) against a real lambdalet.

The SAM CLI lives in its own virtualenv (`make install-test` puts it in .venv/tools/sam: its pins
must not decide the project's boto3/click versions); the test skips when it is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .e2e_support import create_function, make_zip, unique

REPO = Path(__file__).resolve().parents[2]
SAM = next((p for p in (str(REPO / ".venv" / "tools" / "sam" / "bin" / "sam"), shutil.which("sam") or "")
            if p and os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.skipif(SAM is None, reason="SAM CLI not installed (make install-test puts it in .venv/tools/sam)")

APP = "def handler(event, context):\n    print('hello from sam')\n    return {'got': event}\n"


def sam(srv, *args: str) -> subprocess.CompletedProcess:
    env = srv.cli_env()
    env["SAM_CLI_TELEMETRY"] = "0"          # no phoning home (and no network here anyway)
    return subprocess.run([SAM, "remote", "invoke", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(srv.data_dir))


def test_sam_remote_invoke_by_arn(server):
    lam = server.client("lambda")
    name = unique("sam")
    create_function(lam, name, zip_bytes=make_zip({"app.py": APP}))
    arn = server.function_arn(name)

    text = sam(server, arn, "--event", '{"a": 1}')
    assert text.returncode == 0, text.stderr
    assert "hello from sam" in text.stderr + text.stdout          # the log tail SAM prints
    assert "REPORT RequestId:" in text.stderr + text.stdout
    assert '{"got": {"a": 1}}' in text.stdout

    js = sam(server, arn, "--event", '{"b": 2}', "--output", "json")
    assert js.returncode == 0, js.stderr
    out = json.loads(js.stdout[js.stdout.index("{"):])
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "$LATEST"
    assert json.loads(out["Payload"]) == {"got": {"b": 2}}


def test_sam_remote_invoke_by_name_explains_itself(server):
    """A bare name makes SAM ask CloudFormation, which lambdalet does not serve: SAM must get an error it
    can parse (XML for a query-protocol service) and say what to do, not crash in its parser."""
    lam = server.client("lambda")
    name = unique("sam")
    create_function(lam, name, zip_bytes=make_zip({"app.py": APP}))
    res = sam(server, name, "--event", "{}")
    assert res.returncode != 0
    assert "Please provide full resource ARN" in res.stderr + res.stdout, res.stderr
    assert "ResponseParserError" not in res.stderr + res.stdout
