"""KmsService against a real (temporary, migrated) SQLite database and a real keyring; and the
KMSKeyArn path through LambdaService (sealing under the key, the data plane's key-state check)."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto import sealed_key_id
from lambdalet.kms import FunctionKeys, KmsBinding
from lambdalet.kms import errors as E
from lambdalet.kms import lambda_keys as LE
from lambdalet.kms.service import DAY_S, context_aad
from lambdalet.services.envvars import seal_env
from lambdalet.services.lambda_service import LambdaService

from .kms_support import ACCOUNT, OTHER, REGION, ROOT, make_ctx


# ---------------------------------------------------------------- keys


def test_create_describe_list(kms_env):
    md = kms_env.key(Description="for tests", Tags=[{"TagKey": "team", "TagValue": "a"}])
    assert md["KeyState"] == "Enabled" and md["Enabled"] is True
    assert md["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{md['KeyId']}"
    assert md["KeySpec"] == "SYMMETRIC_DEFAULT" and md["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert kms_env.call("describe_key", KeyId=md["Arn"])["KeyMetadata"]["Description"] == "for tests"
    assert kms_env.call("describe_key", KeyId=md["KeyId"])["KeyMetadata"]["KeyId"] == md["KeyId"]
    ids = {k["KeyId"] for k in kms_env.call("list_keys")["Keys"]}
    assert ids == {md["KeyId"]}
    assert kms_env.call("list_resource_tags", KeyId=md["KeyId"])["Tags"] == [{"TagKey": "team", "TagValue": "a"}]
    # the material is a KEK in the keyring, wrapped by the master key: the row holds none of it
    assert (kms_env.data / "keys" / f"kms-{md['KeyId']}.key").is_file()
    # other accounts and regions do not see it
    assert kms_env.call("list_keys", make_ctx(OTHER))["Keys"] == []
    with pytest.raises(E.NotFoundException):
        kms_env.call("describe_key", make_ctx(region="eu-west-1"), KeyId=md["KeyId"])
    with pytest.raises(E.NotFoundException):
        kms_env.call("describe_key", KeyId="not-a-key")


def test_list_keys_pages(kms_env):
    ids = sorted(kms_env.key()["KeyId"] for _ in range(5))
    seen, marker = [], None
    while True:
        page = kms_env.call("list_keys", Limit=2, **({"Marker": marker} if marker else {}))
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert seen == ids


def test_only_symmetric_keys(kms_env):
    with pytest.raises(E.UnsupportedOperationException):
        kms_env.key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    with pytest.raises(E.UnsupportedOperationException):
        kms_env.key(MultiRegion=True)


# ---------------------------------------------------------------- cryptography


def test_encrypt_decrypt_with_context(kms_env):
    md = kms_env.key()
    ec = {"purpose": "test", "tenant": "t1"}
    out = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"secret bytes", EncryptionContext=ec)
    blob = out["CiphertextBlob"]
    assert out["KeyId"] == md["Arn"] and b"secret bytes" not in blob
    # self-describing: no KeyId needed; context order does not matter
    got = kms_env.call("decrypt", CiphertextBlob=blob, EncryptionContext=dict(reversed(list(ec.items()))))
    assert got["Plaintext"] == b"secret bytes" and got["KeyId"] == md["Arn"]
    for wrong in ({}, {"purpose": "test"}, {"purpose": "test", "tenant": "t2"}, {**ec, "extra": "x"}):
        with pytest.raises(E.InvalidCiphertextException):
            kms_env.call("decrypt", CiphertextBlob=blob, EncryptionContext=wrong)
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(E.InvalidCiphertextException):
        kms_env.call("decrypt", CiphertextBlob=bytes(tampered), EncryptionContext=ec)
    with pytest.raises(E.InvalidCiphertextException):
        kms_env.call("decrypt", CiphertextBlob=b"garbage")


def test_decrypt_with_wrong_key_id(kms_env):
    a, b = kms_env.key(), kms_env.key()
    blob = kms_env.call("encrypt", KeyId=a["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(E.IncorrectKeyException):
        kms_env.call("decrypt", CiphertextBlob=blob, KeyId=b["KeyId"])
    assert kms_env.call("decrypt", CiphertextBlob=blob, KeyId=a["Arn"])["Plaintext"] == b"x"


def test_platform_envelopes_do_not_open_through_decrypt(kms_env):
    """Decrypt must not be an oracle for the platform's own envelopes, nor for a function's
    variables sealed under a KMS key (Lambda's AAD differs from every KMS context)."""
    md = kms_env.key()
    with pytest.raises(E.InvalidCiphertextException):
        kms_env.call("decrypt", CiphertextBlob=kms_env.keyring.seal(b"platform secret", aad=context_aad({})))
    sealed = seal_env(kms_env.keyring, "fid", "$LATEST", {"K": "v"}, md["Arn"])
    assert sealed_key_id(sealed) == f"kms-{md['KeyId']}"
    with pytest.raises(E.InvalidCiphertextException):
        kms_env.call("decrypt", CiphertextBlob=sealed)


def test_generate_data_key(kms_env):
    md = kms_env.key()
    out = kms_env.call("generate_data_key", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext={"a": "b"})
    assert len(out["Plaintext"]) == 32
    assert kms_env.call("decrypt", CiphertextBlob=out["CiphertextBlob"],
                    EncryptionContext={"a": "b"})["Plaintext"] == out["Plaintext"]
    out = kms_env.call("generate_data_key_without_plaintext", KeyId=md["KeyId"], NumberOfBytes=64)
    assert "Plaintext" not in out
    assert len(kms_env.call("decrypt", CiphertextBlob=out["CiphertextBlob"])["Plaintext"]) == 64
    with pytest.raises(E.ValidationException):
        kms_env.call("generate_data_key", KeyId=md["KeyId"])
    with pytest.raises(E.ValidationException):
        kms_env.call("generate_data_key", KeyId=md["KeyId"], KeySpec="AES_256", NumberOfBytes=32)


def test_re_encrypt(kms_env):
    a, b = kms_env.key(), kms_env.key()
    blob = kms_env.call("encrypt", KeyId=a["KeyId"], Plaintext=b"move me", EncryptionContext={"x": "1"})["CiphertextBlob"]
    out = kms_env.call("re_encrypt", CiphertextBlob=blob, SourceEncryptionContext={"x": "1"},
                   DestinationKeyId=b["KeyId"], DestinationEncryptionContext={"y": "2"})
    assert out["SourceKeyId"] == a["Arn"] and out["KeyId"] == b["Arn"]
    assert kms_env.call("decrypt", CiphertextBlob=out["CiphertextBlob"],
                    EncryptionContext={"y": "2"})["Plaintext"] == b"move me"


def test_plaintext_limit(kms_env):
    md = kms_env.key()
    with pytest.raises(E.ValidationException):
        kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x" * 4097)


# ---------------------------------------------------------------- states


def test_disable_enable(kms_env):
    md = kms_env.key()
    blob = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms_env.call("disable_key", KeyId=md["KeyId"])
    assert kms_env.call("describe_key", KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(E.DisabledException):
        kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x")
    with pytest.raises(E.DisabledException):
        kms_env.call("decrypt", CiphertextBlob=blob)
    kms_env.call("enable_key", KeyId=md["KeyId"])
    assert kms_env.call("decrypt", CiphertextBlob=blob)["Plaintext"] == b"x"


def test_schedule_cancel_and_deletion(kms_env):
    md = kms_env.key()
    kms_env.call("create_alias", AliasName="alias/doomed", TargetKeyId=md["KeyId"])
    blob = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    for days in (6, 31):
        with pytest.raises(E.ValidationException):
            kms_env.call("schedule_key_deletion", KeyId=md["KeyId"], PendingWindowInDays=days)
    out = kms_env.call("schedule_key_deletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and out["DeletionDate"] == kms_env.now[0] + 7 * DAY_S
    with pytest.raises(E.KMSInvalidStateException):
        kms_env.call("decrypt", CiphertextBlob=blob)
    with pytest.raises(E.KMSInvalidStateException):
        kms_env.call("enable_key", KeyId=md["KeyId"])
    with pytest.raises(E.KMSInvalidStateException):
        kms_env.call("schedule_key_deletion", KeyId=md["KeyId"])
    kms_env.call("cancel_key_deletion", KeyId=md["KeyId"])
    assert kms_env.call("describe_key", KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"   # as AWS
    with pytest.raises(E.KMSInvalidStateException):
        kms_env.call("cancel_key_deletion", KeyId=md["KeyId"])
    kms_env.call("schedule_key_deletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    kms_env.now[0] += 7 * DAY_S + 1
    with pytest.raises(E.NotFoundException):       # gone at once, purged lazily
        kms_env.call("describe_key", KeyId=md["KeyId"])
    assert kms_env.kms.purge_expired() == 1
    assert not (kms_env.data / "keys" / f"kms-{md['KeyId']}.key").exists()    # crypto-shredded
    assert kms_env.call("list_aliases")["Aliases"] == []
    assert kms_env.call("list_keys")["Keys"] == []
    with pytest.raises(E.InvalidCiphertextException):
        kms_env.call("decrypt", CiphertextBlob=blob)


def test_state_listeners(kms_env):
    calls = []
    kms_env.kms.listeners.append(lambda: calls.append(1))
    md = kms_env.key()
    kms_env.call("disable_key", KeyId=md["KeyId"])
    kms_env.call("enable_key", KeyId=md["KeyId"])
    kms_env.call("schedule_key_deletion", KeyId=md["KeyId"])
    assert len(calls) == 3


# ---------------------------------------------------------------- aliases


def test_aliases(kms_env):
    a, b = kms_env.key(), kms_env.key()
    kms_env.call("create_alias", AliasName="alias/app", TargetKeyId=a["KeyId"])
    with pytest.raises(E.AlreadyExistsException):
        kms_env.call("create_alias", AliasName="alias/app", TargetKeyId=b["KeyId"])
    for bad in ("app", "alias/", "alias/has space"):
        with pytest.raises(E.InvalidAliasNameException):
            kms_env.call("create_alias", AliasName=bad, TargetKeyId=a["KeyId"])
    with pytest.raises(E.NotFoundException):
        kms_env.call("create_alias", AliasName="alias/aws/lambda", TargetKeyId=a["KeyId"])
    blob = kms_env.call("encrypt", KeyId="alias/app", Plaintext=b"via alias")["CiphertextBlob"]
    assert kms_env.call("decrypt", CiphertextBlob=blob)["KeyId"] == a["Arn"]
    arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/app"
    assert kms_env.call("describe_key", KeyId=arn)["KeyMetadata"]["KeyId"] == a["KeyId"]
    [entry] = kms_env.call("list_aliases")["Aliases"]
    assert entry["AliasName"] == "alias/app" and entry["AliasArn"] == arn and entry["TargetKeyId"] == a["KeyId"]
    kms_env.call("update_alias", AliasName="alias/app", TargetKeyId=b["KeyId"])
    assert kms_env.call("list_aliases", KeyId=b["KeyId"])["Aliases"][0]["AliasName"] == "alias/app"
    assert kms_env.call("list_aliases", KeyId=a["KeyId"])["Aliases"] == []
    kms_env.call("delete_alias", AliasName="alias/app")
    with pytest.raises(E.NotFoundException):
        kms_env.call("describe_key", KeyId="alias/app")


# ---------------------------------------------------------------- key policies


def test_default_key_policy(kms_env):
    md = kms_env.key()
    out = kms_env.call("get_key_policy", KeyId=md["KeyId"])
    doc = json.loads(out["Policy"])
    assert out["PolicyName"] == "default"
    assert doc["Statement"][0]["Sid"] == "Enable IAM User Permissions"
    assert doc["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert kms_env.call("list_key_policies", KeyId=md["KeyId"])["PolicyNames"] == ["default"]


def _policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})




def test_key_policy_is_enforced(kms_env):
    md = kms_env.key()
    blob = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/intern"},
         "Action": "kms:Decrypt", "Resource": "*"}))
    intern = make_ctx(user="intern")
    assert kms_env.call("encrypt", intern, KeyId=md["KeyId"], Plaintext=b"y")["KeyId"] == md["Arn"]
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("decrypt", intern, CiphertextBlob=blob)
    assert kms_env.call("decrypt", CiphertextBlob=blob)["Plaintext"] == b"x"


def test_key_policy_lockout_check(kms_env):
    md = kms_env.key()
    only_other = _policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/other"},
                          "Action": "kms:*", "Resource": "*"})
    with pytest.raises(E.MalformedPolicyDocumentException):
        kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=only_other)
    with pytest.raises(E.MalformedPolicyDocumentException):
        kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy="{not json")
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=only_other,
             BypassPolicyLockoutSafetyCheck=True)
    with pytest.raises(E.AccessDeniedException):         # now even the admin is locked out, as in AWS
        kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"x")
    assert kms_env.call("encrypt", make_ctx(user="other"), KeyId=md["KeyId"], Plaintext=b"x")


