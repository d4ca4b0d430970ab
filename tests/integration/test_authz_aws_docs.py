"""Authorization exactly as AWS documents it, case by case, through the real API (issues 18 and 21).

Each case names the AWS documentation page it comes from, sets up principals and policies with
boto3 (iam, sts, kms, sqs, lambda) against a real `lambdalet serve`, makes the call with the
principal's OWN keys, and asserts allow or deny. The second account is made the way an operator
does it (tests/integration/tenancy_support.py).
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from .e2e_support import create_function, delete_quietly, expect_error, make_zip, unique
from .tenancy_support import allow, client_as, deny, doc, make_user, role_name, second_account

ACCOUNT = "000000000000"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
DENIED = {"AccessDenied", "AccessDeniedException"}
KMS_DENIED = "AccessDeniedException"     # KMS answers it with HTTP 400, as AWS KMS does
CASES: list["Case"] = []


@dataclass
class Case:
    page: str                     # the AWS documentation page the case comes from
    name: str
    run: Callable
    functions: bool = False       # runs functions: needs the namespace sandbox (root)


def case(page: str, *, functions: bool = False, into: list | None = None):
    def register(fn):
        (CASES if into is None else into).append(Case(page, fn.__name__, fn, functions))
        return fn
    return register


@dataclass
class World:
    server: object
    iam: object
    sts: object
    tenant: tuple[str, dict] | None = None

    def as_(self, service: str, key: dict | None = None, creds: dict | None = None):
        if creds is not None:
            return self.server.client(service, aws_access_key_id=creds["AccessKeyId"],
                                      aws_secret_access_key=creds["SecretAccessKey"],
                                      aws_session_token=creds["SessionToken"])
        return client_as(self.server, service, key)

    def role(self, trust_statements: list[dict], *statements: dict, boundary: str | None = None) -> str:
        name = unique("role")
        kw = {"PermissionsBoundary": boundary} if boundary else {}
        arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc(*trust_statements), **kw)["Role"]["Arn"]
        if statements:
            self.iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=doc(*statements))
        return arn

    def managed(self, *statements: dict) -> str:
        return self.managed_doc(doc(*statements))

    def managed_doc(self, document: str) -> str:
        return self.iam.create_policy(PolicyName=unique("pol"), PolicyDocument=document)["Policy"]["Arn"]

    def queue(self, policy: dict | None = None) -> tuple[str, str]:
        sqs = self.server.client("sqs")
        attrs = {"Policy": json.dumps(policy)} if policy else {}
        url = sqs.create_queue(QueueName=unique("q"), Attributes=attrs)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def key(self, policy: dict) -> str:
        return self.server.client("kms").create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def trusts(principal_arn: str, *actions: str) -> dict:
    return {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": list(actions or ["sts:AssumeRole"])}


def _role_caller_zip() -> bytes:
    """tests/integration/functions/role_caller: calls the API from inside with the execution role's keys."""
    d = Path(__file__).parent / "functions" / "role_caller"
    return make_zip({p.name: p.read_text() for p in d.glob("*.py")})


def _invoke(lam, name: str, event: dict) -> dict:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, (body, base64.b64decode(out.get("LogResult", "")).decode(errors="replace"))
    return body


def user_trust(world: World, *actions: str, **user_kw) -> tuple[str, dict, str]:
    """(user name, its key, its ARN) for a user allowed sts:AssumeRole (+ `actions`) on anything."""
    name, key = make_user(world.iam, allow(["sts:AssumeRole", *actions]))
    return name, key, f"arn:aws:iam::{ACCOUNT}:user/{name}"


# ================================================================ NotPrincipal (issue 18, over-grant 1)

_NOT_PRINCIPAL_PAGE = "IAM User Guide: AWS JSON policy elements: NotPrincipal (Deny with NotPrincipal)"


def _key_denying_all_but(world: World, exempt: list[str]) -> str:
    return world.key({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "DenyAllButListed", "Effect": "Deny", "NotPrincipal": {"AWS": exempt}, "Action": "kms:DescribeKey",
         "Resource": "*"}]})


@case(_NOT_PRINCIPAL_PAGE)
def not_principal_user_and_account_root_denies_everyone_but_that_user(world: World):
    bob, bob_key = make_user(world.iam, allow("kms:*"))
    _, alice_key = make_user(world.iam, allow("kms:*"))
    key = _key_denying_all_but(world, [f"arn:aws:iam::{ACCOUNT}:user/{bob}", ROOT])
    assert world.as_("kms", bob_key).describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key
    with expect_error(KMS_DENIED):      # listing the account ARN does not exempt the account's users
        world.as_("kms", alice_key).describe_key(KeyId=key)


@case(_NOT_PRINCIPAL_PAGE)
def not_principal_role_arn_does_not_exempt_its_sessions(world: World):
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], allow("kms:*"))
    creds = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="audit")["Credentials"]
    kms_key = _key_denying_all_but(world, [role, ROOT])
    with expect_error(KMS_DENIED):
        world.as_("kms", creds=creds).describe_key(KeyId=kms_key)


