"""Property tests (hypothesis) of the policy engine: the invariants AWS's evaluation logic implies."""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings, strategies as st

from lambdalet.iam.conditions import ContextValues
from lambdalet.iam.policy import ALLOW, EXPLICIT_DENY, Principal, is_allowed, parse_policy, statement_applies

A, B = "111122223333", "444455556666"
FN = f"arn:aws:lambda:us-east-1:{A}:function:"
CONCRETE_ACTIONS = ["lambda:GetFunction", "lambda:InvokeFunction", "lambda:DeleteFunction", "iam:CreateUser",
                    "sts:AssumeRole"]
ACTION_PATTERNS = CONCRETE_ACTIONS + ["lambda:*", "*", "lambda:Get*", "iam:*", "LAMBDA:invoke*", "lambda:?etFunction"]
CONCRETE_RESOURCES = [FN + "f", FN + "g", FN + "f:PROD", f"arn:aws:iam::{A}:user/bob", "*"]
RESOURCE_PATTERNS = CONCRETE_RESOURCES + [f"arn:aws:lambda:*:{A}:function:f*", "arn:aws:lambda:*:*:*", FN + "?",
                                          f"arn:aws:iam::{A}:user/${{aws:username}}"]
CONDITIONS = [
    None,
    {"StringEquals": {"aws:ResourceTag/team": "blue"}},
    {"StringNotEquals": {"aws:ResourceTag/team": "blue"}},
    {"StringLikeIfExists": {"aws:RequestTag/env": "prod-*"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}},
    {"ForAnyValue:StringLike": {"aws:TagKeys": ["t*"]}},
    {"Null": {"aws:RequestTag/env": "true"}},
    {"NumericLessThan": {"lambda:Count": "5"}},
    {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::bucket-*"}},
    {"StringEquals": {"aws:PrincipalAccount": A}},
]
CONTEXT_VALUES = {
    "aws:ResourceTag/team": st.sampled_from(["blue", "red"]),
    "aws:RequestTag/env": st.sampled_from(["prod-1", "dev"]),
    "aws:SourceIp": st.sampled_from(["10.1.2.3", "192.0.2.9", "203.0.113.1", "2001:db8::1"]),
    "aws:SecureTransport": st.booleans(),
    "aws:TagKeys": st.lists(st.sampled_from(["env", "team", "owner"]), max_size=3, unique=True),
    "lambda:Count": st.integers(0, 10),
    "aws:SourceArn": st.sampled_from(["arn:aws:s3:::bucket-a", "arn:aws:s3:::other"]),
}


def one_or_list(values):
    return st.one_of(st.sampled_from(values), st.lists(st.sampled_from(values), min_size=1, max_size=3))


@st.composite
def statements(draw, effect=None, principal=False):
    s = {"Effect": effect or draw(st.sampled_from(["Allow", "Deny"]))}
    s["NotAction" if draw(st.booleans()) and draw(st.booleans()) else "Action"] = draw(one_or_list(ACTION_PATTERNS))
    s["NotResource" if draw(st.booleans()) and draw(st.booleans()) else "Resource"] = draw(one_or_list(RESOURCE_PATTERNS))
    cond = draw(st.sampled_from(CONDITIONS))
    if cond:
        s["Condition"] = cond
    if principal:
        s["Principal"] = draw(st.sampled_from([
            "*", {"AWS": A}, {"AWS": f"arn:aws:iam::{A}:user/bob"}, {"AWS": f"arn:aws:iam::{B}:root"},
            {"AWS": f"arn:aws:iam::{B}:user/carol"}, {"Service": "s3.amazonaws.com"},
            {"AWS": f"arn:aws:iam::{A}:role/app"}]))
    return s


def policy_docs(principal=False, min_size=0):
    return st.lists(st.lists(statements(principal=principal), min_size=1, max_size=3)
                    .map(lambda sts: {"Version": "2012-10-17", "Statement": sts}), min_size=min_size, max_size=3)


@st.composite
def requests(draw):
    who = draw(st.sampled_from([f"arn:aws:iam::{A}:user/bob", f"arn:aws:iam::{B}:user/carol",
                                f"arn:aws:sts::{A}:assumed-role/app/s1"]))
    ctx = {k: draw(v) for k, v in CONTEXT_VALUES.items() if draw(st.booleans())}
    return who, draw(st.sampled_from(CONCRETE_ACTIONS)), draw(st.sampled_from(CONCRETE_RESOURCES)), ctx


def decide(req, identity, resource=None):
    who, action, res, ctx = req
    principal = Principal.from_arn(who)
    ids = [parse_policy(d, "identity", label=f"p{i}") for i, d in enumerate(identity)]
    rp = parse_policy(resource, "resource", label="rp") if resource else None
    return is_allowed(principal, action, res, ids, rp, A, ctx).effect


def matches(stmt: dict, req) -> bool:
    who, action, res, ctx = req
    p = parse_policy({"Version": "2012-10-17", "Statement": [stmt]}, "identity")
    principal = Principal.from_arn(who)
    from lambdalet.iam.policy import build_context
    return statement_applies(p.statements[0], action, res, build_context(principal, ctx), True)


SETTINGS = settings(max_examples=300, deadline=None)
pytestmark = pytest.mark.slow   # 300 examples a property: minutes in all


@SETTINGS
@given(requests(), policy_docs(), st.one_of(st.none(), policy_docs(principal=True, min_size=1).map(lambda d: d[0])),
       statements(effect="Deny"))
def test_adding_a_deny_never_allows(req, identity, resource, deny):
    before = decide(req, identity, resource)
    after = decide(req, identity + [{"Version": "2012-10-17", "Statement": [deny]}], resource)
    if before != ALLOW:
        assert after != ALLOW
    if matches(deny, req):
        assert after == EXPLICIT_DENY


@SETTINGS
@given(requests(), policy_docs(), statements(effect="Allow"))
def test_adding_an_allow_never_denies_what_was_allowed(req, identity, allow):
    before = decide(req, identity)
    after = decide(req, identity + [{"Version": "2012-10-17", "Statement": [allow]}])
    if before == ALLOW:
        assert after == ALLOW
    if before == EXPLICIT_DENY:
        assert after == EXPLICIT_DENY


@SETTINGS
@given(requests(), policy_docs(), st.one_of(st.none(), policy_docs(principal=True, min_size=1).map(lambda d: d[0])),
       st.sampled_from(["Allow", "Deny"]), st.sampled_from(["sqs:SendMessage", "logs:*", "s3:Get*"]))
def test_an_unrelated_statement_changes_nothing(req, identity, resource, effect, action):
    unrelated = {"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": action, "Resource": "*"}]}
    assert decide(req, identity + [unrelated], resource) == decide(req, identity, resource)