def test_cross_account_needs_the_key_policy(kms_env):
    md = kms_env.key()
    other = make_ctx(OTHER)
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("encrypt", other, KeyId=md["Arn"], Plaintext=b"x")
    with pytest.raises(E.NotFoundException):                 # by bare id: looked up in the caller's account
        kms_env.call("encrypt", other, KeyId=md["KeyId"], Plaintext=b"x")
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}))
    blob = kms_env.call("encrypt", other, KeyId=md["Arn"], Plaintext=b"x")["CiphertextBlob"]
    assert kms_env.call("decrypt", other, CiphertextBlob=blob)["Plaintext"] == b"x"
    with pytest.raises(E.NotFoundException):                 # management stays with the owner
        kms_env.call("disable_key", other, KeyId=md["Arn"])


def test_unimplemented_operations_are_400(kms_env):
    from lambdalet.api.app import ServiceBinding
    from lambdalet.api.protocol import load_service_model
    binding = ServiceBinding(None, KmsBinding(kms_env.kms, load_service_model("kms")))
    with pytest.raises(E.UnsupportedOperationException):
        binding.handler_for("CreateGrant")(kms_env.ctx, {})
    assert binding.handler_for("Encrypt") == kms_env.kms.encrypt
    assert binding.handler_for("NoSuchThing") is None


