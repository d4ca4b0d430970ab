"""Execution roles end to end: Role validation on CreateFunction / UpdateFunctionConfiguration, and a
function using its role's temporary credentials from inside its environment, through init's API
proxy (127.0.0.1:9002, runtime/api_proxy.py), signing with a stdlib SigV4 client shipped in its zip
(tests/integration/functions/role_caller/).

The denied Lambda calls (`invoke C`, `ListFunctions`) need the API's authorization step
(api/app.py `authorize`, iam/request_map.py); the IAM and STS checks need only IAM's own.
"""
from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest

from .e2e_support import create_function, delete_quietly, expect_error, make_zip, unique

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace sandbox)")]

ACCOUNT = "000000000000"
CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."
FUNCTIONS = Path(__file__).parent / "functions"
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _caller_zip() -> bytes:
    d = FUNCTIONS / "role_caller"
    return make_zip({p.name: p.read_text() for p in d.glob("*.py")})


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


def _role(iam, trust: dict, inline: dict | None = None) -> str:
    name = _name("role")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if inline is not None:
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps(inline))
    return arn


def _call(lam, name: str, event: dict) -> dict:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, (body, base64.b64decode(out.get("LogResult", "")).decode(errors="replace"))
    return body


@pytest.fixture(scope="module")
def trio(lam, iam):
    """A (role allowing lambda:InvokeFunction on B only), B, C."""
    a, b, c = unique("role-a"), unique("role-b"), unique("role-c")
    b_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{b}"
    role = _role(iam, LAMBDA_TRUST, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": [b_arn, f"{b_arn}:*"]}]})
    create_function(lam, b)
    create_function(lam, c)
    create_function(lam, a, Role=role, zip_bytes=_caller_zip(), Timeout=30)
    yield {"a": a, "b": b, "c": c, "role": role}
    for n in (a, b, c):
        delete_quietly(lam, n)


# ------------------------------------------------------------------ Role validation


def test_nonexistent_role_is_refused(lam):
    name = unique("norole")
    with expect_error("InvalidParameterValueException", 400) as e:
        create_function(lam, name, Role=f"arn:aws:iam::{ACCOUNT}:role/{_name('missing')}", wait=False)
    assert e.message == CANNOT_ASSUME
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=name)