@case(_NOT_PRINCIPAL_PAGE)
def not_principal_listing_the_session_chain_exempts_that_session_only(world: World):
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], allow("kms:*"))
    sts = world.as_("sts", key)
    listed = sts.assume_role(RoleArn=role, RoleSessionName="app")["Credentials"]
    other = sts.assume_role(RoleArn=role, RoleSessionName="other")["Credentials"]
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name(role)}/app"
    kms_key = _key_denying_all_but(world, [session_arn, role, ROOT])
    assert world.as_("kms", creds=listed).describe_key(KeyId=kms_key)["KeyMetadata"]["Arn"] == kms_key
    with expect_error(KMS_DENIED):
        world.as_("kms", creds=other).describe_key(KeyId=kms_key)


# ================================================================ policy variables without a value (over-grant 4)

_VARIABLES_PAGE = "IAM User Guide: IAM policy elements: Variables and tags (a variable with no value)"


@case(_VARIABLES_PAGE)
def missing_principal_tag_variable_does_not_match_string_not_equals(world: World):
    _, key = make_user(world.iam, allow("sqs:ListQueues", Condition={
        "StringNotEquals": {"aws:username": "${aws:PrincipalTag/missing}"}}))
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()


@case(_VARIABLES_PAGE)
def missing_variable_does_not_match_a_positive_operator_either(world: World):
    _, key = make_user(world.iam, allow("sqs:ListQueues", Condition={
        "StringLike": {"aws:username": ["${aws:PrincipalTag/missing}", "nobody"]}}))
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()


@case("IAM User Guide: Controlling access to and for IAM users and roles using tags (aws:PrincipalTag)")
def principal_tag_of_the_user_reaches_conditions(world: World):
    name = unique("user")
    world.iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": "blue"}])
    world.iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(allow(
        "sqs:ListQueues", Condition={"StringEquals": {"aws:PrincipalTag/team": "blue"}})))
    key = world.iam.create_access_key(UserName=name)["AccessKey"]
    world.as_("sqs", key).list_queues()


# ================================================================ SourceIdentity, TokenIssueTime (over-grant 5)

_SOURCE_IDENTITY_PAGE = "IAM User Guide: Monitor and control actions taken with assumed roles (sts:SetSourceIdentity)"


@case(_SOURCE_IDENTITY_PAGE)
def source_identity_needs_set_source_identity_in_the_trust_policy(world: World):
    _, key, user_arn = user_trust(world, "sts:SetSourceIdentity")
    role = world.role([trusts(user_arn)], allow("sqs:ListQueues"))
    with expect_error("AccessDenied", 403) as err:
        world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess", SourceIdentity="alice")
    assert "sts:SetSourceIdentity" in err.message


@case(_SOURCE_IDENTITY_PAGE)
def session_requests_carry_source_identity_and_token_issue_time(world: World):
    _, key, user_arn = user_trust(world, "sts:SetSourceIdentity")
    role = world.role([trusts(user_arn, "sts:AssumeRole", "sts:SetSourceIdentity")],
                      allow("sqs:ListQueues", Condition={"StringEquals": {"aws:SourceIdentity": "alice"},
                                                         "DateGreaterThan": {"aws:TokenIssueTime":
                                                                             "2020-01-01T00:00:00Z"}}),
                      allow("lambda:ListFunctions", Condition={"StringEquals": {"aws:SourceIdentity": "bob"}}))
    out = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess", SourceIdentity="alice")
    assert out["SourceIdentity"] == "alice"
    world.as_("sqs", creds=out["Credentials"]).list_queues()
    with expect_error(DENIED, 403):
        world.as_("lambda", creds=out["Credentials"]).list_functions()


# ================================================================ sessions bound to the role id (issue 21, item 1)

_ROLE_ID_PAGE = "IAM User Guide: IAM identifiers — unique identifiers (a recreated role is a different role)"


@case(_ROLE_ID_PAGE)
def old_session_of_a_recreated_role_is_refused(world: World):
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)])
    name = role_name(role)
    old = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess")["Credentials"]
    with expect_error(DENIED, 403):
        world.as_("lambda", creds=old).list_functions()
    world.iam.delete_role(RoleName=name)
    world.iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc(trusts(user_arn)))
    world.iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    with expect_error("AccessDeniedException", 403):
        world.as_("lambda", creds=old).list_functions()
    with expect_error(DENIED, 403):
        world.as_("sqs", creds=old).list_queues()
    with expect_error("AccessDenied", 403):
        world.as_("iam", creds=old).list_users()
    new = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess")["Credentials"]
    world.as_("lambda", creds=new).list_functions()


@case(_ROLE_ID_PAGE)
def session_of_a_deleted_role_is_refused(world: World):
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], allow("sqs:ListQueues"))
    creds = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess")["Credentials"]
    world.as_("sqs", creds=creds).list_queues()
    world.iam.delete_role_policy(RoleName=role_name(role), PolicyName="p")
    world.iam.delete_role(RoleName=role_name(role))
    url, _ = world.queue({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "sqs:*", "Resource": "*"}]})
    with expect_error(DENIED, 403):
        world.as_("sqs", creds=creds).send_message(QueueUrl=url, MessageBody="x")


