"""IAM's entry point for another service that evaluates a policy itself: "may this principal do this,
under this resource policy?". kms/, invoke/, queues/ and events/ import from here (and iam.authz's Authorizer
for decisions that read the caller's identity policies), never the engine in iam/policy.py, so the
evaluation logic can change behind these few calls.

Both decisions here are ones a resource-based policy must grant even within its own account
(`resource_policy_required`): a role's trust policy (sts:AssumeRole by a service principal) and a KMS
key policy when no Authorizer is wired (then the identity side allows everything).
"""
from __future__ import annotations

from typing import Any, Mapping

from lambdalet.iam.authz import principal_of, request_context
from lambdalet.iam.policy import (ADMINISTRATOR_ACCESS, EXPLICIT_DENY, IMPLICIT_DENY, Decision, MalformedPolicy,
                                  Policy, Principal, is_allowed, parse_policy)
from lambdalet.models.context import Caller

__all__ = ["EXPLICIT_DENY", "IMPLICIT_DENY", "Decision", "MalformedPolicy", "check_resource_policy",
           "key_policy_decision", "request_context", "service_may_assume"]

_IDENTITY_ALLOWS_ALL = parse_policy(ADMINISTRATOR_ACCESS, label="identity")


def check_resource_policy(document: str, label: str) -> None:
    """MalformedPolicy unless `document` is a well-formed resource-based policy (write-time check)."""
    parse_policy(document, "resource", label=label)


def service_may_assume(service: str, role_arn: str, trust: Policy, account_id: str,
                       context: Mapping[str, Any]) -> Decision:
    """May the service principal `service` (e.g. lambda.amazonaws.com) assume the role, by its trust
    policy alone? `context`: the request's condition keys (aws:SourceAccount, aws:SourceArn, ...)."""
    return is_allowed(Principal.from_arn(service), "sts:AssumeRole", role_arn, (), trust, account_id, context,
                      resource_policy_required=True)


def key_policy_decision(caller: Caller, action: str, resource_arn: str, policy: str, resource_account: str,
                        context: Mapping[str, Any]) -> Decision:
    """A KMS key policy's decision when no IAM identity policies are consulted: the policy must grant
    (naming the account suffices, as identity allows all). A malformed stored policy grants nothing."""
    try:
        parsed: Policy | None = parse_policy(policy, "resource", label="key-policy")
    except MalformedPolicy:
        parsed = None
    return is_allowed(principal_of(caller), action, resource_arn, (_IDENTITY_ALLOWS_ALL,), parsed, resource_account,
                      context, resource_policy_required=True)
