"""The policy engine against AWS-documented evaluation examples (tests/unit/policy_examples.json)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdalet.iam.policy import Principal, is_allowed, parse_policy

EXAMPLES = json.loads((Path(__file__).with_name("policy_examples.json")).read_text())["examples"]


def decide(ex: dict):
    who = Principal.from_arn(ex["principal"], role_arn=ex.get("role_arn"))
    identity = [parse_policy(p, "identity", label=f"identity-{i}") for i, p in enumerate(ex["identity_policies"])]
    resource_policy = ex.get("resource_policy")
    if resource_policy is not None:
        kind = "trust" if ex["action"] == "sts:AssumeRole" else "resource"
        resource_policy = parse_policy(resource_policy, kind, label="resource")
    account = ex.get("resource_account")
    if account is None:
        parts = ex["resource"].split(":")
        account = parts[4] if len(parts) > 5 and parts[4].isdigit() else None
    return is_allowed(who, ex["action"], ex["resource"], identity, resource_policy, account, ex.get("context"),
                      resource_policy_required=ex["action"] == "sts:AssumeRole")


@pytest.mark.parametrize("ex", EXAMPLES, ids=[e["name"] for e in EXAMPLES])
def test_documented_example(ex):
    assert decide(ex).effect == ex["expect"]


def test_examples_cover_every_outcome():
    assert {e["expect"] for e in EXAMPLES} == {"Allow", "ExplicitDeny", "ImplicitDeny"}
    assert len(EXAMPLES) >= 60
