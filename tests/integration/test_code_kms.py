"""SourceKMSKeyArn end to end through boto3 only: a function's .zip sealed under the customer's KMS key
(and its variables under KMSKeyArn). GetFunction reports the key and Code.Location returns the exact
zip; neither the code nor the variables are in plain text under the data dir; a disabled / pending-
deletion key refuses new environments (running ones keep working) and re-enabling heals; a key that
is not usable is refused at deploy; master-key rotation keeps the code readable."""
from __future__ import annotations

import json
import uuid
import zipfile

import pytest
import requests

from harness import run_lambdalet

from .e2e_support import ROLE, WAIT, make_zip, unique
from .at_rest_support import needles_for, scan

HANDLER = """import os, uuid
ENV_ID = uuid.uuid4().hex       # one per execution environment
CODE = {marker!r}

def handler(event, context):
    return {{"code": CODE, "secret": os.environ.get("SECRET"), "env_id": ENV_ID}}
"""


@pytest.fixture(scope="module")
def kms(server):
    return server.client("kms")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def _code(marker: str) -> bytes:
    # ZIP_STORED: the marker is literally in the zip bytes, so a clear-text zip on disk would show it.
    data = make_zip({"app.py": HANDLER.format(marker=marker)}, compression=zipfile.ZIP_STORED)
    assert marker.encode() in data
    return data


def _create(lam, zip_bytes: bytes, source_key: str | None = None, **kw) -> str:
    name = unique("ckms")
    code = {"ZipFile": zip_bytes, **({"SourceKMSKeyArn": source_key} if source_key else {})}
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE, Code=code, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _invoke(lam, name: str, **kw) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=b"{}", **kw)
    assert "FunctionError" not in resp, resp["Payload"].read()
    return json.loads(resp["Payload"].read())


def _download(server, location: str) -> requests.Response:
    return requests.get(location, verify=server.ca, timeout=30)


def _new_environment(lam, name: str) -> None:
    """A configuration change is a new revision: the next invoke needs a new environment."""
    lam.update_function_configuration(FunctionName=name, Description=uuid.uuid4().hex)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def test_code_sealed_under_source_key(kms, lam, server):
    code_key, env_key = kms.create_key()["KeyMetadata"], kms.create_key()["KeyMetadata"]
    code_marker, env_marker = f"CODEKMS-{uuid.uuid4().hex}", f"ENVKMS-{uuid.uuid4().hex}"
    zip_bytes = _code(code_marker)
    name = _create(lam, zip_bytes, code_key["Arn"], KMSKeyArn=env_key["Arn"],
                   Environment={"Variables": {"SECRET": env_marker}})
    first = _invoke(lam, name)
    assert (first["code"], first["secret"]) == (code_marker, env_marker)

    got = lam.get_function(FunctionName=name)
    assert got["Code"]["SourceKMSKeyArn"] == code_key["Arn"] and got["Configuration"]["KMSKeyArn"] == env_key["Arn"]
    location = got["Code"]["Location"]
    r = _download(server, location)
    assert r.status_code == 200 and r.content == zip_bytes

    hits = scan(server.data_dir, needles_for({"code marker": code_marker.encode(), "env marker": env_marker.encode()}))
    assert not hits, "; ".join(hits)

    kms.disable_key(KeyId=code_key["KeyId"])
    assert _invoke(lam, name)["env_id"] == first["env_id"]      # the running environment keeps working
    code = lam.get_function(FunctionName=name)["Code"]
    assert "Location" not in code and code["Error"]["ErrorCode"] == "KMSDisabledException"
    r = _download(server, location)                              # a URL handed out before: refused too
    assert r.status_code == 502 and r.headers["x-amzn-ErrorType"] == "KMSDisabledException"
    assert zip_bytes not in r.content
    _new_environment(lam, name)
    with pytest.raises(lam.exceptions.KMSDisabledException) as ei:
        lam.invoke(FunctionName=name, Payload=b"{}")
    err = ei.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert "KMS Exception: DisabledException" in err["Error"]["Message"]
    with pytest.raises(lam.exceptions.KMSDisabledException):    # stays broken (not a one-off)
        lam.invoke(FunctionName=name, Payload=b"{}")

    kms.enable_key(KeyId=code_key["KeyId"])
    healed = _invoke(lam, name)
    assert healed["code"] == code_marker and healed["env_id"] != first["env_id"]
    assert _download(server, location).content == zip_bytes

    # a fresh version under a key pending deletion: refused; cancelled and enabled: it runs
    kms.schedule_key_deletion(KeyId=code_key["KeyId"], PendingWindowInDays=7)
    version = lam.publish_version(FunctionName=name)["Version"]
    with pytest.raises(lam.exceptions.KMSInvalidStateException) as ei:
        lam.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    kms.cancel_key_deletion(KeyId=code_key["KeyId"])
    kms.enable_key(KeyId=code_key["KeyId"])
    assert _invoke(lam, name, Qualifier=version)["code"] == code_marker
    assert lam.get_function(FunctionName=name, Qualifier=version)["Code"]["SourceKMSKeyArn"] == code_key["Arn"]
    lam.delete_function(FunctionName=name)


