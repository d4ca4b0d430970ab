"""Accounts as tenants through AWS Organizations, end to end with boto3 only, against a server of
this module's own (creating the organization changes `aws:PrincipalOrgID` for its accounts, so the
session-wide server is left alone).

The operator (bootstrap administrator, management account 000000000000) creates the organization
and an account, assumes the account's OrganizationAccountAccessRole, and through it gives the
tenant a user; that user works in its own account only. Members cannot manage the organization.
A function shared with `AddPermission(PrincipalOrgID=...)` is invocable by members only.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid

import pytest

from .e2e_support import create_function, expect_error, make_zip

MGMT = "000000000000"
IS_ROOT = os.geteuid() == 0
LAMBDA_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
ECHO_ZIP = make_zip({"app.py": "def handler(event, context):\n    return {'echo': event}\n"})


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _email() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from harness import own_server
    yield from own_server(tmp_path_factory, *(() if IS_ROOT else ("--sandbox", "process")), prefix="lambdalet-orgs")


@pytest.fixture(scope="module")
def orgs(srv):
    return srv.client("organizations")


@pytest.fixture(scope="module")
def org(orgs):
    """The organization, created once; what DescribeOrganization answered before it existed is kept."""
    try:
        orgs.describe_organization()
        before = "no error"
    except orgs.exceptions.AWSOrganizationsNotInUseException as e:
        before = e.response["Error"]["Code"]
    created = orgs.create_organization(FeatureSet="ALL")["Organization"]
    return {"before": before, **created}


def _create_account(orgs, name: str | None = None, email: str | None = None, **kw) -> dict:
    """CreateAccount, then poll DescribeCreateAccountStatus as an AWS client must."""
    status = orgs.create_account(AccountName=name or _name("tenant"), Email=email or _email(), **kw)
    status = status["CreateAccountStatus"]
    assert status["State"] in ("IN_PROGRESS", "SUCCEEDED") and status["Id"].startswith("car-")
    for _ in range(50):
        got = orgs.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]
        if got["State"] != "IN_PROGRESS":
            return got
        time.sleep(0.1)
    raise AssertionError("account creation never finished")


def _session(srv, service: str, creds: dict):
    return srv.client(service, aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds.get("SessionToken"))


def _assume_access_role(srv, account_id: str, role: str = "OrganizationAccountAccessRole") -> dict:
    return srv.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/{role}",
                                         RoleSessionName="operator")["Credentials"]


@pytest.fixture(scope="module")
def tenant(srv, orgs, org):
    """A created account, the operator's session in it, and a user of its own with Lambda access."""
    status = _create_account(orgs, name="tenant-a", Tags=[{"Key": "team", "Value": "a"}])
    assert status["State"] == "SUCCEEDED", status
    account = status["AccountId"]
    session = _assume_access_role(srv, account)
    iam = _session(srv, "iam", session)
    user = _name("dev")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    iam.attach_user_policy(UserName=user, PolicyArn="arn:aws:iam::aws:policy/AWSLambda_FullAccess")
    iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=LAMBDA_TRUST)
    return {"account": account, "status": status, "session": session, "user": user, "key": key}


# ---------------------------------------------------------------- the organization and its accounts


def test_organization_is_created_once(orgs, org):
    assert org["before"] == "AWSOrganizationsNotInUseException"
    assert re.fullmatch(r"o-[a-z0-9]{10}", org["Id"])
    assert org["MasterAccountId"] == MGMT and org["FeatureSet"] == "ALL"
    assert org["Arn"] == f"arn:aws:organizations::{MGMT}:organization/{org['Id']}"
    assert orgs.describe_organization()["Organization"] == {k: v for k, v in org.items() if k != "before"}
    with expect_error("AlreadyInOrganizationException", 400):
        orgs.create_organization(FeatureSet="ALL")
    roots = orgs.list_roots()["Roots"]
    assert len(roots) == 1 and re.fullmatch(r"r-[0-9a-z]{4}", roots[0]["Id"])
    assert roots[0]["Arn"] == f"arn:aws:organizations::{MGMT}:root/{org['Id']}/{roots[0]['Id']}"