# ================================================================ permissions boundaries (over-grant 2)

_BOUNDARY_PAGE = "IAM User Guide: Permissions boundaries for IAM entities"
_EVAL_BOUNDARY_PAGE = "IAM User Guide: Policy evaluation logic — identity-based policies with permissions boundaries"


@case(_BOUNDARY_PAGE)
def boundary_limits_a_user_and_is_shown_and_removable(world: World):
    boundary = world.managed(allow("sqs:ListQueues"))
    name = unique("user")
    user = world.iam.create_user(UserName=name, PermissionsBoundary=boundary)["User"]
    assert user["PermissionsBoundary"] == {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": boundary}
    world.iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    key = world.iam.create_access_key(UserName=name)["AccessKey"]
    world.as_("sqs", key).list_queues()                       # in both
    with expect_error("AccessDeniedException", 403) as err:   # identity allows, the boundary does not
        world.as_("lambda", key).list_functions()
    assert "permissions boundary" in err.message
    assert world.iam.get_user(UserName=name)["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    assert world.iam.get_policy(PolicyArn=boundary)["Policy"]["PermissionsBoundaryUsageCount"] == 1
    with expect_error("DeleteConflict", 409):
        world.iam.delete_policy(PolicyArn=boundary)
    world.iam.delete_user_permissions_boundary(UserName=name)
    assert "PermissionsBoundary" not in world.iam.get_user(UserName=name)["User"]
    world.as_("lambda", key).list_functions()


@case(_EVAL_BOUNDARY_PAGE)
def boundary_alone_grants_nothing(world: World):
    boundary = world.managed(allow("*"))
    name, key = make_user(world.iam)
    world.iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=boundary)
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()


@case(_EVAL_BOUNDARY_PAGE)
def explicit_deny_in_a_boundary_denies(world: World):
    boundary = world.managed(allow("*"), deny("sqs:ListQueues"))
    name, key = make_user(world.iam, allow("*"))
    world.iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=boundary)
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()


@case(_EVAL_BOUNDARY_PAGE)
def boundary_limits_the_sessions_of_a_role(world: World):
    boundary = world.managed(allow("sqs:ListQueues"))
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], allow("*"), boundary=boundary)
    assert world.iam.get_role(RoleName=role_name(role))["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] \
        == boundary
    creds = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess")["Credentials"]
    world.as_("sqs", creds=creds).list_queues()
    with expect_error("AccessDeniedException", 403):
        world.as_("lambda", creds=creds).list_functions()
    world.iam.delete_role_permissions_boundary(RoleName=role_name(role))
    world.as_("lambda", creds=creds).list_functions()


@case(_EVAL_BOUNDARY_PAGE + " (resource-based policy naming the IAM user: not limited)")
def resource_policy_naming_the_user_is_not_limited_by_its_boundary(world: World):
    boundary = world.managed(allow("sqs:ListQueues"))
    name, key = make_user(world.iam)
    world.iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=boundary)
    url, arn = world.queue({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{name}"}, "Action": "sqs:SendMessage",
         "Resource": "*"}]})
    world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="granted by the queue policy")


@case(_EVAL_BOUNDARY_PAGE + " (resource-based policy naming the role ARN: limited; the session ARN: not)")
def resource_policy_naming_the_role_is_limited_but_naming_the_session_is_not(world: World):
    boundary = world.managed(allow("sqs:ListQueues"))
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], boundary=boundary)
    creds = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName="sess")["Credentials"]
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name(role)}/sess"
    to_role, _ = world.queue({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "sqs:SendMessage", "Resource": "*"}]})
    to_session, _ = world.queue({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": session_arn}, "Action": "sqs:SendMessage", "Resource": "*"}]})
    sqs = world.as_("sqs", creds=creds)
    with expect_error(DENIED, 403):
        sqs.send_message(QueueUrl=to_role, MessageBody="x")
    sqs.send_message(QueueUrl=to_session, MessageBody="x")


# ================================================================ SQS queue policies (over-grant 3)

_SQS_PAGE = "Amazon SQS Developer Guide: Using custom policies with the Amazon SQS access policy language"
_CROSS_PAGE = "IAM User Guide: Cross-account policy evaluation logic"


@case(_SQS_PAGE)
def deny_in_a_queue_policy_denies_even_an_administrator(world: World):
    name, key = make_user(world.iam)
    world.iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    url, _ = world.queue({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}]})
    with expect_error(DENIED, 403) as err:
        world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="x")
    assert "explicit deny in a resource-based policy" in err.message
    world.as_("sqs", key).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])


@case(_CROSS_PAGE + " (SQS queue policy granting another account)")
def cross_account_queue_needs_the_queue_policy_and_the_identity_policy(world: World):
    tenant, admin_key = world.tenant
    url, arn = world.queue()
    tenant_iam = world.as_("iam", admin_key)
    granted, granted_key = make_user(tenant_iam, allow("sqs:SendMessage", arn))
    _, bare_key = make_user(tenant_iam)
    with expect_error(DENIED, 403):                               # no queue policy yet
        world.as_("sqs", granted_key).send_message(QueueUrl=url, MessageBody="x")
    world.server.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": tenant},
                                                "Action": "sqs:SendMessage", "Resource": arn}]})})
    world.as_("sqs", granted_key).send_message(QueueUrl=url, MessageBody="x")
    with expect_error(DENIED, 403):                               # its own identity policy must allow too
        world.as_("sqs", bare_key).send_message(QueueUrl=url, MessageBody="x")
    with expect_error(DENIED, 403):                               # only what was granted
        world.as_("sqs", granted_key).receive_message(QueueUrl=url)


