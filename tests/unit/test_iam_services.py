"""iam/: identity store (user and session keys), directory, IAM and STS services, the authorization
hook and Lambda's action table — in process, over an in-memory database."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa

from lambdalet.api.protocol import load_service_model
from lambdalet.iam import tables as iam_tables
from lambdalet.iam.authz import Authorizer, lambda_actions, lambda_request
from lambdalet.iam.directory import ADMIN_POLICY_ARN
from lambdalet.iam.errors import ExpiredTokenException
from lambdalet.iam.iam_service import IamService
from lambdalet.iam.sts_service import StsService
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import AccessDeniedException
from lambdalet.store import schema

from .iam_support import in_memory_iam

ADMIN = "arn:aws:iam::000000000000:user/admin"


@pytest.fixture
def env():
    db, identity, admin, directory = in_memory_iam()
    authorizer = Authorizer(directory)

    class Env:
        pass
    e = Env()
    e.db, e.identity, e.admin_key, e.directory, e.authorizer = db, identity, admin, directory, authorizer
    e.iam = IamService(directory, identity, authorizer)
    e.sts = StsService(directory, identity, authorizer)

    def ctx(key_id, token=None, ip="127.0.0.1"):
        caller, _ = identity.lookup(key_id, token)
        return RequestContext(caller, "us-east-1", str(uuid.uuid4()), "https://localhost", source_ip=ip)
    e.ctx = ctx
    e.admin = ctx(admin.access_key_id)
    yield e
    db.close()


def _doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_bootstrap_admin_is_a_user_with_administrator_access(env):
    assert env.admin.caller.principal_arn == ADMIN
    attached = env.iam.list_attached_user_policies(env.admin, {"UserName": "admin"})["AttachedPolicies"]
    assert attached == [{"PolicyName": "AdministratorAccess", "PolicyArn": ADMIN_POLICY_ARN}]
    # Allowed by the policy, not by a special case: detach it and the administrator is refused.
    env.directory.detach("000000000000", "user", "admin", ADMIN_POLICY_ARN)
    with pytest.raises(Exception) as e:
        env.iam.list_users(env.admin, {})
    assert e.value.code == "AccessDenied"
    env.directory.ensure_builtin()   # every start re-attaches it
    assert env.iam.list_users(env.admin, {})["Users"]


def test_ensure_builtin_is_idempotent_and_keys_share_the_user_id(env):
    env.directory.ensure_builtin()
    env.directory.ensure_builtin()
    second = env.identity.create_access_key("000000000000", "admin")
    caller, _ = env.identity.lookup(second.access_key_id)
    assert caller.user_id == env.admin.caller.user_id
    with env.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(iam_tables.iam_users)).scalar() == 1
        names = [r.name for r in conn.execute(sa.select(iam_tables.iam_policies.c.name))]
    assert len(names) == len(set(names))


def test_access_keys_limit_delete_and_cache(env):
    env.iam.create_user(env.admin, {"UserName": "bob"})
    k1 = env.iam.create_access_key(env.admin, {"UserName": "bob"})["AccessKey"]
    env.iam.create_access_key(env.admin, {"UserName": "bob"})
    with pytest.raises(Exception) as e:
        env.iam.create_access_key(env.admin, {"UserName": "bob"})
    assert e.value.code == "LimitExceeded"
    assert env.identity.lookup(k1["AccessKeyId"])   # cached now
    env.iam.update_access_key(env.admin, {"UserName": "bob", "AccessKeyId": k1["AccessKeyId"], "Status": "Inactive"})
    assert env.identity.lookup(k1["AccessKeyId"]) is None
    env.iam.delete_access_key(env.admin, {"AccessKeyId": k1["AccessKeyId"]})   # owner found from the key
    assert [k["AccessKeyId"] for k in env.iam.list_access_keys(env.admin, {"UserName": "bob"})["AccessKeyMetadata"]] \
        != [k1["AccessKeyId"]]
    # Another account cannot touch bob's key.
    other = env.directory.create_account("tenant-b")
    creds = env.identity.create_access_key(other, "root-admin", administrator=True)
    octx = env.ctx(creds.access_key_id)
    assert octx.account_id == other and octx.caller.principal_arn == f"arn:aws:iam::{other}:user/root-admin"
    with pytest.raises(Exception) as e:
        env.iam.get_user(octx, {"UserName": "bob"})
    assert e.value.code == "NoSuchEntity"
    assert [u["UserName"] for u in env.iam.list_users(octx, {})["Users"]] == ["root-admin"]


def test_session_keys_need_their_token_and_expire(env):
    trust = _doc({"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "sts:AssumeRole"})
    env.iam.create_role(env.admin, {"RoleName": "r", "AssumeRolePolicyDocument": trust})
    out = env.sts.assume_role(env.admin, {"RoleArn": "arn:aws:iam::000000000000:role/r", "RoleSessionName": "s",
                                          "DurationSeconds": 900})
    c = out["Credentials"]
    assert env.identity.lookup(c["AccessKeyId"]) is None
    assert env.identity.lookup(c["AccessKeyId"], "wrong") is None
    caller, secret = env.identity.lookup(c["AccessKeyId"], c["SessionToken"])
    assert secret == c["SecretAccessKey"] and caller.principal_arn.endswith(":assumed-role/r/s")
    with env.db.begin() as conn:   # the token is stored only as a hash
        row = conn.execute(sa.select(iam_tables.iam_sessions)).first()
        assert c["SessionToken"] not in json.dumps([str(v) for v in row])
        conn.execute(schema.access_keys.update().where(schema.access_keys.c.access_key_id == c["AccessKeyId"])
                     .values(expires_at=time.time() - 1))
    with pytest.raises(ExpiredTokenException):
        env.identity.lookup(c["AccessKeyId"], c["SessionToken"])
    assert env.identity.purge_expired_sessions() == 1
    assert env.identity.lookup(c["AccessKeyId"], c["SessionToken"]) is None


def test_assume_role_rules(env):
    env.iam.create_user(env.admin, {"UserName": "bob"})
    bob = env.ctx(env.iam.create_access_key(env.admin, {"UserName": "bob"})["AccessKey"]["AccessKeyId"])
    trust = _doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/bob"},
                  "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "xyz"}}})
    env.iam.create_role(env.admin, {"RoleName": "r", "AssumeRolePolicyDocument": trust, "MaxSessionDuration": 7200})
    arn = "arn:aws:iam::000000000000:role/r"
    with pytest.raises(Exception) as e:
        env.sts.assume_role(bob, {"RoleArn": arn, "RoleSessionName": "s"})
    assert e.value.code == "AccessDenied"
    out = env.sts.assume_role(bob, {"RoleArn": arn, "RoleSessionName": "s", "ExternalId": "xyz",
                                    "DurationSeconds": 7200})
    assert out["Credentials"]["Expiration"] > time.time() + 7000
    with pytest.raises(Exception) as e:
        env.sts.assume_role(bob, {"RoleArn": arn, "RoleSessionName": "s", "ExternalId": "xyz",
                                  "DurationSeconds": 7201})
    assert e.value.code == "ValidationError"
    with pytest.raises(Exception) as e:   # session policies are enforced now: a malformed one is refused
        env.sts.assume_role(bob, {"RoleArn": arn, "RoleSessionName": "s", "ExternalId": "xyz", "Policy": "{}"})
    assert e.value.code == "MalformedPolicyDocument"
    ident = env.sts.get_caller_identity(env.ctx(out["Credentials"]["AccessKeyId"], out["Credentials"]["SessionToken"]),
                                        {})
    assert ident["Arn"] == "arn:aws:sts::000000000000:assumed-role/r/s" and ident["UserId"].endswith(":s")


def test_authorizer_for_lambda(env):
    env.iam.create_user(env.admin, {"UserName": "dev"})
    dev = env.ctx(env.iam.create_access_key(env.admin, {"UserName": "dev"})["AccessKey"]["AccessKeyId"])
    action, arn, keys = lambda_request("GetFunction", {"FunctionName": "f"}, dev)
    assert (action, arn) == ("lambda:GetFunction", "arn:aws:lambda:us-east-1:000000000000:function:f")
    env.authorizer.check(env.admin, action, arn, keys)   # AdministratorAccess
    with pytest.raises(AccessDeniedException) as e:
        env.authorizer.check(dev, action, arn, keys)
    assert e.value.message == ("User: arn:aws:iam::000000000000:user/dev is not authorized to perform: "
                               "lambda:GetFunction on resource: arn:aws:lambda:us-east-1:000000000000:function:f "
                               "because no identity-based policy allows the lambda:GetFunction action")
    # A function's resource policy naming the user allows in the same account.
    rp = {"Version": "2012-10-17", "Statement": [{"Sid": "x", "Effect": "Allow", "Principal": {"AWS": dev.caller.principal_arn},
                                                  "Action": "lambda:GetFunction", "Resource": arn}]}
    assert env.authorizer.check(dev, action, arn, keys, rp).allowed
    # Tags drive conditions.
    env.iam.put_user_policy(env.admin, {"UserName": "dev", "PolicyName": "tagged", "PolicyDocument": _doc(
        {"Effect": "Allow", "Action": "lambda:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}})})
    tagged = Authorizer(env.directory, resource_tags=lambda a: {"team": "blue"} if a.endswith(":f") else {})
    assert tagged.check(dev, "lambda:DeleteFunction", arn).allowed
    with pytest.raises(AccessDeniedException):
        tagged.check(dev, "lambda:DeleteFunction", arn.replace(":f", ":g"))
    # aws:SourceIp comes from the request.
    env.iam.put_user_policy(env.admin, {"UserName": "dev", "PolicyName": "ip", "PolicyDocument": _doc(
        {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})})
    with pytest.raises(AccessDeniedException) as e:
        tagged.check(dev, "lambda:DeleteFunction", arn)
    assert e.value.message.endswith("with an explicit deny in an identity-based policy")
    from dataclasses import replace
    assert tagged.check(replace(dev, source_ip="10.1.2.3"), "lambda:DeleteFunction", arn).allowed


def test_lambda_action_table_covers_the_model():
    ops = set(load_service_model("lambda").operation_names)
    table = lambda_actions()["operations"]
    assert ops <= set(table), sorted(ops - set(table))
    for entry in table.values():
        assert entry["action"].startswith("lambda:")
        assert entry["resource_type"] in lambda_actions()["resource_types"]
    assert table["Invoke"]["action"] == "lambda:InvokeFunction"
    assert table["ListFunctions"]["resource_type"] == "*"


@pytest.mark.parametrize("op,params,want", [
    ("Invoke", {"FunctionName": "f", "Qualifier": "PROD"}, ("lambda:InvokeFunction",
                                                           "arn:aws:lambda:us-east-1:000000000000:function:f:PROD")),
    ("Invoke", {"FunctionName": "arn:aws:lambda:eu-west-1:111122223333:function:g:7"},
     ("lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:111122223333:function:g:7")),
    ("GetFunction", {"FunctionName": "111122223333:function:g"},
     ("lambda:GetFunction", "arn:aws:lambda:us-east-1:111122223333:function:g")),
    ("CreateAlias", {"FunctionName": "f", "Name": "live", "FunctionVersion": "1"},
     ("lambda:CreateAlias", "arn:aws:lambda:us-east-1:000000000000:function:f")),
    ("ListTags", {"Resource": "arn:aws:lambda:us-east-1:000000000000:function:f"},
     ("lambda:ListTags", "arn:aws:lambda:us-east-1:000000000000:function:f")),
    ("DeleteEventSourceMapping", {"UUID": "u-1"},
     ("lambda:DeleteEventSourceMapping", "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:u-1")),
    ("GetLayerVersion", {"LayerName": "l", "VersionNumber": 3},
     ("lambda:GetLayerVersion", "arn:aws:lambda:us-east-1:000000000000:layer:l:3")),
    ("ListFunctions", {}, ("lambda:ListFunctions", "*")),
])
def test_lambda_request_arns(env, op, params, want):
    action, arn, _ = lambda_request(op, params, env.admin)
    assert (action, arn) == want


def test_lambda_request_condition_keys(env):
    _, _, keys = lambda_request("CreateFunctionUrlConfig", {"FunctionName": "f", "AuthType": "NONE"}, env.admin)
    assert keys == {"lambda:FunctionUrlAuthType": "NONE",      # and lambda:FunctionArn, as AWS lists for it
                    "lambda:FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f"}
    _, _, keys = lambda_request("PutFunctionCodeSigningConfig", {"FunctionName": "f", "CodeSigningConfigArn":
                                "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1"}, env.admin)
    assert keys == {"lambda:CodeSigningConfigArn": "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1"}
    action, arn, keys = lambda_request("UpdateEventSourceMapping", {"UUID": "u-1", "FunctionName": "g"}, env.admin)
    assert arn == "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:u-1"
    assert keys == {"lambda:FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:g"}
    _, _, keys = lambda_request("CreateEventSourceMapping", {"FunctionName": "f:live", "Tags": {"a": "b"}}, env.admin)
    assert keys == {"lambda:FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:live",
                    "aws:RequestTag/a": "b", "aws:TagKeys": ["a"]}
    _, _, keys = lambda_request("UntagResource", {"Resource": "arn:x", "TagKeys": ["a", "b"]}, env.admin)
    assert keys == {"aws:TagKeys": ["a", "b"]}
