"""The one reading of a Lambda FunctionName member: a name, a partial ARN (123456789012:function:name)
or a full ARN, each maybe qualified (:version or :alias). Authorization (iam/authz.py) and the
services (services/arns.py) both read it here, so the resource a decision is about is always the
resource the operation then acts on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_REGION = r"(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
FUNCTION_REF_RE = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?"
    rf"(?:(?P<region>{_REGION}):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?")


@dataclass(frozen=True)
class FunctionRefParts:
    name: str
    region: str | None = None        # None: the caller's
    account: str | None = None       # None: the caller's
    qualifier: str | None = None


def split_function_ref(value: str) -> FunctionRefParts | None:
    """The parts of a FunctionName, None when it is not one Lambda accepts (no length checks here)."""
    m = FUNCTION_REF_RE.fullmatch(value)
    if m is None:
        return None
    return FunctionRefParts(m["name"], m["region"], m["account"], m["qualifier"])
