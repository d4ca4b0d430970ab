"""Condition operators, policy variables, ARN/wildcard matching and document validation."""
from __future__ import annotations

import pytest

from lambdalet.iam.arnmatch import action_match, arn_match, glob_match
from lambdalet.iam.conditions import ContextValues, evaluate_condition_block, substitute, wildcard_match
from lambdalet.iam.policy import MalformedPolicy, Principal, parse_policy


def ev(block, **ctx):
    return evaluate_condition_block(block, ContextValues({k.replace("__", ":").replace("_S_", "/"): v
                                                           for k, v in ctx.items()}))


@pytest.mark.parametrize("block,ctx,want", [
    ({"StringEquals": {"k:a": ["x", "y"]}}, {"k__a": "y"}, True),
    ({"StringEquals": {"k:a": "x"}}, {}, False),
    ({"StringNotEquals": {"k:a": ["x", "y"]}}, {"k__a": "y"}, False),      # negated: NOR over values
    ({"StringNotEquals": {"k:a": ["x", "y"]}}, {"k__a": "z"}, True),
    ({"StringNotEquals": {"k:a": "x"}}, {}, True),                        # negated + missing key: true
    ({"StringNotLike": {"k:a": "x*"}}, {}, True),
    ({"StringEqualsIfExists": {"k:a": "x"}}, {}, True),
    ({"StringLike": {"k:a": "a?c*"}}, {"k__a": "abcdef"}, True),
    ({"StringLike": {"k:a": "a?c*"}}, {"k__a": "ac"}, False),
    ({"NumericGreaterThan": {"k:n": "5"}}, {"k__n": 6}, True),
    ({"NumericGreaterThan": {"k:n": "5"}}, {"k__n": "abc"}, False),
    ({"NumericNotEquals": {"k:n": ["1", "2"]}}, {"k__n": 3}, True),
    ({"DateGreaterThanEquals": {"k:d": "2020-01-01T00:00:00Z"}}, {"k__d": "2020-01-01T00:00:00Z"}, True),
    ({"DateLessThan": {"k:d": "2020-01-01"}}, {"k__d": 1577836799}, True),
    ({"Bool": {"k:b": "true"}}, {"k__b": True}, True),
    ({"Bool": {"k:b": "TRUE"}}, {"k__b": False}, False),
    ({"BinaryEquals": {"k:x": "QmluYXJ5"}}, {"k__x": "QmluYXJ5"}, True),
    ({"IpAddress": {"k:ip": "203.0.113.0/24"}}, {"k__ip": "203.0.113.9"}, True),
    ({"IpAddress": {"k:ip": "2001:db8::/32"}}, {"k__ip": "2001:db8::5"}, True),
    ({"IpAddress": {"k:ip": "203.0.113.7"}}, {"k__ip": "203.0.113.7"}, True),
    ({"NotIpAddress": {"k:ip": "203.0.113.0/24"}}, {"k__ip": "not-an-ip"}, True),
    ({"ArnLike": {"k:arn": "arn:aws:lambda:*:111122223333:function:*"}},
     {"k__arn": "arn:aws:lambda:us-east-1:111122223333:function:f:1"}, True),
    ({"ArnEquals": {"k:arn": "arn:aws:lambda:*:111122223333:function:*"}},
     {"k__arn": "arn:aws:lambda:us-east-1:999999999999:function:f"}, False),
    ({"ArnNotLike": {"k:arn": "arn:aws:s3:::b*"}}, {"k__arn": "arn:aws:s3:::other"}, True),
    ({"Null": {"k:a": "true"}}, {}, True),
    ({"Null": {"k:a": "false"}}, {"k__a": "x"}, True),
    ({"Null": {"k:a": "true"}}, {"k__a": "x"}, False),
    ({"ForAllValues:StringLike": {"k:t": ["a*", "b"]}}, {"k__t": ["ab", "b"]}, True),
    ({"ForAllValues:StringLike": {"k:t": ["a*", "b"]}}, {"k__t": ["ab", "c"]}, False),
    ({"ForAllValues:StringNotEquals": {"k:t": ["x"]}}, {"k__t": ["a", "b"]}, True),
    ({"ForAnyValue:StringNotEquals": {"k:t": ["a"]}}, {"k__t": ["a"]}, False),
    ({"ForAnyValue:StringNotEquals": {"k:t": ["a"]}}, {"k__t": ["a", "b"]}, True),
    ({"ForAnyValue:StringEqualsIfExists": {"k:t": ["a"]}}, {}, True),
    ({"StringEquals": {"k:a": "x"}, "Bool": {"k:b": "true"}}, {"k__a": "x", "k__b": False}, False),   # AND
    ({"StringEquals": {"k:a": "${aws:username}"}}, {"k__a": "bob", "aws__username": "bob"}, True),
    ({"StringEquals": {"k:a": "${aws:username}"}}, {"k__a": ""}, False),        # variable with no value
    ({"StringLike": {"k:a": "${*}"}}, {"k__a": "*"}, True),                    # ${*}: a literal asterisk
    ({"StringLike": {"k:a": "${*}"}}, {"k__a": "x"}, False),
    ({"StringEquals": {"k:a": "${aws:username, 'anon'}"}}, {"k__a": "anon"}, True),
    ({"FancyOperator": {"k:a": "x"}}, {"k__a": "x"}, False),                   # unknown: never true
])
def test_operators(block, ctx, want):
    assert ev(block, **ctx) is want


