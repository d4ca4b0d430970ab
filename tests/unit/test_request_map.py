"""iam/request_map.py: (service, operation, input) -> (action, resource, condition keys); the
authorize callable (identity + function policies, tags, cross-account scope); its caches; and the
Directory generation that invalidates them. In process, over an in-memory database."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from lambdalet.iam.authz import Authorizer
from lambdalet.iam.directory import Directory
from lambdalet.iam.request_map import (RequestAuthorizer, ResourceAccountContext, in_account, logs_request,
                                       map_request, sqs_request)
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import AccessDeniedException
from lambdalet.services.arns import Scope
from lambdalet.store import open_database

A, B = "111111111111", "222222222222"
REGION = "us-east-1"


def _ctx(account: str = A, user: str = "u") -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/{user}", "AKIA" + account[:4]),
                          REGION, str(uuid.uuid4()), "https://localhost", source_ip="127.0.0.1")


def _fn(name: str, account: str = A, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def _doc(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# ---------------------------------------------------------------- mapping


@pytest.mark.parametrize("op,params,action,arn", [
    ("GetFunction", {"FunctionName": "f"}, "lambda:GetFunction", _fn("f")),
    ("GetFunction", {"FunctionName": "f", "Qualifier": "prod"}, "lambda:GetFunction", _fn("f", qualifier="prod")),
    ("Invoke", {"FunctionName": _fn("f", B, "3")}, "lambda:InvokeFunction", _fn("f", B, "3")),
    ("Invoke", {"FunctionName": f"{B}:function:f"}, "lambda:InvokeFunction", _fn("f", B)),
    ("ListFunctions", {}, "lambda:ListFunctions", "*"),
    ("GetAlias", {"FunctionName": "f", "Name": "prod"}, "lambda:GetAlias", _fn("f")),
    ("AddPermission", {"FunctionName": "f", "Qualifier": "1"}, "lambda:AddPermission", _fn("f", qualifier="1")),
    ("GetPolicy", {"FunctionName": "f"}, "lambda:GetPolicy", _fn("f")),
    ("TagResource", {"Resource": _fn("f"), "Tags": {"a": "b"}}, "lambda:TagResource", _fn("f")),
])
def test_lambda_mapping(op, params, action, arn):
    assert map_request("lambda", op, params, _ctx())[:2] == (action, arn)


def test_lambda_tag_condition_keys():
    _, _, keys = map_request("lambda", "CreateFunction", {"FunctionName": "f", "Tags": {"team": "blue"}}, _ctx())
    assert keys == {"aws:RequestTag/team": "blue", "aws:TagKeys": ["team"]}
    _, _, keys = map_request("lambda", "UntagResource", {"Resource": _fn("f"), "TagKeys": ["a", "b"]}, _ctx())
    assert keys == {"aws:TagKeys": ["a", "b"]}


@pytest.mark.parametrize("op,params,action,arn", [
    ("SendMessage", {"QueueUrl": f"https://h:1/{A}/q1"}, "sqs:SendMessage", f"arn:aws:sqs:{REGION}:{A}:q1"),
    ("SendMessageBatch", {"QueueUrl": f"https://h/{B}/q.fifo"}, "sqs:SendMessage", f"arn:aws:sqs:{REGION}:{B}:q.fifo"),
    ("DeleteMessageBatch", {"QueueUrl": "q2"}, "sqs:DeleteMessage", f"arn:aws:sqs:{REGION}:{A}:q2"),
    ("CreateQueue", {"QueueName": "q3"}, "sqs:CreateQueue", f"arn:aws:sqs:{REGION}:{A}:q3"),
    ("GetQueueUrl", {"QueueName": "q4", "QueueOwnerAWSAccountId": B}, "sqs:GetQueueUrl",
     f"arn:aws:sqs:{REGION}:{B}:q4"),
    ("ListQueues", {}, "sqs:ListQueues", "*"),
])
def test_sqs_mapping(op, params, action, arn):
    assert sqs_request(op, params, _ctx())[:2] == (action, arn)


def test_sqs_tag_keys():
    _, _, keys = sqs_request("CreateQueue", {"QueueName": "q", "tags": {"team": "x"}}, _ctx())
    assert keys == {"aws:RequestTag/team": "x", "aws:TagKeys": ["team"]}


@pytest.mark.parametrize("op,params,arn", [
    ("DescribeLogGroups", {}, f"arn:aws:logs:{REGION}:{A}:log-group:*"),
    ("DescribeLogStreams", {"logGroupName": "/aws/lambda/f"}, f"arn:aws:logs:{REGION}:{A}:log-group:/aws/lambda/f"),
    ("GetLogEvents", {"logGroupName": "g", "logStreamName": "s"}, f"arn:aws:logs:{REGION}:{A}:log-group:g:log-stream:s"),
    ("FilterLogEvents", {"logGroupIdentifier": f"arn:aws:logs:{REGION}:{B}:log-group:g:*"},
     f"arn:aws:logs:{REGION}:{B}:log-group:g"),
])
def test_logs_mapping(op, params, arn):
    assert logs_request(op, params, _ctx()) [:2] == (f"logs:{op}", arn)


def test_cloudtrail_and_unknown_services():
    assert map_request("cloudtrail", "LookupEvents", {}, _ctx()) == ("cloudtrail:LookupEvents", "*", {})


def test_resource_account_context_scopes_by_the_owner_but_keeps_the_caller():
    ctx = _ctx(B)
    moved = in_account(ctx, A)
    assert isinstance(moved, ResourceAccountContext)
    assert moved.account_id == A and moved.caller.account_id == B and moved.request_id == ctx.request_id
    assert Scope.of(moved) == Scope(A, REGION)
    assert in_account(ctx, B) is ctx


# ---------------------------------------------------------------- the authorize callable


class Facts:
    """A stand-in for services/policies.function_facts, counting reads."""

    def __init__(self):
        self.policies: dict[tuple, str] = {}
        self.tags: dict[tuple, dict] = {}
        self.reads = 0
        self.generation = 0

    def __call__(self, region, account, name, qualifier):
        self.reads += 1
        return self.policies.get((account, name, qualifier)), self.tags.get((account, name), {})


@pytest.fixture
def env():
    db = open_database("sqlite://")
    directory = Directory(db)
    directory.ensure_builtin()
    for account in (A, B):
        directory.create_account(account, account)
        directory.create_user(account, "u")
    facts = Facts()
    authorize = RequestAuthorizer(Authorizer(directory), function_facts=facts, generation=lambda: facts.generation)
    yield directory, facts, authorize
    db.close()


def test_refused_with_aws_wording_then_allowed(env):
    directory, _, authorize = env
    with pytest.raises(AccessDeniedException) as e:
        authorize("lambda", "GetFunction", {"FunctionName": "f"}, _ctx())
    assert e.value.message == (f"User: arn:aws:iam::{A}:user/u is not authorized to perform: lambda:GetFunction on "
                               f"resource: {_fn('f')} because no identity-based policy allows the lambda:GetFunction "
                               f"action")
    assert e.value.status == 403
    directory.put_inline(A, "user", "u", "p", _doc({"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}))
    ctx = _ctx()
    assert authorize("lambda", "GetFunction", {"FunctionName": "f"}, ctx) is ctx


def test_self_authorizing_services_pass_through(env):
    _, _, authorize = env
    ctx = _ctx()
    assert authorize("iam", "CreateUser", {"UserName": "x"}, ctx) is ctx
    assert authorize("sts", "GetCallerIdentity", {}, ctx) is ctx


def test_explicit_deny_wins(env):
    directory, _, authorize = env
    directory.attach(A, "user", "u", "arn:aws:iam::aws:policy/AdministratorAccess")
    directory.put_inline(A, "user", "u", "d", _doc({"Effect": "Deny", "Action": "sqs:*", "Resource": "*"}))
    authorize("lambda", "ListFunctions", {}, _ctx())
    with pytest.raises(AccessDeniedException, match="explicit deny in an identity-based policy"):
        authorize("sqs", "SendMessage", {"QueueUrl": f"https://h/{A}/q"}, _ctx())


def test_cross_account_needs_both_policies_and_moves_the_scope(env):
    directory, facts, authorize = env
    arn = _fn("f", A)
    with pytest.raises(AccessDeniedException, match="because no identity-based policy allows"):
        authorize("lambda", "Invoke", {"FunctionName": arn}, _ctx(B))
    directory.put_inline(B, "user", "u", "p", _doc({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                    "Resource": "*"}))
    with pytest.raises(AccessDeniedException, match="because no resource-based policy allows"):
        authorize("lambda", "Invoke", {"FunctionName": arn}, _ctx(B))
    facts.policies[(A, "f", None)] = _doc({"Sid": "b", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
                                           "Action": "lambda:InvokeFunction", "Resource": arn})
    facts.generation += 1
    ctx = authorize("lambda", "Invoke", {"FunctionName": arn}, _ctx(B))
    assert ctx.account_id == A and ctx.caller.account_id == B
    # the grant names the unqualified function: an alias has its own policy
    with pytest.raises(AccessDeniedException):
        authorize("lambda", "Invoke", {"FunctionName": arn, "Qualifier": "prod"}, _ctx(B))
    # SQS has no queue policies here: another account's queue is always refused
    directory.put_inline(B, "user", "u", "s", _doc({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}))
    with pytest.raises(AccessDeniedException, match="no resource-based policy"):
        authorize("sqs", "SendMessage", {"QueueUrl": f"https://h/{A}/q"}, _ctx(B))


def test_resource_tags_reach_conditions(env):
    directory, facts, authorize = env
    directory.put_inline(A, "user", "u", "p", _doc({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                    "Resource": "*",
                                                    "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}}))
    facts.tags[(A, "blue")] = {"team": "blue"}
    facts.tags[(A, "red")] = {"team": "red"}
    authorize("lambda", "Invoke", {"FunctionName": "blue"}, _ctx())
    authorize("lambda", "Invoke", {"FunctionName": "blue", "Qualifier": "7"}, _ctx())   # the function's tags
    with pytest.raises(AccessDeniedException):
        authorize("lambda", "Invoke", {"FunctionName": "red"}, _ctx())


def test_caches_hit_until_a_generation_moves(env):
    directory, facts, authorize = env
    directory.put_inline(A, "user", "u", "p", _doc({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}))
    for _ in range(5):
        authorize("lambda", "GetFunction", {"FunctionName": "f"}, _ctx())
    assert facts.reads == 1
    facts.generation += 1                  # a Lambda write: facts are read again
    authorize("lambda", "GetFunction", {"FunctionName": "f"}, _ctx())
    assert facts.reads == 2
    # an IAM write: the identity policies are read again, so a removed grant stops working at once
    before = directory.generation
    directory.delete_inline(A, "user", "u", "p")
    assert directory.generation != before
    with pytest.raises(AccessDeniedException):
        authorize("lambda", "GetFunction", {"FunctionName": "f"}, _ctx())


def test_directory_generation_moves_on_every_write(env):
    directory, _, _ = env
    seen = directory.generation
    directory.create_user(A, "v")
    assert directory.generation != seen
    seen = directory.generation
    directory.get_user(A, "v")             # reads do not move it
    assert directory.generation == seen


def test_warm_authorization_cost(env):
    """The per-request cost once policies are cached (printed; loosely bounded)."""
    directory, _, authorize = env
    directory.attach(A, "user", "u", "arn:aws:iam::aws:policy/AdministratorAccess")
    directory.put_inline(A, "user", "u", "p", _doc({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                                    "Resource": "*",
                                                    "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}}))
    ctx, params = _ctx(), {"FunctionName": "f"}
    authorize("lambda", "Invoke", params, ctx)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        authorize("lambda", "Invoke", params, ctx)
    per_call = (time.perf_counter() - t0) / n
    print(f"warm authorize: {per_call * 1e6:.1f} us per request")
    assert per_call < 0.002


def test_kms_key_operations_are_left_to_key_policies(env):
    _, _, authorize = env
    ctx = _ctx()
    assert authorize("kms", "Encrypt", {"KeyId": "k"}, ctx) is ctx      # kms/service.py decides
    with pytest.raises(AccessDeniedException, match="kms:CreateKey on resource: \\*"):
        authorize("kms", "CreateKey", {}, ctx)
