"""SourceKMSKeyArn below the API: how blobs are keyed (digest + sealer scope), CodeSealer's binding to
the key and the function, key-state checks on open and in the code cache, master-key rotation, and
the control plane (CreateFunction / UpdateFunctionCode / GetFunction / PublishVersion)."""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from lambdalet.blobs import BlobNotFound, BlobStore
from lambdalet.config import Settings
from lambdalet.crypto import DecryptionError, FileKeyMaterialStore, Keyring, read_token, sealed_key_id
from lambdalet.invoke.codecache import CodeCache
from lambdalet.kms import FunctionKeys, KmsService
from lambdalet.kms import lambda_keys as LE
from lambdalet.services.lambda_service import LambdaService
from .kms_support import ACCOUNT, REGION, Env, make_ctx

FN1 = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:one"
FN2 = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:two"


def _zip(marker: str = "CODEMARKER") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("app.py", f"def handler(event, context):\n    return {marker!r}\n")
    return buf.getvalue()


DATA = _zip()
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def env(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    e = Env(data)
    e.keys = FunctionKeys(e.kms)
    e.blobs = BlobStore(data / "blobs", e.keyring)
    yield e
    e.db.close()


def _files(store: BlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*.blob"))


# ---------------------------------------------------------------- blob keying


def test_same_zip_under_each_key_and_function_is_its_own_blob(env):
    k1, k2 = env.key()["Arn"], env.key()["Arn"]
    sealers = [None, env.keys.code_sealer(k1, FN1), env.keys.code_sealer(k2, FN1), env.keys.code_sealer(k1, FN2)]
    for s in sealers:
        env.blobs.put(DATA, s)
        env.blobs.put(DATA, s)                       # dedup within one (digest, key, function)
    files = _files(env.blobs)
    assert len(files) == 4
    for s in sealers:
        assert env.blobs.get(DIGEST, s) == DATA
    # customer-key blobs are sealed under their key's KEK, the platform blob under the platform key
    kinds = sorted(sealed_key_id(f.read_bytes()) for f in files)
    assert kinds == sorted(["platform", sealers[1].kek, sealers[2].kek, sealers[3].kek])
    # another function's or key's sealer does not find (let alone open) a blob
    fresh = BlobStore(env.data / "other", env.keyring)
    fresh.put(DATA, sealers[1])
    with pytest.raises(BlobNotFound):
        fresh.get(DIGEST, sealers[3])
    with pytest.raises(BlobNotFound):
        fresh.get(DIGEST)


def test_platform_blob_names_are_unchanged(env):
    """Blobs written before SourceKMSKeyArn existed keep their names: HMAC(name key, digest)."""
    env.blobs.put(DATA)
    name = hmac.new(env.keyring.derive_key("blob-name"), DIGEST.encode(), hashlib.sha256).hexdigest()
    assert _files(env.blobs) == [env.blobs.root / name[:2] / f"{name}.blob"]


def test_swapped_or_substituted_blobs_are_refused(env):
    k1 = env.key()["Arn"]
    s1, s2 = env.keys.code_sealer(k1, FN1), env.keys.code_sealer(k1, FN2)
    env.blobs.put(DATA, s1)
    env.blobs.put(DATA, s2)
    env.blobs.put(DATA)
    p1, p2, plat = env.blobs._path(DIGEST, s1), env.blobs._path(DIGEST, s2), env.blobs._path(DIGEST)
    # same key, other function: the encryption context (function ARN) differs
    p2.write_bytes(p1.read_bytes())
    with pytest.raises(DecryptionError):
        env.blobs.get(DIGEST, s2)
    # a customer-key envelope in a platform blob's place is not opened as one
    plat.write_bytes(p1.read_bytes())
    with pytest.raises(DecryptionError):
        env.blobs.get(DIGEST)


def test_open_checks_the_key_state(env):
    md = env.key()
    sealer = env.keys.code_sealer(md["Arn"], FN1)
    env.blobs.put(DATA, sealer)
    env.call("disable_key", KeyId=md["KeyId"])
    with pytest.raises(LE.KMSDisabledException) as ei:
        env.blobs.get(DIGEST, sealer)
    assert ei.value.status == 502 and "deployment package" in ei.value.message
    assert "KMS Exception: DisabledException" in ei.value.message
    with pytest.raises(LE.KMSDisabledException):                 # nor can anything new be sealed
        env.blobs.put(b"other bytes", sealer)
    env.call("enable_key", KeyId=md["KeyId"])
    assert env.blobs.get(DIGEST, sealer) == DATA
    env.call("schedule_key_deletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    with pytest.raises(LE.KMSInvalidStateException):
        env.blobs.get(DIGEST, sealer)


def test_blobs_survive_master_key_rotation_untouched(env):
    md = env.key()
    env.blobs.put(DATA, env.keys.code_sealer(md["Arn"], FN1))
    before = {p: p.read_bytes() for p in _files(env.blobs)}
    new_master = os.urandom(32)
    env.keyring.rewrap(new_master)
    ring = Keyring.open(new_master, FileKeyMaterialStore(env.data / "keys"))
    keys = FunctionKeys(KmsService(env.db, ring))
    assert BlobStore(env.data / "blobs", ring).get(DIGEST, keys.code_sealer(md["Arn"], FN1)) == DATA
    assert {p: p.read_bytes() for p in _files(env.blobs)} == before          # nothing re-encrypted


# ---------------------------------------------------------------- the code cache


def test_cache_hit_does_not_bypass_the_key(env, tmp_path):
    code_key, env_key = env.key(), env.key()
    env.blobs.put(DATA, env.keys.code_sealer(code_key["Arn"], FN1))
    cache = CodeCache(tmp_path / "code", env.blobs)
    cache.keys = env.keys
    d = cache.path_for(DIGEST, code_key["Arn"], FN1, env_key["Arn"])
    assert "CODEMARKER" in (d / "app.py").read_text()
    assert d.name != DIGEST                       # its own entry, not a platform-key copy's
    env.call("disable_key", KeyId=code_key["KeyId"])
    assert d.is_dir()                             # running environments keep their /var/task ...
    with pytest.raises(LE.KMSDisabledException):  # ... but no new environment gets it
        cache.path_for(DIGEST, code_key["Arn"], FN1, env_key["Arn"])
    env.call("enable_key", KeyId=code_key["KeyId"])
    env.call("disable_key", KeyId=env_key["KeyId"])    # KMSKeyArn guards the unzipped copy too
    with pytest.raises(LE.KMSDisabledException):
        cache.path_for(DIGEST, code_key["Arn"], FN1, env_key["Arn"])
    env.call("enable_key", KeyId=env_key["KeyId"])
    assert cache.path_for(DIGEST, code_key["Arn"], FN1, env_key["Arn"]) == d
    cache.clear()


# ---------------------------------------------------------------- the control plane


@pytest.fixture
def lam(env):
    settings = Settings(data_dir=env.data)
    svc = LambdaService(env.db, env.keyring, env.blobs, settings)
    svc.deps.kms = svc.resolver.kms = env.keys
    env.kms.listeners.append(svc.resolver.invalidate)
    return svc


def _create(lam, ctx, name, **kw):
    params = dict(FunctionName=name, Runtime="python3.12", Role=f"arn:aws:iam::{ACCOUNT}:role/r",
                  Handler="app.handler", Code={"ZipFile": DATA})
    params.update(kw)
    return lam.create_function(ctx, params)


def test_create_update_get_and_publish(env, lam):
    md = env.key()
    _create(lam, env.ctx, "one", Code={"ZipFile": DATA, "SourceKMSKeyArn": md["Arn"]})
    got = lam.get_function(env.ctx, {"FunctionName": "one"})
    assert got["Code"]["SourceKMSKeyArn"] == md["Arn"] and "Error" not in got["Code"]
    claims = read_token(env.keyring.derive_key("code-url"), got["Code"]["Location"].split("token=")[1])
    assert (claims["s"], claims["k"], claims["f"]) == (DIGEST, md["Arn"], FN1)
    assert env.blobs.get(DIGEST, env.keys.code_sealer(md["Arn"], FN1)) == DATA
    assert not env.blobs.exists(DIGEST)                     # nothing under the platform key
    assert lam.resolve_version(ACCOUNT, "one").code_kms_key_arn == md["Arn"]
    assert "SourceKMSKeyArn" not in lam.get_function_configuration(env.ctx, {"FunctionName": "one"})

    lam.publish_version(env.ctx, {"FunctionName": "one"})
    env.call("disable_key", KeyId=md["KeyId"])
    for q in (None, "1"):                                   # the version keeps its key
        code = lam.get_function(env.ctx, {"FunctionName": "one", **({"Qualifier": q} if q else {})})["Code"]
        assert code["SourceKMSKeyArn"] == md["Arn"] and "Location" not in code
        assert code["Error"]["ErrorCode"] == "KMSDisabledException"
    with pytest.raises(LE.KMSDisabledException):            # no new code under a disabled key
        lam.update_function_code(env.ctx, {"FunctionName": "one", "ZipFile": _zip("v2"),
                                           "SourceKMSKeyArn": md["Arn"]})
    # new code without a key goes back to the platform key (as in AWS: omitted = Lambda's own key)
    v2 = _zip("v2")
    lam.update_function_code(env.ctx, {"FunctionName": "one", "ZipFile": v2})
    code = lam.get_function(env.ctx, {"FunctionName": "one"})["Code"]
    assert "SourceKMSKeyArn" not in code and code["Location"]
    assert env.blobs.exists(hashlib.sha256(v2).hexdigest())
    assert lam.get_function(env.ctx, {"FunctionName": "one", "Qualifier": "1"})["Code"]["SourceKMSKeyArn"]


def test_source_key_is_checked_when_configured(env, lam):
    md = env.key()
    missing = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000"
    with pytest.raises(LE.KMSNotFoundException):
        _create(lam, env.ctx, "f", Code={"ZipFile": DATA, "SourceKMSKeyArn": missing})
    with pytest.raises(LE.KMSNotFoundException):            # an alias is not a key ARN
        _create(lam, env.ctx, "f", Code={"ZipFile": DATA,
                                         "SourceKMSKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/x"})
    env.call("disable_key", KeyId=md["KeyId"])
    with pytest.raises(LE.KMSDisabledException):
        _create(lam, env.ctx, "f", Code={"ZipFile": DATA, "SourceKMSKeyArn": md["Arn"]})
    assert _files(env.blobs) == []                          # refused before anything was written
    env.call("enable_key", KeyId=md["KeyId"])
    # kms:GenerateDataKey to deploy, kms:Decrypt to download
    intern = make_ctx(user="intern")
    env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": intern.caller.principal_arn},
             "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*"}]}))
    with pytest.raises(LE.KMSAccessDeniedException):
        _create(lam, intern, "f", Code={"ZipFile": DATA, "SourceKMSKeyArn": md["Arn"]})
    _create(lam, env.ctx, "f", Code={"ZipFile": DATA, "SourceKMSKeyArn": md["Arn"]})
    code = lam.get_function(intern, {"FunctionName": "f"})["Code"]
    assert code["Error"]["ErrorCode"] == "KMSAccessDeniedException" and "Location" not in code
    assert lam.get_function(env.ctx, {"FunctionName": "f"})["Code"]["Location"]