def test_unusable_source_key_is_refused_at_deploy(kms, lam, server):
    missing = f"arn:aws:kms:{server.region}:{server.account_id}:key/{uuid.uuid4()}"
    with pytest.raises(lam.exceptions.KMSNotFoundException):
        _create(lam, _code("nf"), missing)
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(lam.exceptions.KMSDisabledException) as ei:
        _create(lam, _code("dis"), key["Arn"])
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
    name = _create(lam, _code("plain"))
    with pytest.raises(lam.exceptions.KMSDisabledException):
        lam.update_function_code(FunctionName=name, ZipFile=_code("dis2"), SourceKMSKeyArn=key["Arn"])
    assert "SourceKMSKeyArn" not in lam.get_function(FunctionName=name)["Code"]
    lam.delete_function(FunctionName=name)


def test_update_function_code_moves_between_keys(kms, lam, server):
    key = kms.create_key()["KeyMetadata"]
    marker = f"SHARED-{uuid.uuid4().hex}"
    zip_bytes = _code(marker)
    plain, sealed = _create(lam, zip_bytes), _create(lam, _code("before"))
    out = lam.update_function_code(FunctionName=sealed, ZipFile=zip_bytes, SourceKMSKeyArn=key["Arn"])
    lam.get_waiter("function_updated_v2").wait(FunctionName=sealed, WaiterConfig=WAIT)
    assert out["CodeSha256"] == lam.get_function_configuration(FunctionName=plain)["CodeSha256"]
    # the same zip, one copy under the platform key and one under the customer key: both run
    assert _invoke(lam, plain)["code"] == marker and _invoke(lam, sealed)["code"] == marker
    code = lam.get_function(FunctionName=sealed)["Code"]
    assert code["SourceKMSKeyArn"] == key["Arn"] and _download(server, code["Location"]).content == zip_bytes
    kms.disable_key(KeyId=key["KeyId"])
    _new_environment(lam, plain)
    assert _invoke(lam, plain)["code"] == marker                  # the platform-key copy is unaffected
    # omitting SourceKMSKeyArn on the next upload goes back to the platform key, as in AWS
    lam.update_function_code(FunctionName=sealed, ZipFile=zip_bytes)
    lam.get_waiter("function_updated_v2").wait(FunctionName=sealed, WaiterConfig=WAIT)
    assert "SourceKMSKeyArn" not in lam.get_function(FunctionName=sealed)["Code"]
    assert _invoke(lam, sealed)["code"] == marker
    kms.enable_key(KeyId=key["KeyId"])
    for name in (plain, sealed):
        lam.delete_function(FunctionName=name)


@pytest.mark.slow
def test_master_key_rotation_keeps_code_readable(fresh_server):
    srv = fresh_server
    kms, lam = srv.client("kms"), srv.client("lambda")
    key = kms.create_key()["KeyMetadata"]
    marker = f"ROTCODE-{uuid.uuid4().hex}"
    zip_bytes = _code(marker)
    name = _create(lam, zip_bytes, key["Arn"])
    blobs = {p: p.read_bytes() for p in (srv.data_dir / "blobs").rglob("*.blob")}

    srv.stop()
    assert not srv.leaked, srv.leaked
    res = run_lambdalet(srv, "keys", "rotate-master", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {p: p.read_bytes() for p in (srv.data_dir / "blobs").rglob("*.blob")} == blobs   # not re-encrypted
    srv.start()

    lam = srv.client("lambda")
    assert _invoke(lam, name)["code"] == marker
    r = _download(srv, lam.get_function(FunctionName=name)["Code"]["Location"])
    assert r.status_code == 200 and r.content == zip_bytes