def test_substitute_and_literal_wildcards():
    ctx = ContextValues({"aws:username": "a*b"})
    pat = substitute("arn:aws:iam::1:user/${aws:username}", ctx, wildcard=True)
    assert wildcard_match(pat, "arn:aws:iam::1:user/a*b")
    assert not wildcard_match(pat, "arn:aws:iam::1:user/aXXb")    # a '*' from a variable is literal
    assert substitute("${aws:missing}", ctx, wildcard=False) is None


def test_glob_and_arn_matching():
    assert glob_match("a*c", "abbbc") and not glob_match("a*c", "abbb")
    assert glob_match("A?", "ab", ignore_case=True) and not glob_match("A?", "ab")
    assert action_match("Lambda:Get*", "lambda:GetFunction") and not action_match("lambda:Get*", "iam:GetUser")
    assert arn_match("arn:aws:lambda:*:*:function:*", "arn:aws:lambda:us-east-1:1:function:f:PROD")
    assert not arn_match("arn:aws:lambda:*:function:f", "arn:aws:lambda:us-east-1:1:function:f")
    assert not arn_match("arn:aws:s3:::b", "not-an-arn")
    assert arn_match("*", "anything")


@pytest.mark.parametrize("doc,kind,message", [
    ("not json", "identity", "Syntax errors in policy."),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}, "identity",
     "Policy statement must contain actions."),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}, "identity",
     "Syntax errors in policy."),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}]},
     "identity", "Policy document should not specify a principal."),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}, "trust",
     "Missing required field Principal"),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": "*",
                                              "Resource": "*"}]}, "trust", "Has prohibited field Resource"),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "CreateUser", "Resource": "*"}]}, "identity",
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    ({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                                              "Condition": {"StringEqualz": {"a:b": "c"}}}]}, "identity",
     "Invalid Condition type : StringEqualz"),
    ({"Version": "2099-01-01", "Statement": []}, "identity", "The policy failed legacy parsing"),
    ({"Version": "2012-10-17", "Statement": [{"Sid": "a", "Effect": "Allow", "Action": "*", "Resource": "*"},
                                             {"Sid": "a", "Effect": "Allow", "Action": "*", "Resource": "*"}]},
     "identity", "Statement IDs (SID) in a single policy must be unique."),
])
def test_malformed_documents(doc, kind, message):
    with pytest.raises(MalformedPolicy) as e:
        parse_policy(doc, kind)
    assert str(e.value) == message


def test_principal_from_arn():
    p = Principal.from_arn("arn:aws:sts::111122223333:assumed-role/app/s1", "AROA1:s1")
    assert (p.kind, p.account_id, p.role_arn) == ("assumed-role", "111122223333", "arn:aws:iam::111122223333:role/app")
    ctx = p.context_keys()
    assert ctx["aws:PrincipalArn"] == "arn:aws:iam::111122223333:role/app" and "aws:username" not in ctx
    u = Principal.from_arn("arn:aws:iam::111122223333:user/div/bob", "AIDA1")
    assert u.context_keys()["aws:username"] == "bob" and u.context_keys()["aws:PrincipalType"] == "User"
    assert Principal.from_arn("lambda.amazonaws.com").kind == "service"
    assert Principal.from_arn("arn:aws:iam::111122223333:root").kind == "root"