@case("Amazon SQS API Reference: AddPermission / RemovePermission")
def add_and_remove_permission_edit_the_queue_policy(world: World):
    tenant, admin_key = world.tenant
    url, arn = world.queue()
    _, key = make_user(world.as_("iam", admin_key), allow("sqs:*"))
    sqs = world.server.client("sqs")
    sqs.add_permission(QueueUrl=url, Label="TenantSend", AWSAccountIds=[tenant], Actions=["SendMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [st["Sid"] for st in policy["Statement"]] == ["TenantSend"]
    world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="x")
    with expect_error("InvalidParameterValue", 400):
        sqs.add_permission(QueueUrl=url, Label="TenantSend", AWSAccountIds=[tenant], Actions=["SendMessage"])
    sqs.remove_permission(QueueUrl=url, Label="TenantSend")
    with expect_error(DENIED, 403):
        world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="x")


@case(_SQS_PAGE + " (a policy that cannot be enforced is refused)")
def malformed_queue_policy_is_refused(world: World):
    url, _ = world.queue()
    with expect_error("InvalidAttributeValue", 400):
        world.server.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]})})


# ================================================================ session policies and session tags

_SESSION_PAGE = "IAM User Guide: Policy evaluation logic — identity-based policies with session policies"
_TAGS_PAGE = "IAM User Guide: Passing session tags in AWS STS"


@case(_SESSION_PAGE)
def session_policy_limits_the_session(world: World):
    _, key, user_arn = user_trust(world)
    role = world.role([trusts(user_arn)], allow("*"))
    sts = world.as_("sts", key)
    creds = sts.assume_role(RoleArn=role, RoleSessionName="sess",
                            Policy=doc(allow("sqs:ListQueues")))["Credentials"]
    world.as_("sqs", creds=creds).list_queues()
    with expect_error("AccessDeniedException", 403) as err:
        world.as_("lambda", creds=creds).list_functions()
    assert "session policy" in err.message
    managed = world.managed(allow("lambda:ListFunctions"))
    creds = sts.assume_role(RoleArn=role, RoleSessionName="sess", PolicyArns=[{"arn": managed}])["Credentials"]
    world.as_("lambda", creds=creds).list_functions()
    with expect_error(DENIED, 403):
        world.as_("sqs", creds=creds).list_queues()


@case(_TAGS_PAGE)
def session_tags_need_tag_session_and_reach_principal_tag(world: World):
    _, key, user_arn = user_trust(world, "sts:TagSession")
    policy = allow("sqs:ListQueues", Condition={"StringEquals": {"aws:PrincipalTag/project": "apollo"}})
    untaggable = world.role([trusts(user_arn)], policy)
    with expect_error("AccessDenied", 403):
        world.as_("sts", key).assume_role(RoleArn=untaggable, RoleSessionName="sess",
                                          Tags=[{"Key": "project", "Value": "apollo"}])
    role = world.role([trusts(user_arn, "sts:AssumeRole", "sts:TagSession")], policy)
    sts = world.as_("sts", key)
    tagged = sts.assume_role(RoleArn=role, RoleSessionName="sess", Tags=[{"Key": "project", "Value": "apollo"}])
    world.as_("sqs", creds=tagged["Credentials"]).list_queues()
    other = sts.assume_role(RoleArn=role, RoleSessionName="sess", Tags=[{"Key": "project", "Value": "gemini"}])
    with expect_error(DENIED, 403):
        world.as_("sqs", creds=other["Credentials"]).list_queues()


# ================================================================ policy validation as IAM does it

_RESOURCE_PAGE = "IAM User Guide: IAM JSON policy elements: Resource"
_SID_PAGE = "IAM User Guide: IAM JSON policy elements: Sid"
_QUOTAS_PAGE = "IAM User Guide: IAM and AWS STS quotas (policy size, white space not counted)"


def _padded(chars: int, *, spaces: int = 0) -> str:
    """A document of exactly `chars` non-white-space characters (plus `spaces` blanks IAM does not count)."""
    base = doc(allow("sqs:ListQueues", "arn:aws:sqs:us-east-1:000000000000:"))
    extra = chars - len("".join(base.split()))
    assert extra >= 0
    document = base.replace("000000000000:", "000000000000:" + "q" * extra, 1)
    assert len("".join(document.split())) == chars
    return document.replace("{", "{" + " " * spaces, 1)


