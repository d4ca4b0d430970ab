"""iam/organizations.py + organizations_service.py in process, over an in-memory database: the
organization's life, account provisioning, the two authorization steps, aws:PrincipalOrgID in
decisions (and its cache), paging, the protocol's input errors, migration 0012."""
from __future__ import annotations

import importlib.util
import json
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from lambdalet.api.app import _not_implemented, snake_case
from lambdalet.api.protocol import WireRequest, load_service_model
from lambdalet.iam import tables as iam_tables
from lambdalet.iam.authz import Authorizer
from lambdalet.iam.directory import ADMIN_POLICY_ARN
from lambdalet.iam.organizations import OrganizationStore, OrganizationsError
from lambdalet.api.organizations_protocol import OrganizationsProtocol
from lambdalet.iam.organizations_service import OrganizationsService
from lambdalet.models.context import RequestContext
from lambdalet.store import open_database, schema
from lambdalet.store.db import MIGRATIONS_DIR

from .iam_support import in_memory_iam

MGMT = "000000000000"
MODEL = load_service_model("organizations")


@pytest.fixture
def env():
    db, identity, admin, directory = in_memory_iam()
    authorizer = Authorizer(directory)
    store = OrganizationStore(db, directory)
    authorizer.principal_org = store.principal_org

    class Env:
        pass
    e = Env()
    e.db, e.identity, e.directory, e.authorizer, e.store = db, identity, directory, authorizer, store
    e.orgs = OrganizationsService(store, authorizer)

    def ctx(key_id):
        caller, _ = identity.lookup(key_id)
        return RequestContext(caller, "us-east-1", str(uuid.uuid4()), "https://localhost")
    e.ctx = ctx
    e.admin = ctx(admin.access_key_id)
    yield e
    db.close()


def _code(call) -> tuple[str, str | None]:
    with pytest.raises(OrganizationsError) as err:
        call()
    return err.value.code, err.value.extra.get("Reason")


def _new_account(env, **kw) -> str:
    status = env.orgs.create_account(env.admin, {"AccountName": "t", "Email": f"{uuid.uuid4().hex[:8]}@example.com",
                                                 **kw})["CreateAccountStatus"]
    assert status["State"] == "IN_PROGRESS" and "AccountId" not in status    # as AWS answers CreateAccount
    done = env.orgs.describe_create_account_status(env.admin, {"CreateAccountRequestId": status["Id"]})
    assert done["CreateAccountStatus"]["State"] == "SUCCEEDED"
    return done["CreateAccountStatus"]["AccountId"]


def test_organization_life(env):
    assert _code(lambda: env.orgs.describe_organization(env.admin, {})) == ("AWSOrganizationsNotInUseException", None)
    org = env.orgs.create_organization(env.admin, {})["Organization"]
    assert org["FeatureSet"] == "ALL" and org["MasterAccountId"] == MGMT
    assert org["MasterAccountEmail"] == f"{MGMT}@lambdalet.invalid"
    assert env.orgs.describe_organization(env.admin, {})["Organization"] == org
    assert _code(lambda: env.orgs.create_organization(env.admin, {}))[0] == "AlreadyInOrganizationException"
    assert env.store.principal_org(MGMT) == (org["Id"], env.orgs.list_roots(env.admin, {})["Roots"][0]["Id"])
    env.orgs.delete_organization(env.admin, {})
    assert env.store.principal_org(MGMT) is None
    assert _code(lambda: env.orgs.list_accounts(env.admin, {}))[0] == "AWSOrganizationsNotInUseException"


