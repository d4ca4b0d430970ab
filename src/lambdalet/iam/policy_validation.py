"""What IAM refuses when a policy is stored, beyond the grammar iam/policy.py parses.

IAM User Guide, "IAM JSON policy element reference" and "IAM and AWS STS quotas":
- `Resource` / `NotResource` values are `*` or ARNs (wildcards and policy variables allowed inside);
  anything else is MalformedPolicyDocument.
- `Sid` in identity-based policies is alphanumeric only ([0-9A-Za-z]*).
- Sizes, counted without white space: managed policy 6,144 characters; inline policies of a user
  2,048, of a role 10,240, of a group 5,120 (all of the principal's inline policies together); a
  role trust policy 2,048. Past them: LimitExceeded, in IAM's wording.
"""
from __future__ import annotations

import re

from lambdalet.iam.policy import MalformedPolicy, Policy, parse_policy

MANAGED_POLICY_CHARS = 6144
INLINE_CHARS = {"user": 2048, "role": 10240, "group": 5120}
TRUST_POLICY_CHARS = 2048
_SID = re.compile(r"[0-9A-Za-z]*")
_WHITESPACE = re.compile(r"\s+")


def policy_size(document: str) -> int:
    """Characters IAM counts toward a quota: white space is not counted."""
    return len(_WHITESPACE.sub("", document))


def _check_resources(values: tuple[str, ...] | None) -> None:
    for value in values or ():
        if value == "*":
            continue
        if not value.startswith("arn:"):
            raise MalformedPolicy(f'Resource {value} must be in ARN format or "*".')
        parts = value.split(":", 5)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise MalformedPolicy("Resource vendor must be fully qualified and cannot contain regexes.")


def check_identity_document(document: str) -> Policy:
    """Parse an identity-based policy (managed, inline, SCP) as IAM validates it on write."""
    policy = parse_policy(document, "identity")
    for st in policy.statements:
        if st.sid and not _SID.fullmatch(st.sid):
            raise MalformedPolicy("Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the "
                                  "regular expression [0-9A-Za-z]*")
        _check_resources(st.resource)
        _check_resources(st.not_resource)
    return policy


def managed_quota_error(document: str) -> str | None:
    if policy_size(document) > MANAGED_POLICY_CHARS:
        return f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_CHARS}"
    return None


def inline_quota_error(ptype: str, name: str, documents: list[str]) -> str | None:
    """`documents`: every inline policy the principal would have (the new one included)."""
    limit = INLINE_CHARS[ptype]
    if sum(policy_size(d) for d in documents) > limit:
        return f"Maximum policy size of {limit} bytes exceeded for {ptype} {name}"
    return None


def trust_quota_error(document: str) -> str | None:
    if policy_size(document) > TRUST_POLICY_CHARS:
        return f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_CHARS}"
    return None