@case(_RESOURCE_PAGE)
def resource_that_is_neither_an_arn_nor_a_star_is_malformed(world: World):
    with expect_error("MalformedPolicyDocument", 400) as err:
        world.iam.create_policy(PolicyName=unique("pol"), PolicyDocument=doc(allow("sqs:ListQueues", "my-queue")))
    assert err.message == 'Resource my-queue must be in ARN format or "*".'
    name, _ = make_user(world.iam)
    with expect_error("MalformedPolicyDocument", 400):
        world.iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(
            {"Effect": "Allow", "Action": "sqs:*", "NotResource": "queue/*"}))
    # ARNs with wildcards and policy variables are fine
    world.managed(allow("sqs:*", "arn:aws:sqs:*:*:${aws:username}-*"))


@case(_SID_PAGE)
def sid_with_non_alphanumeric_characters_is_malformed_in_identity_policies(world: World):
    with expect_error("MalformedPolicyDocument", 400) as err:
        world.managed(allow("sqs:ListQueues", Sid="Allow queues"))
    assert "alpha-numeric" in err.message
    name, _ = make_user(world.iam)
    with expect_error("MalformedPolicyDocument", 400):
        world.iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(
            allow("sqs:ListQueues", Sid="allow-queues")))
    world.managed(allow("sqs:ListQueues", Sid="AllowQueues1"))


@case(_QUOTAS_PAGE)
def managed_policy_over_6144_characters_is_refused(world: World):
    world.managed_doc(_padded(6144, spaces=500))                 # white space is not counted
    with expect_error("LimitExceeded", 409) as err:
        world.managed_doc(_padded(6145))
    assert err.message == "Cannot exceed quota for PolicySize: 6144"
    arn = world.managed(allow("sqs:ListQueues"))
    with expect_error("LimitExceeded", 409):
        world.iam.create_policy_version(PolicyArn=arn, PolicyDocument=_padded(6145))


@case(_QUOTAS_PAGE)
def inline_user_policies_share_2048_characters(world: World):
    name, _ = make_user(world.iam)
    world.iam.put_user_policy(UserName=name, PolicyName="a", PolicyDocument=_padded(1200))
    with expect_error("LimitExceeded", 409) as err:            # together with "a" they pass 2048
        world.iam.put_user_policy(UserName=name, PolicyName="b", PolicyDocument=_padded(900))
    assert err.message == f"Maximum policy size of 2048 bytes exceeded for user {name}"
    world.iam.put_user_policy(UserName=name, PolicyName="a", PolicyDocument=_padded(2048))   # replacing "a" fits


@case(_QUOTAS_PAGE)
def inline_role_policies_share_10240_characters(world: World):
    role = world.role([trusts(ROOT)])
    world.iam.put_role_policy(RoleName=role_name(role), PolicyName="a", PolicyDocument=_padded(6000))
    world.iam.put_role_policy(RoleName=role_name(role), PolicyName="b", PolicyDocument=_padded(4240))
    with expect_error("LimitExceeded", 409) as err:
        world.iam.put_role_policy(RoleName=role_name(role), PolicyName="c", PolicyDocument=_padded(200))
    assert err.message == f"Maximum policy size of 10240 bytes exceeded for role {role_name(role)}"


@case(_QUOTAS_PAGE)
def trust_policy_over_2048_characters_is_refused(world: World):
    principals = [f"arn:aws:iam::{ACCOUNT}:user/{'u' * 60}{i}" for i in range(40)]
    big = doc(trusts(principals))
    assert len("".join(big.split())) > 2048
    with expect_error("LimitExceeded", 409) as err:
        world.iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=big)
    assert err.message == "Cannot exceed quota for ACLSizePerRole: 2048"
    role = world.role([trusts(ROOT)])
    with expect_error("LimitExceeded", 409):
        world.iam.update_assume_role_policy(RoleName=role_name(role), PolicyDocument=big)


# ================================================================ aws:ResourceTag on IAM users and roles

_IAM_TAGS_PAGE = "IAM User Guide: Controlling access to IAM users and roles using tags (aws:ResourceTag)"


@case(_IAM_TAGS_PAGE)
def delete_role_conditioned_on_the_roles_tag(world: World):
    blue, red = unique("role"), unique("role")
    for name, team in ((blue, "blue"), (red, "red")):
        world.iam.create_role(RoleName=name, AssumeRolePolicyDocument=doc(trusts(ROOT)),
                              Tags=[{"Key": "team", "Value": team}])
    _, key = make_user(world.iam, allow("iam:DeleteRole", Condition={"StringEquals": {"aws:ResourceTag/team": "blue"}}))
    iam = world.as_("iam", key)
    with expect_error("AccessDenied", 403):
        iam.delete_role(RoleName=red)
    iam.delete_role(RoleName=blue)


@case(_IAM_TAGS_PAGE + " (iam:ResourceTag, and the user's own tags for ABAC)")
def iam_resource_tag_matches_the_principal_tag(world: World):
    mine, other = unique("user"), unique("user")
    world.iam.create_user(UserName=mine, Tags=[{"Key": "team", "Value": "blue"}])
    world.iam.create_user(UserName=other, Tags=[{"Key": "team", "Value": "red"}])
    name = unique("user")
    world.iam.create_user(UserName=name, Tags=[{"Key": "team", "Value": "blue"}])
    world.iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(allow(
        "iam:GetUser", Condition={"StringEquals": {"iam:ResourceTag/team": "${aws:PrincipalTag/team}"}})))
    iam = world.as_("iam", world.iam.create_access_key(UserName=name)["AccessKey"])
    assert iam.get_user(UserName=mine)["User"]["UserName"] == mine
    with expect_error("AccessDenied", 403):
        iam.get_user(UserName=other)


