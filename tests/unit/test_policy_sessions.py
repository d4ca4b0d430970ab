"""Role sessions bound to the role's unique id, cached execution-role sessions re-checked, and the
engine rules behind issue 18's over-grants (NotPrincipal, unresolved policy variables, boundaries).
The end-to-end proofs are in tests/integration/test_authz_aws_docs.py; these pin the pieces."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.iam import IdentityStore
from lambdalet.iam.authz import Authorizer
from lambdalet.iam.directory import Directory
from lambdalet.iam.policy import Principal, is_allowed, parse_policy
from lambdalet.invoke.credentials import LAMBDA_TRUST_POLICY, ExecutionRoles
from lambdalet.models.context import RequestContext
from lambdalet.store import open_database

ACCOUNT = "000000000000"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"


@pytest.fixture
def env():
    db = open_database("sqlite://")
    identity = IdentityStore(db, Keyring.open(b"m" * 32, MemoryKeyMaterialStore()))
    identity.bootstrap_admin()
    directory = Directory(db)
    directory.ensure_builtin()

    class Env:
        pass
    e = Env()
    e.db, e.identity, e.directory = db, identity, directory
    e.authorizer = Authorizer(directory)
    e.roles = ExecutionRoles(directory, identity, e.authorizer)
    yield e
    db.close()


def _ctx(identity, key_id, token):
    caller, _ = identity.lookup(key_id, token)
    return RequestContext(caller, "us-east-1", str(uuid.uuid4()), "https://localhost")


def test_cached_execution_session_is_not_handed_out_after_the_role_is_recreated(env):
    arn = env.directory.create_role(ACCOUNT, "exec", LAMBDA_TRUST_POLICY)["Arn"]
    env.directory.attach(ACCOUNT, "role", "exec", "arn:aws:iam::aws:policy/AdministratorAccess")
    first = env.roles.for_environment(ACCOUNT, "f", FN, arn)
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is first       # shared while the role is unchanged
    env.directory.detach(ACCOUNT, "role", "exec", "arn:aws:iam::aws:policy/AdministratorAccess")
    env.directory.delete_role(ACCOUNT, "exec")
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is None          # gone: nothing cached is lent
    env.directory.create_role(ACCOUNT, "exec", LAMBDA_TRUST_POLICY)
    second = env.roles.for_environment(ACCOUNT, "f", FN, arn)
    assert second is not None and second.access_key_id != first.access_key_id
    assert second.role_id != first.role_id
    # the old session's keys authenticate but may do nothing (bound to the old role id)
    old = _ctx(env.identity, first.access_key_id, first.session_token)
    assert not env.authorizer.authorize(old.caller, "lambda:ListFunctions", "*").allowed
    new = _ctx(env.identity, second.access_key_id, second.session_token)
    env.directory.attach(ACCOUNT, "role", "exec", "arn:aws:iam::aws:policy/AdministratorAccess")
    assert env.authorizer.authorize(new.caller, "lambda:ListFunctions", "*").allowed
    assert not env.authorizer.authorize(old.caller, "lambda:ListFunctions", "*").allowed


def test_cached_execution_session_is_dropped_when_the_role_stops_trusting_lambda(env):
    arn = env.directory.create_role(ACCOUNT, "exec", LAMBDA_TRUST_POLICY)["Arn"]
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is not None
    env.directory.update_trust_policy(ACCOUNT, "exec", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is None


def test_session_carries_token_issue_time_and_source_identity(env):
    role = env.directory.create_role(ACCOUNT, "r", LAMBDA_TRUST_POLICY)
    creds = env.identity.create_session(ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s", f"{role['RoleId']}:s",
                                        role["RoleId"], role["Arn"], "s", time.time() + 900, source_identity="alice")
    env.directory.put_inline(ACCOUNT, "role", "r", "p", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceIdentity": "alice"}, "Null": {"aws:TokenIssueTime": "false"}}}]}))
    caller = _ctx(env.identity, creds.access_key_id, creds.session_token).caller
    assert env.authorizer.authorize(caller, "sqs:ListQueues", "*").allowed
    # a request cannot bring its own value for what only the platform knows
    assert env.authorizer.authorize(caller, "sqs:ListQueues", "*", {"aws:SourceIdentity": "mallory"}).allowed
    facts = env.authorizer.principal_policies(caller)
    assert facts.context["aws:SourceIdentity"] == "alice"


# ---------------------------------------------------------------- engine rules


def _doc(*st):
    return {"Version": "2012-10-17", "Statement": list(st)}


def test_not_principal_exempts_only_a_fully_listed_chain():
    bob = Principal.from_arn(f"arn:aws:iam::{ACCOUNT}:user/Bob")
    alice = Principal.from_arn(f"arn:aws:iam::{ACCOUNT}:user/Alice")
    session = Principal.from_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/R/app")
    role = f"arn:aws:iam::{ACCOUNT}:role/R"
    ident = [parse_policy(_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))]

    def decide(who, exempt):
        res = parse_policy(_doc({"Effect": "Deny", "NotPrincipal": {"AWS": exempt}, "Action": "*", "Resource": "*"}),
                           "resource")
        return is_allowed(who, "kms:Decrypt", "*", ident, res, ACCOUNT).effect

    assert decide(bob, [f"arn:aws:iam::{ACCOUNT}:user/Bob", ROOT]) == "Allow"
    assert decide(alice, [f"arn:aws:iam::{ACCOUNT}:user/Bob", ROOT]) == "ExplicitDeny"
    assert decide(bob, [f"arn:aws:iam::{ACCOUNT}:user/Bob"]) == "ExplicitDeny"      # the account must be listed
    assert decide(alice, [ROOT]) == "ExplicitDeny"
    assert decide(session, [role, ROOT]) == "ExplicitDeny"
    assert decide(session, [session.arn, role, ROOT]) == "Allow"


@pytest.mark.parametrize("operator", ["StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
                                      "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "ArnNotLike",
                                      "StringNotEqualsIfExists", "ForAllValues:StringNotEquals",
                                      "ForAnyValue:StringNotEquals"])
def test_unresolved_variable_never_matches(operator):
    who = Principal.from_arn(f"arn:aws:iam::{ACCOUNT}:user/u")
    ident = [parse_policy(_doc({"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*",
                                "Condition": {operator: {"aws:username": "${aws:PrincipalTag/missing}"}}}))]
    assert is_allowed(who, "sqs:ListQueues", "*", ident).effect == "ImplicitDeny"


def test_boundary_intersection_and_resource_grants():
    user = Principal.from_arn(f"arn:aws:iam::{ACCOUNT}:user/u")
    session = Principal.from_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/R/s")
    everything = [parse_policy(_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))]
    boundary = parse_policy(_doc({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}))
    assert is_allowed(user, "sqs:SendMessage", "*", everything, boundary=boundary).allowed
    d = is_allowed(user, "lambda:Invoke", "*", everything, boundary=boundary)
    assert d.effect == "ImplicitDeny" and d.missing == "permissions boundary"

    def to(principal):
        return parse_policy(_doc({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "lambda:*",
                                  "Resource": "*"}), "resource")
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"
    assert is_allowed(user, "lambda:InvokeFunction", arn, (), to(user.arn), boundary=boundary).allowed
    assert not is_allowed(session, "lambda:InvokeFunction", arn, (), to(session.role_arn), boundary=boundary).allowed
    assert is_allowed(session, "lambda:InvokeFunction", arn, (), to(session.arn), boundary=boundary).allowed
    assert not is_allowed(session, "lambda:InvokeFunction", arn, everything, to(session.role_arn),
                          session_policies=(boundary,)).allowed
