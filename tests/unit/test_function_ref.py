"""One reading of FunctionName (models/function_ref.py) for authorization and the services: the
resource an IAM decision is about is the function the operation then acts on."""
from __future__ import annotations

import uuid

import pytest

from lambdalet.iam.authz import lambda_request
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import AccessDeniedException
from lambdalet.services.arns import Scope, parse_function_ref

A, B, REGION = "111111111111", "222222222222", "us-east-1"
CTX = RequestContext(Caller(A, f"arn:aws:iam::{A}:user/u", "AKIA1111"), REGION, str(uuid.uuid4()), "https://localhost")


@pytest.mark.parametrize("value, want", [
    ("f", f"arn:aws:lambda:{REGION}:{A}:function:f"),
    (f"{B}:function:f", f"arn:aws:lambda:{REGION}:{B}:function:f"),
    (f"arn:aws:lambda:{REGION}:{B}:function:f", f"arn:aws:lambda:{REGION}:{B}:function:f"),
    # Accepted by the service without a region or a partition: before, authorization read the account
    # as a region, or the whole value as a name, and decided about a function of the caller's account.
    (f"arn:aws:lambda:{B}:function:f", f"arn:aws:lambda:{REGION}:{B}:function:f"),
    (f"arn::lambda:{REGION}:{B}:function:f", f"arn:aws:lambda:{REGION}:{B}:function:f"),
])
def test_authorization_decides_about_the_function_the_service_reads(value, want):
    _, arn, _ = lambda_request("GetFunction", {"FunctionName": value}, CTX)
    assert arn == want
    account = want.split(":")[4]
    if account == A:
        assert parse_function_ref(Scope(A, REGION), value).name == "f"
    else:      # the service, in the caller's scope, refuses another account's function the same way
        with pytest.raises(AccessDeniedException):
            parse_function_ref(Scope(A, REGION), value, action="GetFunction")


def test_qualifier_is_read_the_same_way():
    _, arn, _ = lambda_request("GetFunction", {"FunctionName": "f:prod"}, CTX)
    assert arn == f"arn:aws:lambda:{REGION}:{A}:function:f:prod"
    assert parse_function_ref(Scope(A, REGION), "f:prod").qualifier == "prod"