# ================================================================ Lambda's condition keys

_LAMBDA_KEYS_PAGE = "Service Authorization Reference: Actions, resources, and condition keys for AWS Lambda"
_SOURCE_FUNCTION_PAGE = "AWS Lambda Developer Guide: Using source function ARN to control function access behavior"


@case(_LAMBDA_KEYS_PAGE + " (RemovePermission: lambda:Principal)")
def remove_permission_is_conditioned_on_the_removed_principal(world: World):
    lam = world.server.client("lambda")
    name = unique("fn")
    create_function(lam, name)
    try:
        lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                           Principal="s3.amazonaws.com")
        lam.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                           Principal="sns.amazonaws.com")
        _, key = make_user(world.iam, allow("lambda:RemovePermission", Condition={
            "StringEquals": {"lambda:Principal": "s3.amazonaws.com"}}))
        user = world.as_("lambda", key)
        with expect_error("AccessDeniedException", 403):
            user.remove_permission(FunctionName=name, StatementId="sns")
        user.remove_permission(FunctionName=name, StatementId="s3")
    finally:
        delete_quietly(lam, name)


@case(_LAMBDA_KEYS_PAGE + " (PutFunctionCodeSigningConfig: lambda:CodeSigningConfigArn)")
def put_function_code_signing_config_is_conditioned_on_the_config_arn(world: World):
    allowed = f"arn:aws:lambda:us-east-1:{ACCOUNT}:code-signing-config:csc-{'a' * 17}"
    other = f"arn:aws:lambda:us-east-1:{ACCOUNT}:code-signing-config:csc-{'b' * 17}"
    _, key = make_user(world.iam, allow("lambda:PutFunctionCodeSigningConfig", Condition={
        "ArnEquals": {"lambda:CodeSigningConfigArn": allowed}}))
    user = world.as_("lambda", key)
    with expect_error("AccessDeniedException", 403):
        user.put_function_code_signing_config(FunctionName="fn", CodeSigningConfigArn=other)
    with expect_error({"ResourceNotFoundException", "CodeSigningConfigNotFoundException"}, 404):
        user.put_function_code_signing_config(FunctionName="fn", CodeSigningConfigArn=allowed)   # authorized


@case(_SOURCE_FUNCTION_PAGE, functions=True)
def source_function_arn_is_the_function_the_credentials_were_issued_to(world: World):
    lam = world.server.client("lambda")
    mine, other = unique("src"), unique("src")
    mine_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{mine}"
    _, key, user_arn = user_trust(world)
    role = world.role([{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"},
                       trusts(user_arn)],
                      allow("lambda:ListFunctions", Condition={"ArnEquals": {"lambda:SourceFunctionArn": mine_arn}}))
    for name in (mine, other):
        create_function(lam, name, Role=role, zip_bytes=_role_caller_zip(), Timeout=30)
    try:
        listed = _invoke(lam, mine, {"action": "list_functions"})
        assert listed["status"] == 200, listed
        refused = _invoke(lam, other, {"action": "list_functions"})            # same role, another function
        assert (refused["status"], refused["error_type"]) == (403, "AccessDeniedException"), refused
        session = world.as_("sts", key).assume_role(RoleArn=role, RoleSessionName=mine)["Credentials"]
        with expect_error("AccessDeniedException", 403):                       # not issued by Lambda: no key
            world.as_("lambda", creds=session).list_functions()
        env = _invoke(lam, mine, {"action": "env"})      # bound to the credentials, wherever they are used
        world.as_("lambda", creds={"AccessKeyId": env["AWS_ACCESS_KEY_ID"], "SecretAccessKey":
                                   env["AWS_SECRET_ACCESS_KEY"], "SessionToken": env["AWS_SESSION_TOKEN"]}
                  ).list_functions()
    finally:
        for name in (mine, other):
            delete_quietly(lam, name)


# ================================================================ service control policies (own server)

SCP_CASES: list[Case] = []
_SCP_PAGE = "AWS Organizations User Guide: Service control policies (SCPs)"
_SCP_EVAL_PAGE = "AWS Organizations User Guide: SCP evaluation"
_SCP_API_PAGE = "AWS Organizations User Guide: Attaching and detaching SCPs / Enabling a policy type"
SCP = "SERVICE_CONTROL_POLICY"
FULL_ACCESS = "p-FullAWSAccess"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


@dataclass
class OrgWorld(World):
    orgs: object = None
    root: str = ""

    def member(self) -> tuple[str, dict, dict]:
        """(account id, an AdministratorAccess user's key, the operator's access-role session) of a new account."""
        status = self.orgs.create_account(AccountName=unique("acct"), Email=f"{unique('t')}@example.com")
        account = self.orgs.describe_create_account_status(
            CreateAccountRequestId=status["CreateAccountStatus"]["Id"])["CreateAccountStatus"]["AccountId"]
        session = self.sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                                       RoleSessionName="operator")["Credentials"]
        iam = self.as_("iam", creds=session)
        name = unique("admin")
        iam.create_user(UserName=name)
        iam.attach_user_policy(UserName=name, PolicyArn=ADMIN)
        return account, iam.create_access_key(UserName=name)["AccessKey"], session

    def scp(self, *statements: dict) -> str:
        return self.orgs.create_policy(Name=unique("scp"), Description="test", Type=SCP,
                                       Content=doc(*statements))["Policy"]["PolicySummary"]["Id"]


