"""The code-signing-config operations and the deployment check, on a real LambdaService."""
from __future__ import annotations

import pytest

from lambdalet.models.errors import (ValidationException, AccessDeniedException, InvalidParameterValueException,
                                     ResourceConflictException, ResourceNotFoundException)
from lambdalet.services.code_signing import (CodeSigningConfigNotFoundException, CodeVerificationFailedException,
                                             InvalidCodeSignatureException)
from lambdalet.signing.package import embed_signature, read_signature
from lambdalet.signing.profiles import SignerStore

from .services_support import ACCOUNT, OTHER_ACCOUNT, REGION, make_ctx, make_zip



# AWS answers a member that breaks its model constraint with ValidationException ("N validation
# error(s) detected: ..."), and the service's own checks with InvalidParameterValueException.
PARAM_ERRORS = (InvalidParameterValueException, ValidationException)


def assert_aws_kind(err) -> None:
    assert isinstance(err, ValidationException) == ("validation error detected" in err.message), repr(err)

@pytest.fixture
def signer(env):  # noqa: F811
    store = SignerStore(env.svc.deps.db, env.keyring, clock=lambda: env.now[0])
    prof = store.create_profile(ACCOUNT, REGION, "builds", validity_s=3600)
    return store, prof


def config(env, prof, policy="Enforce") -> str:  # noqa: F811
    return env.call("create_code_signing_config", AllowedPublishers={"SigningProfileVersionArns": [prof.arn]},
                    CodeSigningPolicies={"UntrustedArtifactOnDeployment": policy})["CodeSigningConfig"][
        "CodeSigningConfigArn"]


def signed_zip(signer, marker="v1") -> bytes:
    store, _ = signer
    return store.sign(ACCOUNT, REGION, "builds", make_zip({"app.py": f"def handler(e, c):\n    return '{marker}'\n"}))[0]


def test_create_validates_members(env):  # noqa: F811
    ok = ["arn:aws:signer:us-east-1:123456789012:/signing-profiles/p/abcdefghij"]
    bad_members = [
        {"AllowedPublishers": {"SigningProfileVersionArns": []}},
        {"AllowedPublishers": {"SigningProfileVersionArns": ok * 21}},
        {"AllowedPublishers": {"SigningProfileVersionArns": ["arn:aws:lambda:us-east-1:123456789012:function:f"]}},
        {"AllowedPublishers": {"SigningProfileVersionArns": ok}, "CodeSigningPolicies": {"UntrustedArtifactOnDeployment": "Block"}},
        {"AllowedPublishers": {"SigningProfileVersionArns": ok}, "Description": "x" * 257},
    ]
    for params in bad_members:
        with pytest.raises(PARAM_ERRORS) as err:
            env.call("create_code_signing_config", **params)
        assert_aws_kind(err.value)
    got = env.call("create_code_signing_config", AllowedPublishers={"SigningProfileVersionArns": ok * 2})
    assert got["CodeSigningConfig"]["AllowedPublishers"]["SigningProfileVersionArns"] == ok     # deduplicated
    assert got["CodeSigningConfig"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}


