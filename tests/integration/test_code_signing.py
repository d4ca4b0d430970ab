"""Code signing end to end: profiles and signatures made with the `lambdalet signer` CLI on the
server's data dir, code signing configs and deployments through boto3 against the real server.

Covers: a signed zip is accepted (and its signer shown); unsigned, tampered, expired, revoked and
not-allowed code is refused under Enforce with Lambda's modelled errors; Warn deploys and logs;
the nine code-signing-config operations."""
from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import time
import zipfile

import pytest

from .e2e_support import ROLE, default_zip, delete_quietly, expect_error, make_zip, unique

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture
def lam(server):
    return server.client()


def signer(server, *args: str, ok: bool = True) -> dict | subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "lambdalet", "signer", *args, "--data-dir", str(server.data_dir)],
                         env=server.cli_env(), capture_output=True, text=True, timeout=60, cwd=str(REPO))
    if not ok:
        return res
    assert res.returncode == 0, f"signer {args} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


def new_profile(server, *extra: str) -> dict:
    return signer(server, "create-profile", unique("p").replace("-", "_"), *extra)


def sign(server, tmp_path, profile: dict, data: bytes) -> tuple[bytes, dict]:
    src, out = tmp_path / f"{unique('in')}.zip", tmp_path / f"{unique('out')}.zip"
    src.write_bytes(data)
    job = signer(server, "sign", "--profile", profile["profileName"], str(src), "-o", str(out))
    return out.read_bytes(), job


def csc(lam, profiles: list[dict], policy: str = "Enforce") -> str:
    resp = lam.create_code_signing_config(
        Description="test", AllowedPublishers={"SigningProfileVersionArns": [p["profileVersionArn"] for p in profiles]},
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": policy})
    return resp["CodeSigningConfig"]["CodeSigningConfigArn"]


def create(lam, name: str, data: bytes, config_arn: str | None = None) -> dict:
    kw = {"CodeSigningConfigArn": config_arn} if config_arn else {}
    return lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                               Code={"ZipFile": data}, **kw)


def tamper(data: bytes, name: str = "app.py") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = zin.read(info)
            if info.filename == name:
                body += b"\nimport os  # injected after signing\n"
            zout.writestr(info, body)
    return buf.getvalue()


@pytest.fixture
def enforced(server, lam, tmp_path):
    """(profile, Enforce config ARN, a function created from signed code under it)."""
    profile = new_profile(server)
    arn = csc(lam, [profile])
    name = unique("cs")
    signed, job = sign(server, tmp_path, profile, default_zip("v1"))
    resp = create(lam, name, signed, arn)
    yield profile, arn, name, resp, job
    delete_quietly(lam, name)


def test_signed_zip_is_accepted_and_its_signer_shown(server, lam, enforced):
    profile, arn, name, resp, job = enforced
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["SigningProfileVersionArn"] == profile["profileVersionArn"]
    assert resp["SigningJobArn"] == job["jobArn"]
    assert profile["profileVersionArn"].startswith(f"arn:aws:signer:{server.region}:000000000000:/signing-profiles/")
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["SigningProfileVersionArn"] == profile["profileVersionArn"]
    assert conf["SigningJobArn"] == job["jobArn"]
    got = lam.get_function_code_signing_config(FunctionName=name)
    assert (got["CodeSigningConfigArn"], got["FunctionName"]) == (arn, name)
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == [
        server.function_arn(name)]
    # a published version keeps the signer
    v = lam.publish_version(FunctionName=name)
    assert v["SigningJobArn"] == job["jobArn"]


def test_signed_code_runs(server, lam, enforced):
    _, _, name, _, _ = enforced
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    resp = lam.invoke(FunctionName=name, Payload=b'{"x": 1}')
    assert json.loads(resp["Payload"].read()) == {"hello": {"x": 1}}, resp.get("FunctionError")


def test_unsigned_code_is_refused_under_enforce(server, lam, enforced):
    _, arn, name, resp, _ = enforced
    other = unique("cs-unsigned")
    with expect_error("CodeVerificationFailedException", 400) as err:
        create(lam, other, default_zip("unsigned"), arn)
    assert "not signed" in err.message
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=other)          # nothing was created
    with expect_error("CodeVerificationFailedException", 400):
        lam.update_function_code(FunctionName=name, ZipFile=default_zip("unsigned"))
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == resp["CodeSha256"]


