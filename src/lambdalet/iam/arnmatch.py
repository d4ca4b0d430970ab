"""Wildcard and ARN matching as IAM does it. Pure functions, no I/O.

- `glob_match(pattern, value, ignore_case=False)`: `*` matches any run of characters (including
  none, including `:` and `/`), `?` exactly one character; everything else is literal.
- `arn_match(pattern, value)`: ARNs are compared component by component (partition, service,
  region, account); the resource part — everything after the fifth colon, colons included — is one
  component. Each component may hold wildcards, which never cross into another component. This is
  AWS's rule for `ArnLike`/`ArnEquals` and for the `Resource` element. A pattern that is not an ARN
  (e.g. `*`) is matched against the whole value.
"""
from __future__ import annotations

import functools
import re

ARN_PARTS = 6


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    return _compile(pattern, ignore_case).fullmatch(value) is not None


def split_arn(arn: str) -> list[str] | None:
    """['arn', partition, service, region, account, resource] or None if `arn` is not an ARN."""
    parts = arn.split(":", ARN_PARTS - 1)
    if len(parts) != ARN_PARTS or parts[0] != "arn":
        return None
    return parts


def arn_match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    p = split_arn(pattern)
    if p is None:
        return glob_match(pattern, value)
    v = split_arn(value)
    if v is None:
        return False
    return all(glob_match(pc, vc) for pc, vc in zip(p, v))


def action_match(pattern: str, action: str) -> bool:
    """`service:Action` patterns; case-insensitive, wildcards allowed anywhere."""
    return glob_match(pattern, action, ignore_case=True)