def scp_case(page: str):
    return case(page, into=SCP_CASES)


@scp_case(_SCP_API_PAGE)
def enabling_scps_attaches_full_aws_access_everywhere(world: OrgWorld):
    roots = world.orgs.list_roots()["Roots"]
    assert roots[0]["PolicyTypes"] == [{"Type": SCP, "Status": "ENABLED"}]
    account, _, _ = world.member()               # created after enabling: gets FullAWSAccess too
    for target in (world.root, account):
        got = world.orgs.list_policies_for_target(TargetId=target, Filter=SCP)["Policies"]
        assert [p["Id"] for p in got] == [FULL_ACCESS] and got[0]["AwsManaged"] is True
    full = world.orgs.describe_policy(PolicyId=FULL_ACCESS)["Policy"]
    assert full["PolicySummary"]["Arn"] == "arn:aws:organizations::aws:policy/service_control_policy/p-FullAWSAccess"
    assert json.loads(full["Content"])["Statement"] == [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    targets = {t["TargetId"]: t["Type"] for t in world.orgs.list_targets_for_policy(PolicyId=FULL_ACCESS)["Targets"]}
    assert targets[world.root] == "ROOT" and targets[account] == "ACCOUNT"
    with expect_error("PolicyTypeAlreadyEnabledException", 400):
        world.orgs.enable_policy_type(RootId=world.root, PolicyType=SCP)


@scp_case(_SCP_EVAL_PAGE + " (an explicit Deny at the account level)")
def deny_scp_caps_a_member_accounts_administrator(world: OrgWorld):
    account, key, session = world.member()
    policy = world.scp(deny("lambda:*"))
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error("AccessDeniedException", 403) as err:
        world.as_("lambda", key).list_functions()
    assert err.message.endswith("with an explicit deny in a service control policy")
    world.as_("sqs", key).list_queues()                               # FullAWSAccess still allows the rest
    with expect_error("AccessDeniedException", 403):                  # the operator's access role too
        world.as_("lambda", creds=session).list_functions()
    world.server.client("lambda").list_functions()                    # the management account: never limited
    world.orgs.detach_policy(PolicyId=policy, TargetId=account)
    world.as_("lambda", key).list_functions()


@scp_case(_SCP_EVAL_PAGE + " (an allow list: every level must allow)")
def allow_list_scp_limits_to_what_it_names(world: OrgWorld):
    account, key, _ = world.member()
    policy = world.scp(allow(["sqs:*", "iam:*"]))
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    world.orgs.detach_policy(PolicyId=FULL_ACCESS, TargetId=account)
    world.as_("sqs", key).list_queues()
    with expect_error("AccessDeniedException", 403) as err:
        world.as_("lambda", key).list_functions()
    assert "because no service control policy allows the lambda:ListFunctions action" in err.message
    # the root's FullAWSAccess does not make up for the account level
    assert [p["Id"] for p in world.orgs.list_policies_for_target(TargetId=world.root, Filter=SCP)["Policies"]] \
        == [FULL_ACCESS]
    with expect_error("ConstraintViolationException", 400):           # a target keeps at least one SCP
        world.orgs.detach_policy(PolicyId=policy, TargetId=account)
    world.orgs.attach_policy(PolicyId=FULL_ACCESS, TargetId=account)
    world.as_("lambda", key).list_functions()


@scp_case(_SCP_EVAL_PAGE + " (the root level applies to every member, never to the management account)")
def deny_at_the_root_applies_to_members_only(world: OrgWorld):
    _, key, _ = world.member()
    policy = world.scp(deny("sqs:ListQueues"))
    world.orgs.attach_policy(PolicyId=policy, TargetId=world.root)
    try:
        with expect_error(DENIED, 403):
            world.as_("sqs", key).list_queues()
        world.server.client("sqs").list_queues()
    finally:
        world.orgs.detach_policy(PolicyId=policy, TargetId=world.root)
    world.as_("sqs", key).list_queues()


@scp_case(_SCP_EVAL_PAGE + " (resource-based policies granting a member account's principal are limited too)")
def scp_limits_what_a_resource_policy_grants(world: OrgWorld):
    account, key, _ = world.member()
    sqs = world.server.client("sqs")
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": account}, "Action": "sqs:SendMessage", "Resource": arn}]})})
    world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="granted")
    policy = world.scp(deny("sqs:SendMessage"))
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error(DENIED, 403):
        world.as_("sqs", key).send_message(QueueUrl=url, MessageBody="capped")


