"""IAM and STS end to end: a real `lambdalet serve`, boto3's iam and sts clients (awsQuery over TLS).

Needs the server to bind both services (server/run.py) and to pass the session token to the key
lookup (api/app.py: `self.lookup_key(sreq.access_key_id, sreq.session_token)`):
    "iam": ServiceBinding(QueryProtocol(load_service_model("iam")), iam_service),
    "sts": ServiceBinding(QueryProtocol(load_service_model("sts")), sts_service),
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from .e2e_support import expect_error

ACCOUNT = "000000000000"


def _name(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


@pytest.fixture(scope="module")
def sts(server):
    return server.client("sts")


def _user_with_key(iam, name: str | None = None) -> tuple[str, dict]:
    name = name or _name("user")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, key


def _as(server, service: str, key: dict | None = None, creds: dict | None = None):
    if creds is not None:
        return server.client(service, aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    return server.client(service, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])


def _wait_usable(fn, attempts: int = 20):
    for _ in range(attempts):
        try:
            return fn()
        except Exception:   # noqa: BLE001 - a fresh key is usable at once here; tolerate nothing else
            time.sleep(0.1)
    return fn()


def test_admin_caller_identity(sts):
    ident = sts.get_caller_identity()
    assert ident["Account"] == ACCOUNT
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert ident["UserId"].startswith("AIDA")
    assert ident["ResponseMetadata"]["RequestId"]


def test_admin_holds_administrator_access(iam):
    attached = iam.list_attached_user_policies(UserName="admin")["AttachedPolicies"]
    assert {"PolicyName": "AdministratorAccess", "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"} in attached


def test_users_and_access_keys(server, iam):
    name, key = _user_with_key(iam)
    user = iam.get_user(UserName=name)["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"
    assert user["UserId"].startswith("AIDA")
    assert name in [u["UserName"] for u in iam.list_users()["Users"]]
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [key["AccessKeyId"]]
    assert keys[0]["Status"] == "Active"

    # The new key authenticates as the new user.
    ident = _as(server, "sts", key).get_caller_identity()
    assert ident["Arn"] == user["Arn"] and ident["UserId"] == user["UserId"]

    iam.create_access_key(UserName=name)
    with expect_error("LimitExceeded", 409):
        iam.create_access_key(UserName=name)
    with expect_error("EntityAlreadyExists", 409):
        iam.create_user(UserName=name.upper())   # names are unique regardless of case
    with expect_error("DeleteConflict", 409):
        iam.delete_user(UserName=name)

    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    with expect_error({"InvalidClientTokenId", "UnrecognizedClientException"}, 403):
        _as(server, "sts", key).get_caller_identity()
    with expect_error("NoSuchEntity", 404):
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
    iam.delete_user(UserName=name)
    with expect_error("NoSuchEntity", 404) as err:
        iam.get_user(UserName=name)
    assert err.message == f"The user with name {name} cannot be found."


def test_user_without_policies_is_refused(server, iam):
    name, key = _user_with_key(iam)
    mine = _as(server, "iam", key)
    with expect_error("AccessDenied", 403) as err:
        mine.list_users()
    assert err.message == (f"User: arn:aws:iam::{ACCOUNT}:user/{name} is not authorized to perform: iam:ListUsers "
                           f"on resource: arn:aws:iam::{ACCOUNT}:user/ because no identity-based policy allows the "
                           "iam:ListUsers action")
    # STS GetCallerIdentity needs no permission.
    assert _as(server, "sts", key).get_caller_identity()["Arn"].endswith(f":user/{name}")

    # An inline policy grants exactly what it says; an explicit deny wins over an allow.
    iam.put_user_policy(UserName=name, PolicyName="list", PolicyDocument=_doc(
        {"Effect": "Allow", "Action": ["iam:List*", "iam:GetUser"], "Resource": "*"}))
    assert _wait_usable(lambda: mine.list_users())["Users"]
    iam.put_user_policy(UserName=name, PolicyName="deny", PolicyDocument=_doc(
        {"Effect": "Deny", "Action": "iam:ListUsers", "Resource": "*"}))
    with expect_error("AccessDenied", 403) as err:
        mine.list_users()
    assert "with an explicit deny in an identity-based policy" in err.message
    assert mine.get_user()["User"]["UserName"] == name          # UserName defaults to the caller
    with expect_error("AccessDenied", 403):
        mine.create_user(UserName=_name())
    assert sorted(iam.list_user_policies(UserName=name)["PolicyNames"]) == ["deny", "list"]
    got = iam.get_user_policy(UserName=name, PolicyName="deny")
    assert got["PolicyDocument"]["Statement"][0]["Effect"] == "Deny"   # botocore decodes the URL-encoded doc


def test_managed_policies(server, iam):
    name, key = _user_with_key(iam)
    pname = _name("pol")
    pol = iam.create_policy(PolicyName=pname, PolicyDocument=_doc(
        {"Effect": "Allow", "Action": "iam:GetUser", "Resource": f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}"}),
        Description="self")["Policy"]
    assert pol["Arn"] == f"arn:aws:iam::{ACCOUNT}:policy/{pname}"
    assert pol["DefaultVersionId"] == "v1" and pol["AttachmentCount"] == 0
    with expect_error("EntityAlreadyExists", 409):
        iam.create_policy(PolicyName=pname, PolicyDocument=_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))
    iam.attach_user_policy(UserName=name, PolicyArn=pol["Arn"])
    assert iam.get_policy(PolicyArn=pol["Arn"])["Policy"]["AttachmentCount"] == 1
    assert [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]] == [pol["Arn"]]
    version = iam.get_policy_version(PolicyArn=pol["Arn"], VersionId="v1")["PolicyVersion"]
    assert version["IsDefaultVersion"] and version["Document"]["Statement"][0]["Action"] == "iam:GetUser"

    mine = _as(server, "iam", key)
    assert mine.get_user(UserName=name)["User"]["UserName"] == name      # ${aws:username} resolved
    with expect_error("AccessDenied", 403):
        mine.get_user(UserName="admin")

    with expect_error("DeleteConflict", 409):
        iam.delete_policy(PolicyArn=pol["Arn"])
    iam.detach_user_policy(UserName=name, PolicyArn=pol["Arn"])
    with expect_error("NoSuchEntity", 404):
        iam.detach_user_policy(UserName=name, PolicyArn=pol["Arn"])
    with expect_error("AccessDenied", 403):
        mine.get_user(UserName=name)
    iam.delete_policy(PolicyArn=pol["Arn"])
    with expect_error("NoSuchEntity", 404):
        iam.get_policy(PolicyArn=pol["Arn"])
    with expect_error("NoSuchEntity", 404):
        iam.attach_user_policy(UserName=name, PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/nope")
    with expect_error("MalformedPolicyDocument", 400):
        iam.create_policy(PolicyName=_name(), PolicyDocument='{"Statement": [{"Effect": "Allow"}]}')
    with expect_error("MalformedPolicyDocument", 400):
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_doc(
            {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}))
    aws_managed = [p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]]
    assert "AdministratorAccess" in aws_managed


def test_roles_and_assume_role(server, iam, sts):
    name, key = _user_with_key(iam)
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    role_name = _name("role")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust), Description="d")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{role_name}" and role["RoleId"].startswith("AROA")
    assert iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"] == trust
    assert role_name in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    iam.put_role_policy(RoleName=role_name, PolicyName="read", PolicyDocument=_doc(
        {"Effect": "Allow", "Action": "iam:GetRole", "Resource": role["Arn"]}))

    # The trust policy names the user: no identity-based policy needed in the same account.
    mine = _as(server, "sts", key)
    out = mine.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=900)
    creds, who = out["Credentials"], out["AssumedRoleUser"]
    assert creds["AccessKeyId"] and creds["SessionToken"] and creds["Expiration"].timestamp() > time.time() + 800
    assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/s1"
    assert who["AssumedRoleId"] == f"{role['RoleId']}:s1"

    session_sts = _as(server, "sts", creds=creds)
    assert session_sts.get_caller_identity()["Arn"] == who["Arn"]
    session_iam = _as(server, "iam", creds=creds)
    assert session_iam.get_role(RoleName=role_name)["Role"]["RoleName"] == role_name   # the role's policy applies
    with expect_error("AccessDenied", 403) as err:
        session_iam.list_roles()
    assert err.message.startswith(f"User: {who['Arn']} is not authorized to perform: iam:ListRoles")

    # The session key is useless without its token.
    bare = server.client("sts", aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"])
    with expect_error({"InvalidClientTokenId", "UnrecognizedClientException"}, 403):
        bare.get_caller_identity()

    # Role chaining is limited to one hour; DurationSeconds above the role's maximum is refused.
    with expect_error("ValidationError", 400):
        mine.assume_role(RoleArn=role["Arn"], RoleSessionName="s2", DurationSeconds=7200)

    # Someone the trust policy does not name is refused, and so is a missing role (same message).
    other, other_key = _user_with_key(iam)
    with expect_error("AccessDenied", 403) as err:
        _as(server, "sts", other_key).assume_role(RoleArn=role["Arn"], RoleSessionName="xx")
    assert err.message == (f"User: arn:aws:iam::{ACCOUNT}:user/{other} is not authorized to perform: sts:AssumeRole "
                           f"on resource: {role['Arn']}")
    with expect_error("AccessDenied", 403):
        mine.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{_name('none')}", RoleSessionName="xx")

    # A trust policy naming only the account delegates to the account's identity policies.
    iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}))
    with expect_error("AccessDenied", 403):
        _as(server, "sts", other_key).assume_role(RoleArn=role["Arn"], RoleSessionName="xx")
    iam.put_user_policy(UserName=other, PolicyName="assume", PolicyDocument=_doc(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}))
    assert _as(server, "sts", other_key).assume_role(RoleArn=role["Arn"], RoleSessionName="xx")["Credentials"]

    # Deleting: policies first.
    with expect_error("DeleteConflict", 409):
        iam.delete_role(RoleName=role_name)
    iam.delete_role_policy(RoleName=role_name, PolicyName="read")
    iam.delete_role(RoleName=role_name)
    with expect_error("NoSuchEntity", 404) as err:
        iam.get_role(RoleName=role_name)
    assert err.message == f"The role with name {role_name} cannot be found."
    # The live session's role is gone: it keeps authenticating but has no permissions left.
    with expect_error("AccessDenied", 403):
        session_iam.get_role(RoleName=role_name)


def test_role_policies_attach_and_trust_validation(iam):
    role_name = _name("role")
    with expect_error("MalformedPolicyDocument", 400):
        iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=_doc(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    iam.attach_role_policy(RoleName=role_name, PolicyArn=arn)
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]] == [arn]
    iam.detach_role_policy(RoleName=role_name, PolicyArn=arn)
    iam.delete_role(RoleName=role_name)


def test_paging_users(iam):
    prefix = f"/paging-{uuid.uuid4().hex[:6]}/"
    names = sorted(_name("pg") for _ in range(5))
    for n in names:
        iam.create_user(UserName=n, Path=prefix)
    seen = []
    for page in iam.get_paginator("list_users").paginate(PathPrefix=prefix, PaginationConfig={"PageSize": 2}):
        seen += [u["UserName"] for u in page["Users"]]
    assert seen == names
    for n in names:
        iam.delete_user(UserName=n)
