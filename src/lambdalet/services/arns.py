"""Function references: names, partial ARNs and full ARNs, optionally qualified, as AWS accepts them.

    my-function                                   my-function:prod
    123456789012:function:my-function             arn:aws:lambda:us-east-1:123456789012:function:my-function:7

Another account's function is reachable only when authorization allowed it (the caller's identity
policy AND the function's resource-based policy, iam/request_map.py); the service then runs with
that account as `ctx.account_id` (request_map.ResourceAccountContext), so `Scope.of(ctx)` is the
owner's and the reference parses here like a local one. A reference that still names an account
other than the scope's was not authorized and is refused as AWS refuses it (AccessDeniedException);
one to another region cannot be reached from this one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lambdalet.models.context import RequestContext
from lambdalet.models.function_ref import split_function_ref
from lambdalet.models.errors import (AccessDeniedException, InvalidParameterValueException,
                                     ResourceNotFoundException, constraint_text, validation_error)
from lambdalet.services.validation import constraint_error

PARTITION = "aws"
NAME_MAX = 64
REF_MAX = 140      # botocore's FunctionName max: a full ARN with a qualifier
REF_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
               r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?")
QUALIFIER_RE = re.compile(r"[a-zA-Z0-9$_-]{1,128}")
VERSION_RE = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class Scope:
    """Where resources live for this request: AWS partitions everything by account and region."""
    account_id: str
    region: str

    @classmethod
    def of(cls, ctx: RequestContext) -> "Scope":
        return cls(ctx.account_id, ctx.region)

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.region, self.account_id, name, qualifier)


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None = None


def function_arn(region: str, account_id: str, name: str, qualifier: str | None = None) -> str:
    arn = f"arn:{PARTITION}:lambda:{region}:{account_id}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def parse_function_ref(scope: Scope, value, *, caller_arn: str = "", action: str = "") -> FunctionRef:
    """Validate a FunctionName member and reduce it to (name, qualifier) in the caller's scope.

    CreateFunction refuses a name it cannot create (ValidationException); every other operation
    answers a name that cannot exist as AWS does: the function is not found."""
    if not isinstance(value, str) or not value:
        raise constraint_error(value, "functionName", "Member must have length greater than or equal to 1")
    creating = action == "CreateFunction"
    if len(value) > REF_MAX and creating:
        raise constraint_error(value, "functionName", f"Member must have length less than or equal to {REF_MAX}")
    m = split_function_ref(value)
    if m is None:
        if creating:
            raise constraint_error(value, "functionName", f"Member must satisfy regular expression pattern: {REF_PATTERN}")
        raise ResourceNotFoundException(f"Function not found: {function_arn(scope.region, scope.account_id, value)}")
    name = m.name
    if m.account and m.account != scope.account_id:
        resource = function_arn(m.region or scope.region, m.account, name, m.qualifier)
        raise AccessDeniedException(f"User: {caller_arn or 'caller'} is not authorized to perform: lambda:{action} "
                                    f"on resource: {resource} because no resource-based policy allows the "
                                    f"lambda:{action} action")
    if m.region and m.region != scope.region:
        raise ResourceNotFoundException(f"Functions from '{m.region}' are not reachable in this region "
                                        f"('{scope.region}')")
    if len(name) > NAME_MAX:
        if creating:      # the service's own check: AWS answers InvalidParameterValueException (recorded)
            raise InvalidParameterValueException(validation_error([constraint_text(
                value, "functionName", f"Member must have length less than or equal to {NAME_MAX}")]).message)
        raise ResourceNotFoundException(f"Function not found: {function_arn(scope.region, scope.account_id, name, m.qualifier)}")
    return FunctionRef(name, m.qualifier)


def merge_qualifier(ref: FunctionRef, qualifier) -> FunctionRef:
    """Combine a qualifier from the name with the Qualifier member; AWS refuses two that differ."""
    if qualifier is None or qualifier == "":        # the model's pattern allows an empty Qualifier
        return ref
    if not isinstance(qualifier, str) or not QUALIFIER_RE.fullmatch(qualifier):
        raise constraint_error(qualifier, "qualifier",
                               "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
    # What the pattern admits but names nothing ($latest, a$b) is simply not found, as on AWS.
    if ref.qualifier is not None and ref.qualifier != qualifier:
        raise InvalidParameterValueException(
            "The derived qualifier from the function name does not match the specified qualifier.")
    return FunctionRef(ref.name, qualifier)


def require_unqualified(ref: FunctionRef, *, allow_latest: bool = False) -> str:
    """Operations on the function itself (not a version or alias) refuse a qualified name."""
    if ref.qualifier is None or (allow_latest and ref.qualifier == "$LATEST"):
        return ref.name
    raise InvalidParameterValueException(
        "Current operation does not support versions other than $LATEST. "
        "Please set version to $LATEST or do not set a version in your ARN.")
