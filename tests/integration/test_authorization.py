"""Authorization end to end: every Lambda, SQS, Logs and CloudTrail call goes through the policy
engine (iam/request_map.py), through boto3 against a real `lambdalet serve`.

Users come from the IAM API (CreateUser / CreateAccessKey / PutUserPolicy as the bootstrap
administrator). A second tenant account has no API (there is no Organizations service): the test
creates it the way an operator would, with `Directory.create_account` and
`IdentityStore.create_access_key(account, "admin", administrator=True)` over the server's own data
dir (database + master key), while the server runs; that key is then used over the API like any
other.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from lambdalet.config import Settings
from lambdalet.iam import IdentityStore
from lambdalet.iam.directory import Directory
from lambdalet.server.platform import open_keyring
from lambdalet.store.db import open_database

from .e2e_support import create_function, expect_error

ACCOUNT = "000000000000"


def _name(prefix: str = "authz") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action, resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


@pytest.fixture(scope="module")
def iam(server):
    return server.client("iam")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


def _user(server, iam, *statements: dict) -> tuple[str, dict]:
    """A user (with an inline policy when statements are given) and its key."""
    name = _name("user")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_doc(*statements))
    return name, key


def _as(server, service: str, key: dict):
    return server.client(service, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])


@pytest.fixture(scope="module")
def function(lam):
    name = _name("fn")
    create_function(lam, name)
    return name


@pytest.fixture(scope="module")
def tenant(server):
    """A second account with an administrator key (see the module docstring)."""
    settings = Settings(data_dir=server.data_dir)
    db = open_database(settings.db_url)
    try:
        account = Directory(db).create_account("tenant-b")
        creds = IdentityStore(db, open_keyring(settings)).create_access_key(account, "admin", administrator=True)
    finally:
        db.close()
    return account, {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key}


# ---------------------------------------------------------------- identity policies


def test_bootstrap_administrator_keeps_working(lam, function):
    assert lam.get_function(FunctionName=function)["Configuration"]["FunctionName"] == function
    assert lam.list_functions()["Functions"]


def test_refused_until_put_user_policy(server, iam, function):
    name, key = _user(server, iam)
    user_lam = _as(server, "lambda", key)
    arn = server.function_arn(function)
    with expect_error("AccessDeniedException", 403) as err:
        user_lam.get_function(FunctionName=function)
    assert err.message == (f"User: arn:aws:iam::{ACCOUNT}:user/{name} is not authorized to perform: "
                           f"lambda:GetFunction on resource: {arn} because no identity-based policy allows the "
                           f"lambda:GetFunction action")
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=_doc(_allow("lambda:GetFunction", arn)))
    assert user_lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"] == arn
    # only what was granted: another action, and the same action on another resource, stay refused
    with expect_error("AccessDeniedException", 403):
        user_lam.list_functions()
    with expect_error("AccessDeniedException", 403):
        user_lam.get_function(FunctionName=_name("other"))
    # a policy change takes effect at once (the per-principal cache is invalidated)
    iam.delete_user_policy(UserName=name, PolicyName="read")
    with expect_error("AccessDeniedException", 403):
        user_lam.get_function(FunctionName=function)


def test_explicit_deny_wins(server, iam, function):
    arn = server.function_arn(function)
    name, key = _user(server, iam, _allow("lambda:*"),
                      {"Effect": "Deny", "Action": "lambda:GetFunction", "Resource": arn})
    user_lam = _as(server, "lambda", key)
    assert user_lam.get_function_configuration(FunctionName=function)["FunctionName"] == function
    with expect_error("AccessDeniedException", 403) as err:
        user_lam.get_function(FunctionName=function)
    assert err.message.endswith("with an explicit deny in an identity-based policy")
    # AdministratorAccess attached does not override the Deny either
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    with expect_error("AccessDeniedException", 403):
        user_lam.get_function(FunctionName=function)


def test_sqs_and_logs_refusals(server, iam):
    sqs_admin = server.client("sqs")
    queue = _name("q")
    url = sqs_admin.create_queue(QueueName=queue)["QueueUrl"]
    name, key = _user(server, iam, _allow("sqs:SendMessage", f"arn:aws:sqs:{server.region}:{ACCOUNT}:{queue}"))
    user_sqs = _as(server, "sqs", key)
    user_sqs.send_message(QueueUrl=url, MessageBody="hi")
    with expect_error({"AccessDenied", "AccessDeniedException"}, 403) as err:
        user_sqs.receive_message(QueueUrl=url)
    assert f"sqs:ReceiveMessage on resource: arn:aws:sqs:{server.region}:{ACCOUNT}:{queue}" in err.message
    with expect_error({"AccessDenied", "AccessDeniedException"}, 403):
        user_sqs.create_queue(QueueName=_name("q"))
    # a batch send is authorized as sqs:SendMessage, as SQS does
    user_sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])

    user_logs = _as(server, "logs", key)
    with expect_error("AccessDeniedException", 403) as err:
        user_logs.describe_log_groups()
    assert "logs:DescribeLogGroups" in err.message
    with expect_error("AccessDeniedException", 403) as err:
        user_logs.get_log_events(logGroupName="/aws/lambda/x", logStreamName="s")
    assert f"arn:aws:logs:{server.region}:{ACCOUNT}:log-group:/aws/lambda/x:log-stream:s" in err.message
    with expect_error("AccessDeniedException", 403):
        _as(server, "cloudtrail", key).lookup_events()
    # STS GetCallerIdentity needs no permission
    assert _as(server, "sts", key).get_caller_identity()["Arn"].endswith(f":user/{name}")


# ---------------------------------------------------------------- resource-based policies


def test_add_get_remove_permission(lam, server, function):
    arn = server.function_arn(function)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=function)
    out = lam.add_permission(FunctionName=function, StatementId="s3", Action="lambda:InvokeFunction",
                             Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                             SourceAccount=ACCOUNT)
    st = json.loads(out["Statement"])
    assert st == {"Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                  "Action": "lambda:InvokeFunction", "Resource": arn,
                  "Condition": {"StringEquals": {"AWS:SourceAccount": ACCOUNT},
                                "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}}
    got = lam.get_policy(FunctionName=function)
    doc = json.loads(got["Policy"])
    assert doc["Version"] == "2012-10-17" and doc["Id"] == "default" and doc["Statement"] == [st]
    rev = got["RevisionId"]
    with expect_error("ResourceConflictException", 409) as err:
        lam.add_permission(FunctionName=function, StatementId="s3", Action="lambda:InvokeFunction",
                           Principal="111122223333")
    assert err.message == ("The statement id (s3) provided already exists. Please provide a new statement id, "
                           "or remove the existing statement.")          # AWS names the statement (recorded)
    with expect_error("PreconditionFailedException", 412):
        lam.add_permission(FunctionName=function, StatementId="acct", Action="lambda:InvokeFunction",
                           Principal="111122223333", RevisionId="not-the-revision")
    lam.add_permission(FunctionName=function, StatementId="acct", Action="lambda:GetFunction",
                       Principal="111122223333", RevisionId=rev, PrincipalOrgID="o-abcdefghij",
                       EventSourceToken="tok", FunctionUrlAuthType="AWS_IAM")
    doc = json.loads(lam.get_policy(FunctionName=function)["Policy"])
    acct = doc["Statement"][1]
    assert acct["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert acct["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": "o-abcdefghij",
                                                 "lambda:EventSourceToken": "tok",
                                                 "lambda:FunctionUrlAuthType": "AWS_IAM"}
    with expect_error("ResourceNotFoundException", 404):
        lam.remove_permission(FunctionName=function, StatementId="nope")
    lam.remove_permission(FunctionName=function, StatementId="s3")
    lam.remove_permission(FunctionName=function, StatementId="acct")
    with expect_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=function)


def test_policy_size_limit_and_qualifiers(lam, server):
    name = _name("fn")
    create_function(lam, name, Publish=True)
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    lam.add_permission(FunctionName=name, Qualifier="prod", StatementId="a", Action="lambda:InvokeFunction",
                       Principal="111122223333")
    assert json.loads(lam.get_policy(FunctionName=name, Qualifier="prod")["Policy"])["Statement"][0]["Resource"] \
        == server.function_arn(name, "prod")
    with expect_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name)          # the unqualified function has none
    with expect_error("ResourceNotFoundException", 404):
        lam.add_permission(FunctionName=name, Qualifier="nope", StatementId="a", Action="lambda:InvokeFunction",
                           Principal="111122223333")
    with expect_error("PolicyLengthExceededException", 400) as err:
        for i in range(200):
            lam.add_permission(FunctionName=name, StatementId=f"s{i}-" + "x" * 60, Action="lambda:InvokeFunction",
                               Principal="111122223333", SourceArn="arn:aws:s3:::" + "b" * 60)
    assert "is bigger than the limit (20480)" in err.message
    # deleting the alias deletes its policy: a new alias of that name starts empty
    lam.delete_alias(FunctionName=name, Name="prod")
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    with expect_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name, Qualifier="prod")
    # deleting the function deletes its policy: a function recreated under that name starts empty
    lam.delete_function(FunctionName=name)
    create_function(lam, name)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name)


def test_resource_policy_alone_grants_a_named_user_in_the_same_account(server, iam, lam, function):
    name, key = _user(server, iam)
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    user_lam = _as(server, "lambda", key)
    with expect_error("AccessDeniedException", 403):
        user_lam.get_function_configuration(FunctionName=function)
    lam.add_permission(FunctionName=function, StatementId=f"u-{name}", Action="lambda:GetFunctionConfiguration",
                       Principal=user_arn)
    try:
        assert user_lam.get_function_configuration(FunctionName=function)["FunctionName"] == function
    finally:
        lam.remove_permission(FunctionName=function, StatementId=f"u-{name}")
    with expect_error("AccessDeniedException", 403):
        user_lam.get_function_configuration(FunctionName=function)


def test_cross_account_invoke(server, lam, tenant):
    other_account, other_key = tenant
    name = _name("xacct")
    create_function(lam, name)
    arn = server.function_arn(name)
    other = _as(server, "lambda", other_key)
    # without a resource policy: refused, in AWS's words
    with expect_error("AccessDeniedException", 403) as err:
        other.invoke(FunctionName=arn, InvocationType="DryRun")
    assert err.message == (f"User: arn:aws:iam::{other_account}:user/admin is not authorized to perform: "
                           f"lambda:InvokeFunction on resource: {arn} because no resource-based policy allows the "
                           f"lambda:InvokeFunction action")
    # the other account cannot see it by name either: names resolve in the caller's own account
    with expect_error("ResourceNotFoundException", 404):
        other.get_function(FunctionName=name)
    lam.add_permission(FunctionName=name, StatementId="other", Action="lambda:InvokeFunction",
                       Principal=other_account)
    assert other.invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204
    resp = other.invoke(FunctionName=arn, Payload=json.dumps({"from": "b"}).encode())
    assert resp["StatusCode"] == 200 and json.loads(resp["Payload"].read()) == {"hello": {"from": "b"}}
    # the grant is for InvokeFunction only
    with expect_error("AccessDeniedException", 403) as err:
        other.get_function(FunctionName=arn)
    assert "because no resource-based policy allows the lambda:GetFunction action" in err.message
    # and the other account's own identity policies must allow it too: a user there without any is refused
    b_iam = _as(server, "iam", other_key)
    b_iam.create_user(UserName="nobody")
    nobody_key = b_iam.create_access_key(UserName="nobody")["AccessKey"]
    with expect_error("AccessDeniedException", 403) as err:
        _as(server, "lambda", nobody_key).invoke(FunctionName=arn, InvocationType="DryRun")
    assert "because no identity-based policy allows the lambda:InvokeFunction action" in err.message
    b_iam.put_user_policy(UserName="nobody", PolicyName="invoke",
                          PolicyDocument=_doc(_allow("lambda:InvokeFunction", arn)))
    assert _as(server, "lambda", nobody_key).invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204
    # removing the grant closes the door again
    lam.remove_permission(FunctionName=name, StatementId="other")
    with expect_error("AccessDeniedException", 403):
        other.invoke(FunctionName=arn, InvocationType="DryRun")


# ---------------------------------------------------------------- ABAC


def test_abac_resource_tag(server, iam, lam):
    blue, red = _name("blue"), _name("red")
    create_function(lam, blue, Tags={"team": "blue"})
    create_function(lam, red, Tags={"team": "red"})
    name, key = _user(server, iam, _allow("lambda:InvokeFunction", Condition={
        "StringEquals": {"aws:ResourceTag/team": "blue"}}))
    user_lam = _as(server, "lambda", key)
    assert user_lam.invoke(FunctionName=blue, InvocationType="DryRun")["StatusCode"] == 204
    with expect_error("AccessDeniedException", 403):
        user_lam.invoke(FunctionName=red, InvocationType="DryRun")
    # retagging moves the permission with the tag
    lam.tag_resource(Resource=server.function_arn(red), Tags={"team": "blue"})
    assert user_lam.invoke(FunctionName=red, InvocationType="DryRun")["StatusCode"] == 204
    lam.untag_resource(Resource=server.function_arn(blue), TagKeys=["team"])
    with expect_error("AccessDeniedException", 403):
        user_lam.invoke(FunctionName=blue, InvocationType="DryRun")


def test_abac_request_tags_and_tag_keys(server, iam, lam):
    name, key = _user(server, iam,
                      _allow("lambda:CreateFunction", Condition={"StringEquals": {"aws:RequestTag/team": "blue"},
                                                                 "ForAllValues:StringEquals": {
                                                                     "aws:TagKeys": ["team"]}}),
                      _allow(["lambda:TagResource", "lambda:UntagResource"],
                             Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}),
                      _allow("iam:PassRole"))
    user_lam = _as(server, "lambda", key)
    with expect_error("AccessDeniedException", 403):
        create_function(user_lam, _name("fn"), Tags={"team": "red"}, wait=False)
    with expect_error("AccessDeniedException", 403):
        create_function(user_lam, _name("fn"), Tags={"team": "blue", "cost": "x"}, wait=False)
    fn = _name("fn")
    create_function(user_lam, fn, Tags={"team": "blue"}, wait=False)
    arn = server.function_arn(fn)
    user_lam.tag_resource(Resource=arn, Tags={"env": "dev"})
    with expect_error("AccessDeniedException", 403):
        user_lam.tag_resource(Resource=arn, Tags={"owner": "me"})
    with expect_error("AccessDeniedException", 403):
        user_lam.untag_resource(Resource=arn, TagKeys=["owner"])
    user_lam.untag_resource(Resource=arn, TagKeys=["env"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "blue"}


# ---------------------------------------------------------------- cost


def test_authorization_overhead_is_small(server, iam, lam, function):
    """A warm authorized call (identity policies and function facts cached) costs about what an
    unauthorized-path call costs; printed for the record, bounded loosely to catch a regression
    to per-request policy reads."""
    name, key = _user(server, iam, _allow("lambda:GetFunctionConfiguration"))
    user_lam = _as(server, "lambda", key)
    for client in (lam, user_lam):
        client.get_function_configuration(FunctionName=function)
    samples = {}
    for label, client in (("admin", lam), ("user", user_lam)):
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            client.get_function_configuration(FunctionName=function)
            times.append(time.perf_counter() - t0)
        samples[label] = sorted(times)[len(times) // 2]
    print(f"median GetFunctionConfiguration: admin {samples['admin'] * 1e3:.2f} ms, "
          f"policy user {samples['user'] * 1e3:.2f} ms")
    assert samples["user"] < samples["admin"] * 3 + 0.05