def test_tampered_code_is_refused_even_under_warn(server, lam, tmp_path, enforced):
    profile, arn, name, resp, _ = enforced
    signed, _ = sign(server, tmp_path, profile, default_zip("v2"))
    with expect_error("InvalidCodeSignatureException", 400) as err:
        lam.update_function_code(FunctionName=name, ZipFile=tamper(signed))
    assert "modified after it was signed" in err.message
    lam.update_code_signing_config(CodeSigningConfigArn=arn,
                                   CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Warn"})
    with expect_error("InvalidCodeSignatureException", 400):
        lam.update_function_code(FunctionName=name, ZipFile=tamper(signed))
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == resp["CodeSha256"]
    # `lambdalet signer verify` agrees, locally
    (tmp_path / "good.zip").write_bytes(signed)
    (tmp_path / "bad.zip").write_bytes(tamper(signed))
    assert signer(server, "verify", str(tmp_path / "good.zip"))["valid"] is True
    bad = signer(server, "verify", str(tmp_path / "bad.zip"), ok=False)
    assert bad.returncode == 1 and "modified" in json.loads(bad.stdout)["integrity"]
    # the untampered package goes through
    assert lam.update_function_code(FunctionName=name, ZipFile=signed)["CodeSha256"] != resp["CodeSha256"]


def test_repacked_signed_zip_is_still_accepted(server, lam, tmp_path, enforced):
    """The digest covers the unpacked tree: another compression, order and timestamps do not matter."""
    profile, _, name, _, _ = enforced
    signed, job = sign(server, tmp_path, profile, make_zip({"app.py": "def handler(e, c):\n    return 1\n",
                                                            "lib/a.txt": "a", "lib/b.txt": "b"}))
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(signed)) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for info in reversed(zin.infolist()):
            new = zipfile.ZipInfo(info.filename, date_time=(2030, 5, 5, 5, 5, 6))
            new.external_attr = info.external_attr
            zout.writestr(new, zin.read(info))
    assert buf.getvalue() != signed
    assert lam.update_function_code(FunctionName=name, ZipFile=buf.getvalue())["SigningJobArn"] == job["jobArn"]


def test_expired_signature_is_refused(server, lam, tmp_path, enforced):
    _, _, name, _, _ = enforced
    short = new_profile(server, "--validity-seconds", "2")
    arn = csc(lam, [short])
    lam.put_function_code_signing_config(CodeSigningConfigArn=arn, FunctionName=name)
    signed, _ = sign(server, tmp_path, short, default_zip("expiring"))
    time.sleep(2.5)
    with expect_error("CodeVerificationFailedException", 400) as err:
        lam.update_function_code(FunctionName=name, ZipFile=signed)
    assert "expir" in err.message


def test_revoked_profile_and_signature_are_refused(server, lam, tmp_path):
    profile = new_profile(server)
    arn = csc(lam, [profile])
    name = unique("cs-rev")
    before, _ = sign(server, tmp_path, profile, default_zip("before"))
    time.sleep(1.1)
    cutoff = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.1)
    after, after_job = sign(server, tmp_path, profile, default_zip("after"))
    try:
        create(lam, name, before, arn)
        rec = signer(server, "revoke-profile", profile["profileName"], "--effective-time", cutoff,
                     "--reason", "key compromised")
        assert rec["status"] == "Revoked"
        # made after the effective time: refused; made before: still valid (AWS Signer's semantics)
        with expect_error("CodeVerificationFailedException", 400) as err:
            lam.update_function_code(FunctionName=name, ZipFile=after)
        assert "revo" in err.message
        lam.update_function_code(FunctionName=name, ZipFile=before)
        # a revoked profile signs nothing more
        src = tmp_path / "x.zip"
        src.write_bytes(default_zip("x"))
        res = signer(server, "sign", "--profile", profile["profileName"], str(src), "-o", str(tmp_path / "y.zip"),
                     ok=False)
        assert res.returncode != 0 and "Revoked" in res.stderr
        # one signature revoked on its own
        other = new_profile(server)
        lam.update_code_signing_config(CodeSigningConfigArn=arn, AllowedPublishers={
            "SigningProfileVersionArns": [profile["profileVersionArn"], other["profileVersionArn"]]})
        good, job = sign(server, tmp_path, other, default_zip("good"))
        lam.update_function_code(FunctionName=name, ZipFile=good)
        signer(server, "revoke-signature", job["jobId"], "--reason", "bad build")
        with expect_error("CodeVerificationFailedException", 400):
            lam.update_function_code(FunctionName=name, ZipFile=good)
        assert after_job["jobId"] != job["jobId"]
    finally:
        delete_quietly(lam, name)