def test_configs_are_per_account(env, signer):  # noqa: F811
    _, prof = signer
    arn = config(env, prof)
    other = make_ctx(OTHER_ACCOUNT)
    with pytest.raises(ResourceNotFoundException):
        env.svc.get_code_signing_config(other, {"CodeSigningConfigArn": arn})
    assert env.svc.list_code_signing_configs(other, {})["CodeSigningConfigs"] == []
    env.svc.create_function(other, {"FunctionName": "theirs", "Runtime": "python3.12", "Handler": "app.handler",
                                    "Role": f"arn:aws:iam::{OTHER_ACCOUNT}:role/r", "Code": {"ZipFile": make_zip()}})
    with pytest.raises(CodeSigningConfigNotFoundException):
        env.svc.put_function_code_signing_config(other, {"FunctionName": "theirs", "CodeSigningConfigArn": arn})
    with pytest.raises(AccessDeniedException):
        env.svc.put_function_code_signing_config(env.ctx, {
            "FunctionName": f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:function:theirs", "CodeSigningConfigArn": arn})


def test_enforce_refuses_and_writes_nothing(env, signer):  # noqa: F811
    _, prof = signer
    arn = config(env, prof)
    with pytest.raises(CodeVerificationFailedException):
        env.create("f", CodeSigningConfigArn=arn)
    with pytest.raises(ResourceNotFoundException):
        env.call("get_function", FunctionName="f")
    created = env.create("f", CodeSigningConfigArn=arn, Code={"ZipFile": signed_zip(signer)})
    assert created["SigningProfileVersionArn"] == prof.arn
    with pytest.raises(CodeVerificationFailedException):        # DryRun checks too
        env.call("update_function_code", FunctionName="f", ZipFile=make_zip(), DryRun=True)
    tampered = embed_signature(make_zip({"app.py": "evil = 1\n"}), read_signature(signed_zip(signer, "v2")))
    with pytest.raises(InvalidCodeSignatureException):
        env.call("update_function_code", FunctionName="f", ZipFile=tampered)
    assert env.call("get_function_configuration", FunctionName="f")["CodeSha256"] == created["CodeSha256"]


def test_warn_deploys_unsigned_and_clears_the_signer(env, signer, caplog):  # noqa: F811
    _, prof = signer
    arn = config(env, prof, policy="Warn")
    first = env.create("w", CodeSigningConfigArn=arn, Code={"ZipFile": signed_zip(signer)})
    assert first["SigningJobArn"]
    with caplog.at_level("WARNING", logger="lambdalet.codesigning"):
        out = env.call("update_function_code", FunctionName="w", ZipFile=make_zip())
    assert "SigningProfileVersionArn" not in out and "SigningJobArn" not in out
    assert any("SignatureValidationErrors" in r.getMessage() and "not signed" in r.getMessage()
               for r in caplog.records)


def test_config_only_governs_new_deployments(env, signer):  # noqa: F811
    _, prof = signer
    env.create("legacy")                                        # unsigned, before any config
    arn = config(env, prof)
    before = env.call("get_function", FunctionName="legacy")["Configuration"]["RevisionId"]
    env.call("put_function_code_signing_config", FunctionName="legacy", CodeSigningConfigArn=arn)
    assert env.call("get_function", FunctionName="legacy")["Configuration"]["RevisionId"] != before
    env.call("update_function_configuration", FunctionName="legacy", Timeout=9)   # config changes still fine
    with pytest.raises(CodeVerificationFailedException):
        env.call("update_function_code", FunctionName="legacy", ZipFile=make_zip())


def test_delete_function_releases_the_config(env, signer):  # noqa: F811
    _, prof = signer
    arn = config(env, prof)
    env.create("gone", CodeSigningConfigArn=arn, Code={"ZipFile": signed_zip(signer)})
    with pytest.raises(ResourceConflictException):
        env.call("delete_code_signing_config", CodeSigningConfigArn=arn)
    env.call("delete_function", FunctionName="gone")
    assert env.call("list_functions_by_code_signing_config", CodeSigningConfigArn=arn)["FunctionArns"] == []
    env.call("delete_code_signing_config", CodeSigningConfigArn=arn)
    env.create("gone")                                          # a new function of that name is not governed
    assert env.call("get_function_code_signing_config", FunctionName="gone")["CodeSigningConfigArn"] == ""


def test_list_paging(env, signer):  # noqa: F811
    _, prof = signer
    arns = {config(env, prof) for _ in range(5)}
    seen, marker = [], None
    while True:
        page = env.call("list_code_signing_configs", MaxItems=2, **({"Marker": marker} if marker else {}))
        seen += [c["CodeSigningConfigArn"] for c in page["CodeSigningConfigs"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert sorted(seen) == sorted(arns)
    one = next(iter(arns))
    for i in range(3):
        env.create(f"fn{i}", CodeSigningConfigArn=one, Code={"ZipFile": signed_zip(signer, str(i))})
    page = env.call("list_functions_by_code_signing_config", CodeSigningConfigArn=one, MaxItems=2)
    rest = env.call("list_functions_by_code_signing_config", CodeSigningConfigArn=one, Marker=page["NextMarker"])
    assert [a.rsplit(":", 1)[-1] for a in page["FunctionArns"] + rest["FunctionArns"]] == ["fn0", "fn1", "fn2"]
    with pytest.raises(ValidationException, match="at 'codeSigningConfigArn'"):
        env.call("get_code_signing_config", CodeSigningConfigArn="arn:aws:lambda:us-east-1:123:code-signing-config:x")


def test_config_change_during_update_is_a_conflict(env, signer):  # noqa: F811
    """verify_update checks against the config in force; if another call attaches a different one
    before the write, stamp refuses instead of storing code that was never checked against it."""
    from lambdalet.services import code_signing, records
    from lambdalet.services.arns import Scope

    _, prof = signer
    env.create("racy")
    scope = Scope(ACCOUNT, REGION)
    with env.svc.deps.db.read() as conn:
        fn = records.require_function(conn, scope, "racy")
        dep = code_signing.verify_update(env.svc.deps, conn, scope, fn, make_zip())    # no config: not governed
    env.call("put_function_code_signing_config", FunctionName="racy", CodeSigningConfigArn=config(env, prof))
    with pytest.raises(ResourceConflictException):
        with env.svc.deps.db.begin() as conn:
            code_signing.stamp(conn, fn.id, {}, dep)