def test_create_account_succeeds_and_is_listed(srv, orgs, org, tenant):
    status, account = tenant["status"], tenant["account"]
    assert re.fullmatch(r"\d{12}", account) and account != MGMT
    assert status["AccountName"] == "tenant-a" and "FailureReason" not in status
    listed = orgs.list_create_account_status(States=["SUCCEEDED"])["CreateAccountStatuses"]
    assert status["Id"] in [s["Id"] for s in listed]

    # both accounts, through the paginator (one account per page)
    pages = orgs.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 1})
    accounts = {a["Id"]: a for page in pages for a in page["Accounts"]}
    assert {MGMT, account} <= set(accounts)
    assert accounts[account]["Name"] == "tenant-a" and accounts[account]["JoinedMethod"] == "CREATED"
    assert accounts[account]["Arn"] == f"arn:aws:organizations::{MGMT}:account/{org['Id']}/{account}"
    assert orgs.describe_account(AccountId=account)["Account"] == accounts[account]
    assert orgs.list_tags_for_resource(ResourceId=account)["Tags"] == [{"Key": "team", "Value": "a"}]
    root = orgs.list_roots()["Roots"][0]["Id"]
    assert orgs.list_parents(ChildId=account)["Parents"] == [{"Id": root, "Type": "ROOT"}]