def test_create_account_provisions_the_access_role(env):
    env.orgs.create_organization(env.admin, {})
    account = _new_account(env, RoleName="OpsRole", Tags=[{"Key": "k", "Value": "v"}])
    role = env.directory.get_role(account, "OpsRole")
    assert json.loads(role["AssumeRolePolicyDocument"]) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MGMT}:root"}, "Action": "sts:AssumeRole"}]}
    assert env.directory.list_attached(account, "role", "OpsRole") == [
        {"PolicyName": "AdministratorAccess", "PolicyArn": ADMIN_POLICY_ARN}]
    with env.db.read() as conn:
        assert conn.execute(sa.select(schema.accounts.c.name).where(schema.accounts.c.account_id == account)).scalar() \
            == "t"
    assert env.orgs.list_tags_for_resource(env.admin, {"ResourceId": account})["Tags"] == [{"Key": "k", "Value": "v"}]
    env.orgs.tag_resource(env.admin, {"ResourceId": account, "Tags": [{"Key": "x", "Value": "y"}]})
    env.orgs.untag_resource(env.admin, {"ResourceId": account, "TagKeys": ["k"]})
    assert env.orgs.list_tags_for_resource(env.admin, {"ResourceId": account})["Tags"] == [{"Key": "x", "Value": "y"}]
    # a reused email fails the request; nothing is provisioned for it
    email = env.orgs.describe_account(env.admin, {"AccountId": account})["Account"]["Email"]
    status = env.orgs.create_account(env.admin, {"AccountName": "dup", "Email": email.upper()})["CreateAccountStatus"]
    failed = env.orgs.describe_create_account_status(env.admin, {"CreateAccountRequestId": status["Id"]})
    assert failed["CreateAccountStatus"]["FailureReason"] == "EMAIL_ALREADY_EXISTS"
    assert [s["Id"] for s in env.orgs.list_create_account_status(env.admin, {"States": ["FAILED"]})
            ["CreateAccountStatuses"]] == [status["Id"]]
    assert len(env.orgs.list_accounts(env.admin, {})["Accounts"]) == 2


def test_input_is_validated_as_the_model_says(env):
    env.orgs.create_organization(env.admin, {})
    create = env.orgs.create_account
    assert _code(lambda: create(env.admin, {"AccountName": "a", "Email": "nope-at-all"})) == \
        ("InvalidInputException", "INVALID_PATTERN")
    assert _code(lambda: create(env.admin, {"AccountName": "a", "Email": "a@b.co", "RoleName": "AWSServiceRoleForX"})) \
        == ("InvalidInputException", "INVALID_ROLE_NAME")
    assert _code(lambda: create(env.admin, {"AccountName": "a", "Email": "a@b.co",
                                            "Tags": [{"Key": "aws:x", "Value": ""}]}))[1] == \
        "INVALID_SYSTEM_TAGS_PARAMETER"
    assert _code(lambda: env.orgs.describe_account(env.admin, {"AccountId": "12"}))[0] == "InvalidInputException"
    assert _code(lambda: env.orgs.list_accounts(env.admin, {"MaxResults": 21}))[1] == "MAX_VALUE_EXCEEDED"
    assert _code(lambda: env.orgs.list_accounts(env.admin, {"NextToken": "garbage"}))[1] == "INVALID_NEXT_TOKEN"


def test_paging(env):
    env.orgs.create_organization(env.admin, {})
    made = {_new_account(env) for _ in range(4)}
    seen, token, pages = [], None, 0
    while True:
        page = env.orgs.list_accounts(env.admin, {"MaxResults": 2, **({"NextToken": token} if token else {})})
        seen += [a["Id"] for a in page["Accounts"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == made | {MGMT}


def _member_admin(env, account: str):
    """A user of `account` holding AdministratorAccess (as a tenant's operator would make one)."""
    key = env.identity.create_access_key(account, f"ops-{uuid.uuid4().hex[:6]}", administrator=True)
    return env.ctx(key.access_key_id)


def test_only_the_management_account_manages(env):
    org = env.orgs.create_organization(env.admin, {})["Organization"]
    member = _member_admin(env, _new_account(env))
    assert _code(lambda: env.orgs.create_account(member, {"AccountName": "a", "Email": "a@b.co"})) == \
        ("AccessDeniedException", None)
    assert _code(lambda: env.orgs.list_accounts(member, {}))[0] == "AccessDeniedException"
    assert env.orgs.describe_organization(member, {})["Organization"]["Id"] == org["Id"]
    # a standalone account (made outside the organization) cannot start an organization of its own
    standalone = _member_admin(env, env.directory.create_account("standalone"))
    with pytest.raises(OrganizationsError) as err:
        env.orgs.create_organization(standalone, {})
    assert err.value.code == "AccessDeniedException" and MGMT in err.value.message
    assert _code(lambda: env.orgs.describe_organization(standalone, {}))[0] == "AWSOrganizationsNotInUseException"
    # IAM comes first: a user without organizations:* is refused in AWS's words
    env.directory.create_user(MGMT, "reader")
    key = env.identity.create_access_key(MGMT, "reader")
    with pytest.raises(OrganizationsError) as err:
        env.orgs.list_accounts(env.ctx(key.access_key_id), {})
    assert err.value.code == "AccessDeniedException" and "organizations:ListAccounts on resource: *" in \
        err.value.message
    # ... and an explicit Deny on the account's ARN wins even for the administrator's peers
    env.directory.put_inline(MGMT, "user", "reader", "p", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "organizations:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "organizations:DescribeAccount",
         "Resource": f"arn:aws:organizations::{MGMT}:account/{org['Id']}/*"}]}))
    reader = env.ctx(key.access_key_id)
    assert env.orgs.list_accounts(reader, {})["Accounts"]
    assert _code(lambda: env.orgs.describe_account(reader, {"AccountId": MGMT}))[0] == "AccessDeniedException"