def test_publisher_not_allowed_is_refused(server, lam, tmp_path, enforced):
    _, _, name, _, _ = enforced
    stranger = new_profile(server, "--algorithm", "ecdsa-p384")
    signed, _ = sign(server, tmp_path, stranger, default_zip("stranger"))
    with expect_error("CodeVerificationFailedException", 400) as err:
        lam.update_function_code(FunctionName=name, ZipFile=signed)
    assert "not an allowed publisher" in err.message


def test_warn_mode_deploys_and_logs_a_warning(server, lam, tmp_path):
    profile = new_profile(server)
    arn = csc(lam, [profile], policy="Warn")
    name = unique("cs-warn")
    try:
        resp = create(lam, name, default_zip("unsigned-warn"), arn)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert "SigningProfileVersionArn" not in resp
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and name not in server.log_text(limit=200_000):
            time.sleep(0.1)
        logs = server.log_text(limit=200_000)
        line = next((ln for ln in logs.splitlines() if name in ln and "SignatureValidationErrors" in ln), "")
        assert "deployed under Warn" in line and "not signed" in line, logs[-3000:]
    finally:
        delete_quietly(lam, name)


def test_code_signing_config_operations(server, lam, tmp_path):
    profile = new_profile(server)
    created = lam.create_code_signing_config(
        AllowedPublishers={"SigningProfileVersionArns": [profile["profileVersionArn"]]})["CodeSigningConfig"]
    arn = created["CodeSigningConfigArn"]
    assert created["CodeSigningConfigId"].startswith("csc-") and arn.endswith(created["CodeSigningConfigId"])
    assert created["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}     # AWS's default
    got = lam.get_code_signing_config(CodeSigningConfigArn=arn)["CodeSigningConfig"]
    assert got == created
    upd = lam.update_code_signing_config(CodeSigningConfigArn=arn, Description="now enforced",
                                         CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"})
    assert upd["CodeSigningConfig"]["Description"] == "now enforced"
    assert upd["CodeSigningConfig"]["CodeSigningPolicies"]["UntrustedArtifactOnDeployment"] == "Enforce"
    arns, marker = [], None
    while True:
        page = lam.list_code_signing_configs(MaxItems=2, **({"Marker": marker} if marker else {}))
        arns += [c["CodeSigningConfigArn"] for c in page["CodeSigningConfigs"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert arn in arns and len(arns) == len(set(arns))

    name = unique("cs-ops")
    create(lam, name, default_zip("plain"))                 # no config: anything goes
    try:
        assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == ""
        put = lam.put_function_code_signing_config(CodeSigningConfigArn=arn, FunctionName=name)
        assert put["CodeSigningConfigArn"] == arn and put["FunctionName"] == name
        assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == [
            server.function_arn(name)]
        with expect_error("ResourceConflictException", 409):
            lam.delete_code_signing_config(CodeSigningConfigArn=arn)
        with expect_error("CodeVerificationFailedException", 400):
            lam.update_function_code(FunctionName=name, ZipFile=default_zip("unsigned-now"))
        lam.delete_function_code_signing_config(FunctionName=name)
        assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == ""
        lam.update_function_code(FunctionName=name, ZipFile=default_zip("unsigned-again"))
        assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == []
    finally:
        delete_quietly(lam, name)
    lam.delete_code_signing_config(CodeSigningConfigArn=arn)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_code_signing_config(CodeSigningConfigArn=arn)
    with expect_error("CodeSigningConfigNotFoundException", 404):
        create(lam, unique("cs-gone"), default_zip(), arn)
    with expect_error({"InvalidParameterValueException", "ValidationException"}, 400):
        lam.create_code_signing_config(AllowedPublishers={"SigningProfileVersionArns": ["arn:aws:iam::1:role/x"]})