def test_access_role_is_administrator_and_trusts_the_management_account(srv, tenant):
    iam = _session(srv, "iam", tenant["session"])
    role = iam.get_role(RoleName="OrganizationAccountAccessRole")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{tenant['account']}:role/OrganizationAccountAccessRole"
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MGMT}:root"}, "Action": "sts:AssumeRole"}]
    attached = iam.list_attached_role_policies(RoleName="OrganizationAccountAccessRole")["AttachedPolicies"]
    assert attached == [{"PolicyName": "AdministratorAccess",
                         "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}]
    me = _session(srv, "sts", tenant["session"]).get_caller_identity()
    assert me["Account"] == tenant["account"]
    assert me["Arn"] == f"arn:aws:sts::{tenant['account']}:assumed-role/OrganizationAccountAccessRole/operator"


def test_tenants_are_separate(srv, tenant):
    account = tenant["account"]
    lam = _session(srv, "lambda", tenant["key"])
    name = _name("tenant-fn")
    created = create_function(lam, name, Role=f"arn:aws:iam::{account}:role/lambda-role")
    assert created["FunctionArn"] == f"arn:aws:lambda:{srv.region}:{account}:function:{name}"
    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    admin_lam = srv.client("lambda")
    assert name not in [f["FunctionName"] for f in admin_lam.list_functions()["Functions"]]
    with expect_error("ResourceNotFoundException", 404):
        admin_lam.get_function(FunctionName=name)      # names resolve in the caller's own account
    # the tenant's user lives in the tenant's IAM, not the operator's
    with expect_error("NoSuchEntity", 404):
        srv.client("iam").get_user(UserName=tenant["user"])
    lam.delete_function(FunctionName=name)


def test_members_cannot_manage_the_organization(srv, org, tenant):
    user_orgs = _session(srv, "organizations", tenant["key"])
    with expect_error("AccessDeniedException", 400) as err:
        user_orgs.create_account(AccountName="sneaky", Email=_email())
    assert err.message == (f"User: arn:aws:iam::{tenant['account']}:user/{tenant['user']} is not authorized to "
                           "perform: organizations:CreateAccount on resource: * because no identity-based policy "
                           "allows the organizations:CreateAccount action")
    # the access role is administrator of the member account, which still cannot manage the organization
    admin_orgs = _session(srv, "organizations", tenant["session"])
    with expect_error("AccessDeniedException", 400) as err:
        admin_orgs.create_account(AccountName="sneaky", Email=_email())
    assert err.message == "You don't have permissions to access this resource."
    with expect_error("AccessDeniedException", 400):
        admin_orgs.list_accounts()
    with expect_error("AlreadyInOrganizationException", 400):     # as AWS: it is a member already
        admin_orgs.create_organization()
    # ... but may see which organization it belongs to
    assert admin_orgs.describe_organization()["Organization"]["Id"] == org["Id"]


def test_errors_in_aws_shapes(orgs, org, tenant):
    with expect_error("AccountNotFoundException", 400):
        orgs.describe_account(AccountId="123456789012")
    with expect_error("CreateAccountStatusNotFoundException", 400):
        orgs.describe_create_account_status(CreateAccountRequestId="car-" + "0" * 32)
    with expect_error("InvalidInputException", 400):
        orgs.create_account(AccountName="x", Email="not-an-email")
    with expect_error("MasterCannotLeaveOrganizationException", 400):
        orgs.remove_account_from_organization(AccountId=MGMT)
    with expect_error("OrganizationNotEmptyException", 400):
        orgs.delete_organization()
    with expect_error("InvalidInputException", 400) as err:       # not implemented: a modelled error
        orgs.create_organizational_unit(ParentId=orgs.list_roots()["Roots"][0]["Id"], Name="ou")
    assert "does not implement CreateOrganizationalUnit" in err.message
    # an email already in use fails the request, as AWS reports it
    taken = orgs.describe_account(AccountId=tenant["account"])["Account"]["Email"]
    failed = _create_account(orgs, email=taken)
    assert failed["State"] == "FAILED" and failed["FailureReason"] == "EMAIL_ALREADY_EXISTS"
    assert "AccountId" not in failed


def test_calls_are_audited_without_the_email(srv, orgs, tenant):
    events = srv.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateAccount"}])["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    mine = [r for r in records if r["eventSource"] == "organizations.amazonaws.com" and not r.get("errorCode")]
    assert mine, records
    email = orgs.describe_account(AccountId=tenant["account"])["Account"]["Email"]
    assert email not in json.dumps(records)


# ---------------------------------------------------------------- aws:PrincipalOrgID


def test_principal_org_id_admits_members_only(srv, orgs, org, tenant):
    # tenant A's user shares a function with the organization
    owner = _session(srv, "lambda", tenant["key"])
    name = _name("shared")
    arn = create_function(owner, name, zip_bytes=ECHO_ZIP,
                          Role=f"arn:aws:iam::{tenant['account']}:role/lambda-role")["FunctionArn"]
    owner.add_permission(FunctionName=name, StatementId="org", Action="lambda:InvokeFunction", Principal="*",
                         PrincipalOrgID=org["Id"])
    # another member account (B, through its access role) invokes it across accounts
    other = _create_account(orgs, name="tenant-b")["AccountId"]
    other_lam = _session(srv, "lambda", _assume_access_role(srv, other))
    out = other_lam.invoke(FunctionName=arn, Payload=b'{"from": "member"}')
    assert out["StatusCode"] == 200 and json.loads(out["Payload"].read()) == {"echo": {"from": "member"}}
    mgmt_lam = srv.client("lambda")          # the management account is a member too
    assert mgmt_lam.invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204

    # once B has left the organization it is refused, in AWS's words
    orgs.remove_account_from_organization(AccountId=other)
    assert other not in [a["Id"] for a in orgs.list_accounts()["Accounts"]]
    with expect_error("AccessDeniedException", 403) as err:
        other_lam.invoke(FunctionName=arn, InvocationType="DryRun")
    assert err.message == (f"User: arn:aws:sts::{other}:assumed-role/OrganizationAccountAccessRole/operator is not "
                           f"authorized to perform: lambda:InvokeFunction on resource: {arn} because no "
                           "resource-based policy allows the lambda:InvokeFunction action")
    assert mgmt_lam.invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204
    # a policy naming another organization admits nobody
    owner.remove_permission(FunctionName=name, StatementId="org")
    owner.add_permission(FunctionName=name, StatementId="org", Action="lambda:InvokeFunction", Principal="*",
                         PrincipalOrgID="o-aaaaaaaaaa")
    with expect_error("AccessDeniedException", 403):
        mgmt_lam.invoke(FunctionName=arn, InvocationType="DryRun")
    owner.delete_function(FunctionName=name)
