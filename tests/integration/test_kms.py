"""KMS end to end through boto3 only: keys, aliases, Encrypt/Decrypt with an EncryptionContext, and
a function whose KMSKeyArn seals its environment: DisableKey breaks Invoke (KMSDisabledException),
EnableKey heals it; the environment is not in plain text under the data dir; master-key rotation
with a server restart keeps everything readable."""
from __future__ import annotations

import json
import uuid

import pytest

from harness import run_lambdalet

from .e2e_support import ROLE, WAIT, default_zip, expect_error, unique
from .functions_support import PY_ZIP
from .at_rest_support import needles_for, scan


@pytest.fixture(scope="module")
def kms(server):
    return server.client("kms")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def _function(lam, key_arn: str, env: dict[str, str], zip_bytes: bytes = PY_ZIP) -> str:
    name = unique("kms")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": zip_bytes}, KMSKeyArn=key_arn, Environment={"Variables": env})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _invoke_env(lam, name: str) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in resp, resp["Payload"].read()
    return json.loads(resp["Payload"].read())["env"]


def test_key_lifecycle_and_aliases(kms, server):
    md = kms.create_key(Description="e2e")["KeyMetadata"]
    assert md["Arn"] == f"arn:aws:kms:{server.region}:{server.account_id}:key/{md['KeyId']}"
    assert md["KeyState"] == "Enabled"
    assert md["KeyId"] in {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    alias = f"alias/{unique('e2e')}"
    kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    with expect_error("AlreadyExistsException", 400):
        kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == md["KeyId"]
    names = {a["AliasName"]: a["TargetKeyId"] for a in kms.list_aliases(KeyId=md["KeyId"])["Aliases"]}
    assert names == {alias: md["KeyId"]}
    policy = json.loads(kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Sid"] == "Enable IAM User Permissions"
    with expect_error("NotFoundException", 400):
        kms.describe_key(KeyId=str(uuid.uuid4()))
    out = kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion"
    with expect_error("KMSInvalidStateException", 400):
        kms.encrypt(KeyId=alias, Plaintext=b"x")
    kms.cancel_key_deletion(KeyId=md["KeyId"])
    assert kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    with expect_error("UnsupportedOperationException", 400):
        kms.create_grant(KeyId=md["KeyId"], GranteePrincipal=f"arn:aws:iam::{server.account_id}:root",
                         Operations=["Decrypt"])


def test_encrypt_decrypt_round_trip_with_context(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    alias = f"alias/{unique('rt')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    ctx = {"app": "e2e", "purpose": "round-trip"}
    blob = kms.encrypt(KeyId=alias, Plaintext=b"top secret", EncryptionContext=ctx)["CiphertextBlob"]
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)        # no KeyId: the blob names it
    assert out["Plaintext"] == b"top secret" and out["KeyId"].endswith(key_id)
    with expect_error("InvalidCiphertextException", 400):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "e2e", "purpose": "other"})
    with expect_error("InvalidCiphertextException", 400):
        kms.decrypt(CiphertextBlob=blob)
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with expect_error("IncorrectKeyException", 400):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=other)
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    kms.disable_key(KeyId=key_id)
    with expect_error("DisabledException", 400):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    kms.enable_key(KeyId=key_id)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"top secret"


def test_disabled_key_breaks_invoke_and_enabling_heals_it(kms, lam, server):
    key = kms.create_key(Description="function key")["KeyMetadata"]
    marker = f"KMSMARKER-{uuid.uuid4().hex}"
    name = _function(lam, key["Arn"], {"SECRET": marker})
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["KMSKeyArn"] == key["Arn"] and cfg["Environment"]["Variables"]["SECRET"] == marker
    assert _invoke_env(lam, name)["SECRET"] == marker              # warm now: cached resolution, idle env

    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(lam.exceptions.KMSDisabledException) as ei:
        lam.invoke(FunctionName=name, Payload=b"{}")
    err = ei.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 502
    assert "KMS Exception: DisabledException" in err["Error"]["Message"]
    with pytest.raises(lam.exceptions.KMSDisabledException):     # stays broken (not a one-off)
        lam.invoke(FunctionName=name, Payload=b"{}")

    kms.enable_key(KeyId=key["KeyId"])
    assert _invoke_env(lam, name)["SECRET"] == marker

    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    with pytest.raises(lam.exceptions.KMSInvalidStateException):
        lam.invoke(FunctionName=name, Payload=b"{}")
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    kms.enable_key(KeyId=key["KeyId"])
    assert _invoke_env(lam, name)["SECRET"] == marker

    # the variables are sealed under the function's key: not in plain text anywhere in the data dir
    hits = scan(server.data_dir, needles_for({"env marker": marker.encode()}))
    assert not hits, "; ".join(hits)


def test_kms_key_arn_is_validated(kms, lam, server):
    missing = f"arn:aws:kms:{server.region}:{server.account_id}:key/{uuid.uuid4()}"
    with pytest.raises(lam.exceptions.KMSNotFoundException):
        lam.create_function(FunctionName=unique("kms"), Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": default_zip()}, KMSKeyArn=missing)
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(lam.exceptions.KMSDisabledException):
        lam.create_function(FunctionName=unique("kms"), Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": default_zip()}, KMSKeyArn=key["Arn"])


@pytest.mark.slow
def test_master_key_rotation_keeps_data_readable(fresh_server):
    srv = fresh_server
    kms, lam = srv.client("kms"), srv.client("lambda")
    key = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"before rotation", EncryptionContext={"k": "v"})["CiphertextBlob"]
    marker = f"ROTMARKER-{uuid.uuid4().hex}"
    name = _function(lam, key["Arn"], {"SECRET": marker})
    master = (srv.data_dir / "master.key").read_bytes()

    srv.stop()
    assert not srv.leaked, srv.leaked
    res = run_lambdalet(srv, "keys", "rotate-master", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (srv.data_dir / "master.key").read_bytes() != master
    srv.start()

    kms, lam = srv.client("kms"), srv.client("lambda")
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})["Plaintext"] == b"before rotation"
    assert _invoke_env(lam, name)["SECRET"] == marker
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]["SECRET"] == marker

