"""Pure parts of issue 18's rest: SCP evaluation (every level must allow, a Deny anywhere denies),
IAM's write-time validation and size counting, RemovePermission's keys from the removed statement.
The behaviour through the real API is tests/integration/test_authz_aws_docs.py."""
from __future__ import annotations

import json

import pytest

from lambdalet.iam.policy import EXPLICIT_DENY, IMPLICIT_DENY, MalformedPolicy, Principal, Request, build_context, \
    evaluate_scps, parse_policy
from lambdalet.iam.policy_validation import check_identity_document, inline_quota_error, managed_quota_error, \
    policy_size, trust_quota_error
from lambdalet.iam.request_map import removed_statement_keys

USER = Principal.from_arn("arn:aws:iam::111122223333:user/dev")


def _doc(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _scp(*statements):
    return parse_policy(_doc(*statements), "identity")


FULL = _scp({"Effect": "Allow", "Action": "*", "Resource": "*"})
SQS_ONLY = _scp({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"})
DENY_LAMBDA = _scp({"Effect": "Deny", "Action": "lambda:*", "Resource": "*"})


def _request(action: str) -> Request:
    return Request(USER, action, "*", build_context(USER, {"aws:RequestedRegion": "us-east-1"}))


def test_every_level_must_allow():
    assert evaluate_scps(_request("sqs:ListQueues"), [(FULL,), (SQS_ONLY,)]) is None
    refused = evaluate_scps(_request("lambda:ListFunctions"), [(FULL,), (SQS_ONLY,)])
    assert refused.effect == IMPLICIT_DENY
    assert refused.message(USER.arn, "lambda:ListFunctions", "*").endswith(
        "because no service control policy allows the lambda:ListFunctions action")
    assert evaluate_scps(_request("sqs:ListQueues"), [(), (FULL,)]).effect == IMPLICIT_DENY   # nothing attached


def test_a_deny_at_any_level_denies():
    refused = evaluate_scps(_request("lambda:ListFunctions"), [(FULL, DENY_LAMBDA), (FULL,)])
    assert refused.effect == EXPLICIT_DENY
    assert refused.message(USER.arn, "lambda:ListFunctions", "*").endswith(
        "with an explicit deny in a service control policy")


@pytest.mark.parametrize("resource", ["my-queue", "queue/*", "s3://bucket"])
def test_resource_must_be_an_arn_or_star(resource):
    with pytest.raises(MalformedPolicy, match="must be in ARN format"):
        check_identity_document(_doc({"Effect": "Allow", "Action": "sqs:*", "Resource": resource}))


@pytest.mark.parametrize("resource", ["*", "arn:aws:sqs:*:*:*", "arn:aws:iam::*:user/${aws:username}",
                                      "arn:aws:s3:::bucket/*"])
def test_arns_with_wildcards_and_variables_pass(resource):
    check_identity_document(_doc({"Effect": "Allow", "Action": "sqs:*", "Resource": resource}))


def test_sid_must_be_alphanumeric():
    check_identity_document(_doc({"Sid": "Ok1", "Effect": "Allow", "Action": "sqs:*", "Resource": "*"}))
    for sid in ("with space", "dash-ed", "under_score"):
        with pytest.raises(MalformedPolicy, match="alpha-numeric"):
            check_identity_document(_doc({"Sid": sid, "Effect": "Allow", "Action": "sqs:*", "Resource": "*"}))


def test_sizes_do_not_count_white_space():
    assert policy_size('{ "a" :\n\t"b" }') == len('{"a":"b"}')
    assert managed_quota_error("x" * 6144 + " " * 100) is None
    assert managed_quota_error("x" * 6145) == "Cannot exceed quota for PolicySize: 6144"
    assert trust_quota_error("x" * 2049) == "Cannot exceed quota for ACLSizePerRole: 2048"
    assert inline_quota_error("user", "bob", ["x" * 1024, "x" * 1024]) is None
    assert inline_quota_error("user", "bob", ["x" * 1024, "x" * 1025]) == \
        "Maximum policy size of 2048 bytes exceeded for user bob"
    assert inline_quota_error("role", "r", ["x" * 10240]) is None


def test_remove_permission_keys_come_from_the_removed_statement():
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "lambda:InvokeFunction",
         "Resource": "*"},
        {"Sid": "acct", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "lambda:InvokeFunction", "Resource": "*"},
        {"Sid": "url", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunctionUrl", "Resource": "*",
         "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}]}), "resource")
    assert removed_statement_keys(policy, "s3") == {"lambda:Principal": "s3.amazonaws.com"}
    assert removed_statement_keys(policy, "acct") == {"lambda:Principal": "111122223333"}
    assert removed_statement_keys(policy, "url") == {"lambda:Principal": "*", "lambda:FunctionUrlAuthType": "NONE"}
    assert removed_statement_keys(policy, "missing") == {}