@scp_case(_SCP_EVAL_PAGE + " (conditions in SCPs)")
def scp_deny_with_a_condition(world: OrgWorld):
    _, key, _ = world.member()
    policy = world.scp(deny("sqs:*", Condition={"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}))
    account = world.as_("sts", key).get_caller_identity()["Account"]
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()        # the server's region is not eu-west-1


@scp_case(_SCP_API_PAGE + " (errors)")
def scp_api_errors_in_aws_shapes(world: OrgWorld):
    account, key, session = world.member()
    with expect_error("MalformedPolicyDocumentException", 400):
        world.scp({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"})
    policy = world.scp(deny("kms:*"))
    with expect_error("DuplicatePolicyException", 400):
        world.orgs.update_policy(PolicyId=policy, Name="FullAWSAccess")
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error("DuplicatePolicyAttachmentException", 400):
        world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error("PolicyNotAttachedException", 400):
        world.orgs.detach_policy(PolicyId=policy, TargetId=world.root)
    with expect_error("PolicyInUseException", 400):
        world.orgs.delete_policy(PolicyId=policy)
    with expect_error("PolicyNotFoundException", 400):
        world.orgs.describe_policy(PolicyId="p-0000000000")
    with expect_error("TargetNotFoundException", 400):
        world.orgs.attach_policy(PolicyId=policy, TargetId="123456789012")
    with expect_error("RootNotFoundException", 400):
        world.orgs.enable_policy_type(RootId="r-zzzz", PolicyType=SCP)
    with expect_error("PolicyTypeNotAvailableForOrganizationException", 400):
        world.orgs.create_policy(Name=unique("tag"), Description="", Type="TAG_POLICY", Content="{}")
    # UpdatePolicy changes what is enforced at once
    world.orgs.update_policy(PolicyId=policy, Content=doc(deny("sqs:ListQueues")))
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()
    # members cannot manage SCPs, not even through the access role
    for creds in ({"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"],
                   "SessionToken": None}, session):
        with expect_error("AccessDeniedException", 400):
            world.as_("organizations", creds=creds).detach_policy(PolicyId=policy, TargetId=account)
    world.orgs.detach_policy(PolicyId=policy, TargetId=account)
    world.orgs.delete_policy(PolicyId=policy)
    assert policy not in [p["Id"] for p in world.orgs.list_policies(Filter=SCP)["Policies"]]


@scp_case(_SCP_API_PAGE + " (DisablePolicyType detaches every SCP; AttachPolicy then needs it enabled)")
def disabling_scps_lifts_them(world: OrgWorld):
    account, key, _ = world.member()
    policy = world.scp(deny("sqs:*"))
    world.orgs.attach_policy(PolicyId=policy, TargetId=account)
    with expect_error(DENIED, 403):
        world.as_("sqs", key).list_queues()
    root = world.orgs.disable_policy_type(RootId=world.root, PolicyType=SCP)["Root"]
    try:
        assert root["PolicyTypes"] == []
        world.as_("sqs", key).list_queues()
        with expect_error("PolicyTypeNotEnabledException", 400):
            world.orgs.attach_policy(PolicyId=policy, TargetId=account)
        with expect_error("PolicyTypeNotEnabledException", 400):
            world.orgs.disable_policy_type(RootId=world.root, PolicyType=SCP)
    finally:
        world.orgs.enable_policy_type(RootId=world.root, PolicyType=SCP)
    world.as_("sqs", key).list_queues()           # re-enabled: FullAWSAccess again, the old SCP stays detached


# ================================================================ the table


@pytest.fixture(scope="module")
def world(server):
    return World(server, server.client("iam"), server.client("sts"), second_account(server))


PAGES = ("IAM User Guide", "Amazon SQS", "AWS Lambda Developer Guide", "Service Authorization Reference",
         "AWS Organizations User Guide")


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_documented_case(world, c: Case):
    assert c.page.startswith(PAGES)
    if c.functions and os.geteuid() != 0:
        pytest.skip("runs functions: needs root (namespace sandbox)")
    c.run(world)


@pytest.fixture(scope="module")
def org_world(tmp_path_factory):
    """A server of its own with an organization and SCPs enabled (they change every member's decisions)."""
    from harness import own_server
    for srv in own_server(tmp_path_factory, *(() if os.geteuid() == 0 else ("--sandbox", "process")),
                          prefix="lambdalet-scp"):
        orgs = srv.client("organizations")
        orgs.create_organization(FeatureSet="ALL")
        root = orgs.list_roots()["Roots"][0]["Id"]
        with expect_error("PolicyTypeNotEnabledException", 400):     # nothing to attach to before enabling
            orgs.attach_policy(PolicyId=FULL_ACCESS, TargetId=root)
        out = orgs.enable_policy_type(RootId=root, PolicyType=SCP)["Root"]
        assert out["PolicyTypes"] == [{"Type": SCP, "Status": "ENABLED"}]
        yield OrgWorld(srv, srv.client("iam"), srv.client("sts"), None, orgs, root)


@pytest.mark.parametrize("c", SCP_CASES, ids=[c.name for c in SCP_CASES])
def test_service_control_policy_case(org_world, c: Case):
    assert c.page.startswith(PAGES)
    c.run(org_world)