def test_role_that_does_not_trust_lambda_is_refused(lam, iam):
    ec2_only = _role(iam, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    with expect_error("InvalidParameterValueException", 400) as e:
        create_function(lam, unique("untrusted"), Role=ec2_only, wait=False)
    assert e.message == CANNOT_ASSUME
    # a trust policy naming Lambda but denying it
    denied = _role(iam, {"Version": "2012-10-17", "Statement": [
        LAMBDA_TRUST["Statement"][0], {"Effect": "Deny", "Principal": {"Service": "lambda.amazonaws.com"},
                                       "Action": "sts:AssumeRole"}]})
    with expect_error("InvalidParameterValueException", 400) as e:
        create_function(lam, unique("untrusted"), Role=denied, wait=False)
    assert e.message == CANNOT_ASSUME
    # another account's role cannot even be passed (as in AWS: PassRole is same-account)
    with expect_error("AccessDeniedException", 403) as e:
        create_function(lam, unique("untrusted"), Role="arn:aws:iam::123456789012:role/lambda-role", wait=False)
    assert "iam:PassRole" in e.message


def test_update_configuration_checks_the_role(lam, iam):
    name = unique("upd-role")
    create_function(lam, name)        # the default role: tests/README's arn:aws:iam::000000000000:role/lambda-role
    try:
        with expect_error("InvalidParameterValueException", 400) as e:
            lam.update_function_configuration(FunctionName=name, Role=f"arn:aws:iam::{ACCOUNT}:role/{_name('x')}")
        assert e.message == CANNOT_ASSUME
        good = _role(iam, LAMBDA_TRUST)
        assert lam.update_function_configuration(FunctionName=name, Role=good)["Role"] == good
    finally:
        delete_quietly(lam, name)


def test_passing_a_role_needs_iam_pass_role(server, lam, iam):
    """A user allowed lambda:* but not iam:PassRole cannot hand a role to a function (AWS's guard
    against escalating through a more privileged role)."""
    user = _name("user")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="lambda-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    theirs = server.client("lambda", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    name = unique("passrole")
    with expect_error("AccessDeniedException", 403) as e:
        create_function(theirs, name, wait=False)
    assert "iam:PassRole" in e.message
    # AWSLambda_FullAccess grants PassRole to Lambda only (Condition iam:PassedToService)
    iam.attach_user_policy(UserName=user, PolicyArn="arn:aws:iam::aws:policy/AWSLambda_FullAccess")
    try:
        create_function(theirs, name)
    finally:
        delete_quietly(lam, name)


# ------------------------------------------------------------------ credentials inside the function


def test_environment_has_role_credentials(lam, trio):
    env = _call(lam, trio["a"], {"action": "env"})
    assert env["AWS_ACCESS_KEY_ID"].startswith("LSIA")
    assert env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"].startswith("LSTS")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9002"
    who = _call(lam, trio["a"], {"action": "whoami"})
    assert who["status"] == 200, who
    role_name = trio["role"].rsplit("/", 1)[1]
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{trio['a']}" in who["body"]


def test_allowed_invoke_works(lam, trio):
    out = _call(lam, trio["a"], {"action": "invoke", "target": trio["b"], "payload": {"n": 1}})
    assert out["status"] == 200, out
    assert json.loads(out["body"]) == {"hello": {"n": 1}}


def test_denied_invoke_is_refused(lam, trio):
    """Needs the API's Lambda authorization step (api/app.py authorize)."""
    out = _call(lam, trio["a"], {"action": "invoke", "target": trio["c"]})
    assert (out["status"], out["error_type"]) == (403, "AccessDeniedException"), out
    assert "lambda:InvokeFunction" in out["body"]


def test_nothing_beyond_the_policy(lam, trio):
    """The role's policy allows one action on one function: every other call is refused."""
    listed = _call(lam, trio["a"], {"action": "list_functions"})
    assert (listed["status"], listed["error_type"]) == (403, "AccessDeniedException"), listed
    roles = _call(lam, trio["a"], {"action": "list_roles"})
    assert (roles["status"], roles["error_type"]) == (403, "AccessDenied"), roles
    user = _call(lam, trio["a"], {"action": "create_user", "name": _name("esc")})
    assert (user["status"], user["error_type"]) == (403, "AccessDenied"), user


def test_credentials_work_the_same_from_outside(server, lam, trio):
    """They are ordinary session credentials: the server grants them what the role's policy says."""
    env = _call(lam, trio["a"], {"action": "env"})
    theirs = server.client("lambda", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                           aws_session_token=env["AWS_SESSION_TOKEN"])
    assert theirs.invoke(FunctionName=trio["b"], Payload=b"{}")["StatusCode"] == 200
    with expect_error("AccessDeniedException", 403):
        theirs.invoke(FunctionName=trio["c"], Payload=b"{}")
    with expect_error("UnrecognizedClientException", 403):     # the token is part of the credential
        server.client("lambda", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).invoke(FunctionName=trio["b"])


def test_default_role_can_do_nothing_but_logs(lam):
    name = unique("default-role")
    create_function(lam, name, zip_bytes=_caller_zip(), Timeout=30)
    try:
        env = _call(lam, name, {"action": "env"})
        assert env["AWS_SESSION_TOKEN"]
        who = _call(lam, name, {"action": "whoami"})      # GetCallerIdentity needs no permission
        assert f"assumed-role/lambda-role/{name}" in who["body"], who
        out = _call(lam, name, {"action": "list_roles"})
        assert out["status"] == 403, out
    finally:
        delete_quietly(lam, name)


def test_the_proxy_reaches_only_the_api(lam, trio):
    unsigned = _call(lam, trio["a"], {"action": "unsigned"})
    assert unsigned["status"] == 403, unsigned                  # no credentials added by the host
    absolute = _call(lam, trio["a"], {"action": "absolute_url"})
    assert absolute["status"] == 400, absolute                  # not a forward proxy
    big = _call(lam, trio["a"], {"action": "big"})
    assert (big["status"], big["error_type"]) == (413, "RequestEntityTooLargeException"), big


def test_credentials_are_not_at_rest_in_plain_text(server, lam, trio):
    env = _call(lam, trio["a"], {"action": "env"})
    needles = [env["AWS_SECRET_ACCESS_KEY"].encode(), env["AWS_SESSION_TOKEN"].encode()]
    found = []
    for path in Path(server.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {n[:8]!r}..." for n in needles if n in data]
    assert not found, found


def test_function_without_a_valid_role_under_the_dev_flag(lambdalet_server_factory):
    srv = lambdalet_server_factory("--allow-unknown-roles")
    lam = srv.client("lambda")
    name = unique("unknown-role")
    create_function(lam, name, Role=f"arn:aws:iam::{ACCOUNT}:role/{_name('nope')}", zip_bytes=_caller_zip())
    env = _call(lam, name, {"action": "env"})
    assert env["AWS_ACCESS_KEY_ID"] is None and env["AWS_SESSION_TOKEN"] is None
    assert "allow-unknown-roles" in srv.log_text()
