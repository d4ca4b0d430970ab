"""State survives a restart (SIGTERM, start again on the same data dir)."""
from __future__ import annotations

import signal

import pytest
import requests

from .e2e_support import HANDLER_CODE, WAIT, code_sha256, create_function, default_zip, expect_error, make_zip


@pytest.mark.slow
def test_everything_survives_restart(fresh_server):
    srv = fresh_server
    lam = srv.client()
    name = "persist-fn"
    z1 = make_zip({"app.py": HANDLER_CODE, "data.txt": "one"})
    create_function(lam, name, zip_bytes=z1, MemorySize=512, Timeout=42, Description="kept",
                    Environment={"Variables": {"COLOR": "blue", "N": "1"}}, Tags={"team": "core"})
    v1 = lam.publish_version(FunctionName=name, Description="v1")["Version"]
    z2 = default_zip("second")
    lam.update_function_code(FunctionName=name, ZipFile=z2)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    deleted = "persist-gone"
    create_function(lam, deleted)
    lam.delete_function(FunctionName=deleted)
    before_conf = lam.get_function_configuration(FunctionName=name)
    before_keys = dict(srv.env)

    old_pid = srv.pid
    srv.restart()
    assert srv.pid != old_pid
    lam = srv.client()  # new port

    assert srv.env["AWS_ACCESS_KEY_ID"] == before_keys["AWS_ACCESS_KEY_ID"]
    assert srv.env["AWS_SECRET_ACCESS_KEY"] == before_keys["AWS_SECRET_ACCESS_KEY"]

    conf = lam.get_function_configuration(FunctionName=name)
    for key in ("FunctionArn", "Runtime", "Handler", "Role", "MemorySize", "Timeout", "Description",
                "CodeSha256", "CodeSize", "RevisionId", "LastModified"):
        assert conf[key] == before_conf[key], key
    assert conf["Environment"]["Variables"] == {"COLOR": "blue", "N": "1"}
    assert conf["CodeSha256"] == code_sha256(z2)

    got = lam.get_function(FunctionName=name)
    assert got.get("Tags") == {"team": "core"}
    assert got["Concurrency"]["ReservedConcurrentExecutions"] == 5
    r = requests.get(got["Code"]["Location"], verify=srv.ca, timeout=30)
    assert r.status_code == 200 and r.content == z2

    vconf = lam.get_function_configuration(FunctionName=name, Qualifier=v1)
    assert vconf["CodeSha256"] == code_sha256(z1) and vconf["Description"] == "v1"
    assert vconf["Environment"]["Variables"] == {"COLOR": "blue", "N": "1"}
    vloc = lam.get_function(FunctionName=name, Qualifier=v1)["Code"]["Location"]
    assert requests.get(vloc, verify=srv.ca, timeout=30).content == z1
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", v1]
    alias = lam.get_alias(FunctionName=name, Name="live")
    assert alias["FunctionVersion"] == v1
    assert lam.list_tags(Resource=srv.function_arn(name))["Tags"] == {"team": "core"}
    assert lam.get_function_configuration(FunctionName=name, Qualifier="live")["Version"] == v1
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=deleted)

    # the server keeps working normally: versions continue from where they were
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert lam.publish_version(FunctionName=name)["Version"] == str(int(v1) + 1)
    create_function(lam, "persist-after")
    assert {"persist-fn", "persist-after"} <= {f["FunctionName"] for f in lam.list_functions()["Functions"]}


@pytest.mark.slow
def test_code_location_from_before_restart_still_valid(fresh_server):
    """A Code.Location URL handed out before a restart is still honoured (its key is derived from the
    persistent master key, not a per-process secret) — only the port changes, so rebase it."""
    srv = fresh_server
    lam = srv.client()
    z = default_zip("url")
    create_function(lam, "url-fn", zip_bytes=z)
    loc = lam.get_function(FunctionName="url-fn")["Code"]["Location"]
    old_base = srv.url.rstrip("/")
    srv.restart()
    rebased = srv.url.rstrip("/") + loc[len(old_base):]
    r = requests.get(rebased, verify=srv.ca, timeout=30)
    assert r.status_code == 200 and r.content == z


def test_sigterm_exits_promptly_and_cleanly(fresh_server):
    srv = fresh_server
    srv.client().list_functions()  # leaves a keep-alive connection open, as real clients do
    rc = srv.stop(sig=signal.SIGTERM)
    assert not srv.leaked, srv.leaked
    assert rc in (0, -signal.SIGTERM), f"exit code {rc}\n{srv.log_text()}"
    # A clean shutdown withdraws endpoint.json (run.py's `finally`), so `lambdalet env` cannot hand out
    # the address of a server that is gone.
    assert not (srv.data_dir / "endpoint.json").exists(), (
        "endpoint.json still present after SIGTERM: the server's shutdown cleanup did not run")
    srv.start()  # and starts again on the same data dir
    assert "Functions" in srv.client().list_functions()
