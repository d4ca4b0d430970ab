"""Every operation in botocore's Organizations model is routed and answered in AWS's shapes.

As test_model_coverage.py does for Lambda: a minimal request per operation (required members only,
values that respect the model) must succeed or fail with one of that operation's modelled errors —
never an unknown route, a 5xx or a stack trace. Runs against a server of its own, with the
organization created (so operations get past AWSOrganizationsNotInUseException).
"""
from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdalet.api.protocol import load_service_model

MODEL = load_service_model("organizations")
IS_ROOT = os.geteuid() == 0

# Values by shape name (the model's ids all have patterns of their own).
BY_SHAPE = {
    "AccountId": "123456789012",
    "ChildId": "123456789012",
    "CreateAccountName": "conformance",
    "CreateAccountRequestId": "car-0123456789abcdef",
    "Email": "conformance@example.com",
    "HandshakeId": "h-0123456789",
    "OrganizationalUnitId": "ou-abcd-0123456789",
    "ParentId": "r-abcd",
    "PolicyId": "p-0123456789",
    "PolicyTargetId": "123456789012",
    "ResponsibilityTransferId": "rt-0123456789",
    "RootId": "r-abcd",
    "ServicePrincipal": "lambda.amazonaws.com",
    "TaggableResourceId": "123456789012",
    "TagKey": "conformance",
    "PolicyContent": '{"Version":"2012-10-17","Statement":[]}',
    "ResourcePolicyContent": '{"Version":"2012-10-17","Statement":[]}',
}


def build(shape):
    if shape.name in BY_SHAPE:
        return BY_SHAPE[shape.name]
    t = shape.type_name
    if t == "structure":
        return {m: build(shape.members[m]) for m in shape.required_members}
    if t == "list":
        return [build(shape.member) for _ in range(max(shape.metadata.get("min", 0), 1))]
    if t == "map":
        return {"conformance": build(shape.value)}
    if t == "string":
        return shape.enum[0] if shape.enum else "conformance"[:shape.metadata.get("max", 64)]
    if t in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1)
    if t == "boolean":
        return False
    if t == "timestamp":
        return dt.datetime.now(dt.timezone.utc)
    raise AssertionError(f"unhandled shape type {t}")


def minimal_request(op_name):
    op = MODEL.operation_model(op_name)
    return build(op.input_shape) if op.input_shape is not None else {}


def _check_value(shape, value, path):
    t = shape.type_name
    if t == "structure":
        for k, v in value.items():
            _check_value(shape.members[k], v, f"{path}.{k}")
    elif t == "list":
        for i, v in enumerate(value):
            _check_value(shape.member, v, f"{path}[{i}]")
    elif t == "string":
        if shape.enum:
            assert value in shape.enum, path
        assert shape.metadata.get("min", 0) <= len(value) <= shape.metadata.get("max", 10**9), (path, value)
        pat = shape.metadata.get("pattern")
        if pat and "\\p{" not in pat:
            assert re.search(pat, value), f"{path}={value!r} does not match {pat!r}"


OPERATIONS = sorted(MODEL.operation_names)


@pytest.mark.parametrize("op_name", OPERATIONS)
def test_minimal_requests_respect_the_model(op_name):
    op = MODEL.operation_model(op_name)
    if op.input_shape is not None:
        _check_value(op.input_shape, minimal_request(op_name), op_name)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import harness
    srv = harness.LambdaletServer(tmp_path_factory.mktemp("lambdalet-orgs-conformance"),
                                   () if IS_ROOT else ("--sandbox", "process"))
    try:
        srv.start()
    except harness.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    orgs = srv.client("organizations", config=Config(parameter_validation=False, retries={"total_max_attempts": 1},
                                                     read_timeout=30))
    orgs.create_organization(FeatureSet="ALL")
    yield orgs
    srv.stop()
    if srv.leaked:
        pytest.fail("server teardown: " + "; ".join(srv.leaked), pytrace=False)


@pytest.mark.parametrize("op_name", OPERATIONS)
def test_operation_is_routed_and_answers_modelled_errors(client, op_name):
    op = MODEL.operation_model(op_name)
    modelled = {e.name for e in op.error_shapes}
    try:
        resp = getattr(client, xform_name(op_name))(**minimal_request(op_name))
    except ClientError as e:
        code = e.response["Error"].get("Code", "")
        status = e.response["ResponseMetadata"].get("HTTPStatusCode")
        message = e.response["Error"].get("Message", "")
        what = f"{op_name} -> HTTP {status} {code}: {message!r}"
        assert code != "UnknownOperationException", "not routed: " + what
        assert "Traceback" not in message and 'File "' not in message, "stack trace: " + what
        assert status is not None and status < 500, "server error: " + what
        assert code in modelled, f"error code not modelled for {op_name} (modelled: {sorted(modelled)}): " + what
        return
    assert 200 <= resp["ResponseMetadata"]["HTTPStatusCode"] < 300, op_name