# ---------------------------------------------------------------- Lambda's KMSKeyArn


@pytest.fixture
def lam(kms_env):
    settings = Settings(data_dir=kms_env.data)
    svc = LambdaService(kms_env.db, kms_env.keyring, BlobStore(settings.blob_dir, kms_env.keyring), settings)
    svc.deps.kms = svc.resolver.kms = FunctionKeys(kms_env.kms)
    kms_env.kms.listeners.append(svc.resolver.invalidate)
    return svc


def _make_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


def _create(lam, ctx, name, **kw):
    params = dict(FunctionName=name, Runtime="python3.12", Role=f"arn:aws:iam::{ACCOUNT}:role/r",
                  Handler="app.handler", Code={"ZipFile": _make_zip()})
    params.update(kw)
    return lam.create_function(ctx, params)


def test_function_env_sealed_under_its_kms_key(kms_env, lam):
    md = kms_env.key()
    out = _create(lam, kms_env.ctx, "f", KMSKeyArn=md["Arn"], Environment={"Variables": {"TOKEN": "s3cr3t"}})
    assert out["KMSKeyArn"] == md["Arn"]
    import sqlalchemy as sa
    from lambdalet.services.records import V
    with kms_env.db.read() as conn:
        sealed = conn.execute(sa.select(V.c.env_sealed)).scalar()
    assert sealed_key_id(sealed) == f"kms-{md['KeyId']}"
    lam.get_function_configuration(kms_env.ctx, {"FunctionName": "f"})     # a read completes Pending -> Active
    assert dict(lam.resolve_version(ACCOUNT, "f").environment) == {"TOKEN": "s3cr3t"}
    lam.publish_version(kms_env.ctx, {"FunctionName": "f"})
    with kms_env.db.read() as conn:
        assert {sealed_key_id(r.env_sealed) for r in conn.execute(sa.select(V.c.env_sealed))} == {f"kms-{md['KeyId']}"}

    kms_env.call("disable_key", KeyId=md["KeyId"])
    for q in (None, "1"):
        with pytest.raises(LE.KMSDisabledException) as ei:
            lam.resolve_version(ACCOUNT, "f", q)
        assert ei.value.status == 502 and "KMS Exception: DisabledException" in ei.value.message
    # the control plane still answers
    cfg = lam.get_function_configuration(kms_env.ctx, {"FunctionName": "f"})
    assert cfg["Environment"]["Variables"]["TOKEN"] == "s3cr3t"
    kms_env.call("enable_key", KeyId=md["KeyId"])
    assert lam.resolve_version(ACCOUNT, "f", "1").environment["TOKEN"] == "s3cr3t"
    kms_env.call("schedule_key_deletion", KeyId=md["KeyId"])
    with pytest.raises(LE.KMSInvalidStateException):
        lam.resolve_version(ACCOUNT, "f")
    kms_env.call("cancel_key_deletion", KeyId=md["KeyId"])
    kms_env.call("schedule_key_deletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    kms_env.now[0] += 8 * DAY_S
    kms_env.kms.purge_expired()
    with pytest.raises(LE.KMSNotFoundException):
        lam.resolve_version(ACCOUNT, "f")


def test_kms_key_arn_is_checked_when_configured(kms_env, lam):
    md = kms_env.key()
    missing = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000"
    with pytest.raises(LE.KMSNotFoundException):
        _create(lam, kms_env.ctx, "f1", KMSKeyArn=missing)
    kms_env.call("disable_key", KeyId=md["KeyId"])
    with pytest.raises(LE.KMSDisabledException):
        _create(lam, kms_env.ctx, "f1", KMSKeyArn=md["Arn"])
    kms_env.call("enable_key", KeyId=md["KeyId"])
    _create(lam, kms_env.ctx, "f1", Environment={"Variables": {"A": "1"}})
    kms_env.call("schedule_key_deletion", KeyId=md["KeyId"])
    with pytest.raises(LE.KMSInvalidStateException):
        lam.update_function_configuration(kms_env.ctx, {"FunctionName": "f1", "KMSKeyArn": md["Arn"]})
    kms_env.call("cancel_key_deletion", KeyId=md["KeyId"])
    kms_env.call("enable_key", KeyId=md["KeyId"])
    # attaching a key re-seals the existing variables under it; detaching goes back to the platform key
    lam.update_function_configuration(kms_env.ctx, {"FunctionName": "f1", "KMSKeyArn": md["Arn"]})
    import sqlalchemy as sa
    from lambdalet.services.records import V
    with kms_env.db.read() as conn:
        assert sealed_key_id(conn.execute(sa.select(V.c.env_sealed)).scalar()) == f"kms-{md['KeyId']}"
    lam.update_function_configuration(kms_env.ctx, {"FunctionName": "f1", "KMSKeyArn": ""})
    with kms_env.db.read() as conn:
        assert sealed_key_id(conn.execute(sa.select(V.c.env_sealed)).scalar()) == "platform"
    lam.get_function_configuration(kms_env.ctx, {"FunctionName": "f1"})    # a read completes the update
    assert lam.resolve_version(ACCOUNT, "f1").environment["A"] == "1"
    # another account's key, not shared with us
    other_key = kms_env.call("create_key", make_ctx(OTHER))["KeyMetadata"]
    with pytest.raises(LE.KMSAccessDeniedException):
        _create(lam, kms_env.ctx, "f2", KMSKeyArn=other_key["Arn"])


class _Iam:
    """A stand-in for iam.authz.Authorizer: fixed identity policies per principal ARN."""

    def __init__(self, policies: dict[str, list[dict]]):
        from lambdalet.iam.policy import parse_policy
        self.policies = {arn: [parse_policy(d) for d in docs] for arn, docs in policies.items()}

    def authorize(self, caller, action, resource_arn, context=None, resource_policy=None, *,
                  resource_account=None, resource_policy_required=False):
        from lambdalet.iam.authz import principal_of
        from lambdalet.iam.policy import is_allowed, parse_policy
        pol = parse_policy(resource_policy, "resource") if resource_policy else None
        return is_allowed(principal_of(caller), action, resource_arn, self.policies.get(caller.principal_arn, []),
                          pol, resource_account, context, resource_policy_required=resource_policy_required)


def test_account_delegation_defers_to_iam_policies(kms_env):
    admin = make_ctx().caller.principal_arn
    alice = make_ctx(user="alice")
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    kms_env.kms.authorizer = _Iam({admin: [allow_all]})
    md = kms_env.key()
    with pytest.raises(E.AccessDeniedException):        # default key policy names the account: IAM must allow
        kms_env.call("encrypt", alice, KeyId=md["KeyId"], Plaintext=b"x")
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("list_keys", alice)
    key_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": md["Arn"]}]}
    kms_env.kms.authorizer = _Iam({admin: [allow_all], alice.caller.principal_arn: [key_only]})
    assert kms_env.call("encrypt", alice, KeyId=md["KeyId"], Plaintext=b"x")["KeyId"] == md["Arn"]
    with pytest.raises(E.AccessDeniedException):
        kms_env.call("decrypt", alice,
                 CiphertextBlob=kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"y")["CiphertextBlob"])
    # a key policy naming alice directly needs no IAM allow (KMS's rule)
    kms_env.call("put_key_policy", KeyId=md["KeyId"], PolicyName="default", Policy=_policy(
        {"Effect": "Allow", "Principal": ROOT, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": alice.caller.principal_arn}, "Action": "kms:Decrypt",
         "Resource": "*"}))
    blob = kms_env.call("encrypt", KeyId=md["KeyId"], Plaintext=b"y")["CiphertextBlob"]
    assert kms_env.call("decrypt", alice, CiphertextBlob=blob)["Plaintext"] == b"y"
