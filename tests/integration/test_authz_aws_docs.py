"""Authorization exactly as AWS documents it, case by case, through the real API (issues 18 and 21).

Each case names the AWS documentation page it comes from, sets up principals and policies with
boto3 (iam, sts, kms, sqs, lambda) against a real `lambdalet serve`, makes the call with the
principal's OWN keys, and asserts allow or deny. The second account is made the way an operator
does it (tests/integration/tenancy_support.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import pytest

from .e2e_support import expect_error, unique
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


def case(page: str):
    def register(fn):
        CASES.append(Case(page, fn.__name__, fn))
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
        return self.iam.create_policy(PolicyName=unique("pol"), PolicyDocument=doc(*statements))["Policy"]["Arn"]

    def queue(self, policy: dict | None = None) -> tuple[str, str]:
        sqs = self.server.client("sqs")
        attrs = {"Policy": json.dumps(policy)} if policy else {}
        url = sqs.create_queue(QueueName=unique("q"), Attributes=attrs)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def key(self, policy: dict) -> str:
        return self.server.client("kms").create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def trusts(principal_arn: str, *actions: str) -> dict:
    return {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": list(actions or ["sts:AssumeRole"])}


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


# ================================================================ the table


@pytest.fixture(scope="module")
def world(server):
    return World(server, server.client("iam"), server.client("sts"), second_account(server))


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_documented_case(world, c: Case):
    assert c.page.startswith(("IAM User Guide", "Amazon SQS"))
    c.run(world)