@SETTINGS
@given(requests(), one_or_list(ACTION_PATTERNS), one_or_list(RESOURCE_PATTERNS))
def test_notaction_is_the_complement_of_action(req, actions, resources):
    with_action = {"Effect": "Allow", "Action": actions, "Resource": resources}
    with_not = {"Effect": "Allow", "NotAction": actions, "Resource": resources}
    if matches({"Effect": "Allow", "Action": "*", "Resource": resources}, req):
        assert matches(with_action, req) != matches(with_not, req)
    else:
        assert not matches(with_action, req) and not matches(with_not, req)


@SETTINGS
@given(requests(), one_or_list(ACTION_PATTERNS), one_or_list([r for r in RESOURCE_PATTERNS if "${" not in r]))
def test_notresource_is_the_complement_of_resource(req, actions, resources):
    with_res = {"Effect": "Allow", "Action": actions, "Resource": resources}
    with_not = {"Effect": "Allow", "Action": actions, "NotResource": resources}
    if matches({"Effect": "Allow", "Action": actions, "Resource": "*"}, req):
        assert matches(with_res, req) != matches(with_not, req)
    else:
        assert not matches(with_res, req) and not matches(with_not, req)


@SETTINGS
@given(requests(), policy_docs(min_size=1))
def test_splitting_or_merging_policies_changes_nothing(req, identity):
    merged = [{"Version": "2012-10-17", "Statement": [s for d in identity for s in d["Statement"]]}]
    split = [{"Version": "2012-10-17", "Statement": [s]} for d in identity for s in d["Statement"]]
    assert decide(req, identity) == decide(req, merged) == decide(req, split)


@SETTINGS
@given(requests(), policy_docs(min_size=1))
def test_action_case_does_not_matter(req, identity):
    def shout(doc):
        doc = copy.deepcopy(doc)
        for s in doc["Statement"]:
            for key in ("Action", "NotAction"):
                if key in s:
                    s[key] = [a.upper() for a in s[key]] if isinstance(s[key], list) else s[key].upper()
        return doc
    assert decide(req, [shout(d) for d in identity]) == decide(req, identity)


@SETTINGS
@given(requests(), policy_docs(), policy_docs(principal=True, min_size=1).map(lambda d: d[0]))
def test_cross_account_needs_both_sides(req, identity, resource):
    who, action, res, ctx = req
    if not who.startswith(f"arn:aws:iam::{B}:"):
        return
    both = decide(req, identity, resource)
    if both == ALLOW:
        principal = Principal.from_arn(who)
        ids = [parse_policy(d, "identity") for d in identity]
        assert is_allowed(principal, action, res, ids, None, A, ctx).effect != ALLOW   # resource side missing
        rp = parse_policy(resource, "resource")
        assert is_allowed(principal, action, res, [], rp, A, ctx).effect != ALLOW      # identity side missing


def test_context_values_are_case_insensitive_keys():
    c = ContextValues({"aws:SourceIp": "1.2.3.4"})
    assert c.get("AWS:SOURCEIP") == ("1.2.3.4",)