def test_principal_org_id_follows_membership(env):
    org = env.orgs.create_organization(env.admin, {})["Organization"]
    account = _new_account(env)
    member = _member_admin(env, account)
    fn = f"arn:aws:lambda:us-east-1:{MGMT}:function:f"
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction", "Resource": fn,
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": org["Id"]}}}]}
    decide = lambda: env.authorizer.authorize(member.caller, "lambda:InvokeFunction", fn, {}, policy)  # noqa: E731
    assert decide().allowed
    paths = {"Version": "2012-10-17", "Statement": [dict(policy["Statement"][0], Condition={
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{org['Id']}/*"]}})]}
    assert env.authorizer.authorize(member.caller, "lambda:InvokeFunction", fn, {}, paths).allowed
    # a request cannot claim an organization
    standalone = _member_admin(env, env.directory.create_account("standalone"))
    assert not env.authorizer.authorize(standalone.caller, "lambda:InvokeFunction", fn,
                                        {"aws:PrincipalOrgID": org["Id"]}, policy).allowed
    # leaving takes effect on the next decision (the snapshot is dropped by the write)
    env.orgs.remove_account_from_organization(env.admin, {"AccountId": account})
    assert not decide().allowed
    assert _code(lambda: env.orgs.describe_account(env.admin, {"AccountId": account}))[0] == \
        "AccountNotFoundException"
    assert _code(lambda: env.orgs.leave_organization(env.admin, {}))[0] == "MasterCannotLeaveOrganizationException"


def test_leave_organization(env):
    env.orgs.create_organization(env.admin, {})
    member = _member_admin(env, _new_account(env))
    env.orgs.leave_organization(member, {})
    assert _code(lambda: env.orgs.describe_organization(member, {}))[0] == "AWSOrganizationsNotInUseException"


# ---------------------------------------------------------------- wire


def _wire(op: str, body: bytes) -> WireRequest:
    return WireRequest("POST", "/", [], {"x-amz-target": f"AWSOrganizationsV20161128.{op}"}, body)


def test_protocol_answers_invalid_input():
    proto = OrganizationsProtocol(MODEL)
    op, _ = proto.match(_wire("DescribeAccount", b"{}"))
    for body, reason in ((b"{}", "INPUT_REQUIRED"), (b'{"AccountId": 12}', None), (b'{"Nope": "x"}', None),
                         (b"not json", None)):
        with pytest.raises(OrganizationsError) as err:
            proto.parse(op, _wire("DescribeAccount", body), {})
        assert err.value.code == "InvalidInputException" and err.value.extra.get("Reason") == reason
    answer = proto.serialize_error(err.value)
    assert answer.status == 400
    assert json.loads(answer.body)["__type"] == "com.amazonaws.organizations#InvalidInputException"


def test_unimplemented_operations_answer_a_modelled_4xx():
    for name in MODEL.operation_names:
        op = MODEL.operation_model(name)
        if not hasattr(OrganizationsService, snake_case(name)):
            err = _not_implemented(op)
            assert err.code in {e.name for e in op.error_shapes} and err.status < 500, name


def _migration(name: str):
    spec = importlib.util.spec_from_file_location(name, MIGRATIONS_DIR / "versions" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_migration_0012_down_and_up(tmp_path):
    mod = _migration("0012_organizations")
    later = _migration("0018_scps_source_function")     # adds to the organization tables: undone first
    assert (mod.revision, mod.down_revision) == ("0012", "0011")
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    names = {iam_tables.organizations.name, iam_tables.organization_accounts.name,
             iam_tables.organization_create_requests.name, iam_tables.organization_policies.name,
             iam_tables.organization_policy_targets.name}
    with db.engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            later.downgrade()
            mod.downgrade()
        assert not names & set(sa.inspect(conn).get_table_names())
        with Operations.context(MigrationContext.configure(conn)):
            mod.upgrade()
            later.upgrade()
        assert names <= set(sa.inspect(conn).get_table_names())
        diff = [d for d in compare_metadata(MigrationContext.configure(conn), schema.metadata)
                if any(x in str(d) for x in names)]
        assert diff == []
    db.close()
