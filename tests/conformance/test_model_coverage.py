"""Every operation in botocore's Lambda model is routed and answered in AWS's shapes.

For each operation we send a minimal request (required members only, dummy values that respect the
model's lengths/ranges/enums, aimed at functions and resources that do not exist) and accept either
a success or a ClientError whose code is one of that operation's modelled errors. Never an unknown
route, never a 5xx crash, never a stack trace.
"""
from __future__ import annotations

import datetime as dt
import re

import botocore.session
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError

MODEL = botocore.session.get_session().get_service_model("lambda")
REGION, ACCOUNT = "us-east-1", "000000000000"
MISSING = "conformance-missing"
FN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{MISSING}"

# Values by member name, for members whose meaning matters more than their shape.
BY_NAME = {
    "FunctionName": MISSING,
    "Qualifier": "1",
    "LayerName": MISSING,
    "VersionNumber": 1,
    "StatementId": "conformance-sid",
    "Action": "lambda:InvokeFunction",
    "Principal": "s3.amazonaws.com",
    "Resource": FN_ARN,
    "ResourceArn": FN_ARN,
    "UUID": "00000000-0000-0000-0000-000000000000",
    "CodeSigningConfigArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:csc-0123456789abcdef0",
    "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{MISSING}:1",
    "DurableExecutionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{MISSING}:1/durable-execution/x/y",
    "CapacityProviderName": MISSING,
    "Role": f"arn:aws:iam::{ACCOUNT}:role/{MISSING}",
    "FunctionVersion": "1",
    "Name": "conformance-alias",
    "CallbackId": "Y29uZm9ybWFuY2UtY2FsbGJhY2s=",
    "CheckpointToken": "Y29uZm9ybWFuY2UtdG9rZW4=",
    "SigningProfileVersionArns": [f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/p/abcdefghij"],
    "SubnetIds": ["subnet-0123456789abcdef0"],
    "SecurityGroupIds": ["sg-0123456789abcdef0"],
    "CapacityProviderOperatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{MISSING}",
    "Policy": '{"Version":"2012-10-17","Statement":[]}',
    "TagKeys": ["conformance"],
}

# Values for one operation's top-level members, where the same member name is constrained differently.
BY_OPERATION = {
    ("AddLayerVersionPermission", "Action"): "lambda:GetLayerVersion",
    ("AddLayerVersionPermission", "Principal"): "*",
}


def _string(shape, name):
    if shape.enum:
        return shape.enum[0]
    lo = shape.metadata.get("min", 0)
    hi = shape.metadata.get("max", 64)
    pattern = shape.metadata.get("pattern", "")
    if name.endswith("Arn") or pattern.startswith("arn:"):
        value = FN_ARN
    else:
        value = "conformance"
    if len(value) < lo:
        value += "x" * (lo - len(value))
    return value[:hi] if hi else value


def build(shape, name="", depth=0):
    if name in BY_NAME:
        return BY_NAME[name]
    t = shape.type_name
    if t == "structure":
        return {m: build(shape.members[m], m, depth + 1) for m in shape.required_members}
    if t == "list":
        n = shape.metadata.get("min", 0)
        return [build(shape.member, name, depth + 1) for _ in range(max(n, 1 if depth == 1 else n))]
    if t == "map":
        n = max(shape.metadata.get("min", 0), 1 if depth == 1 else 0)
        return {f"conformance{i}": build(shape.value, name, depth + 1) for i in range(n)}
    if t == "string":
        return _string(shape, name)
    if t in ("integer", "long"):
        lo, hi = shape.metadata.get("min", 1), shape.metadata.get("max")
        v = max(lo, 1)
        return min(v, hi) if hi is not None else v
    if t in ("double", "float"):
        return float(shape.metadata.get("min", 0.5))
    if t == "boolean":
        return False
    if t == "blob":
        return b"x"
    if t == "timestamp":
        return dt.datetime.now(dt.timezone.utc)
    raise AssertionError(f"unhandled shape type {t}")


def minimal_request(op_name):
    op = MODEL.operation_model(op_name)
    if op.input_shape is None:
        return {}
    params = build(op.input_shape)
    for (name, member), value in BY_OPERATION.items():
        if name == op_name and member in params:
            params[member] = value
    return params


def _check_value(shape, value, path):
    """Our dummy values must respect the model, or the test would be testing our own mistakes."""
    t = shape.type_name
    if t == "structure":
        for k, v in value.items():
            _check_value(shape.members[k], v, f"{path}.{k}")
    elif t == "list":
        assert len(value) >= shape.metadata.get("min", 0), path
        for i, v in enumerate(value):
            _check_value(shape.member, v, f"{path}[{i}]")
    elif t == "string":
        if shape.enum:
            assert value in shape.enum, path
        assert shape.metadata.get("min", 0) <= len(value) <= shape.metadata.get("max", 10**9), (path, value)
        pat = shape.metadata.get("pattern")
        if pat and "\\p{" not in pat:
            assert re.fullmatch(pat, value), f"{path}={value!r} does not match {pat!r}"
    elif t in ("integer", "long", "double", "float"):
        assert shape.metadata.get("min", value) <= value <= shape.metadata.get("max", value), path


OPERATIONS = sorted(MODEL.operation_names)


@pytest.mark.parametrize("op_name", OPERATIONS)
def test_minimal_requests_respect_the_model(op_name):
    op = MODEL.operation_model(op_name)
    if op.input_shape is not None:
        _check_value(op.input_shape, minimal_request(op_name), op_name)


@pytest.fixture(scope="module")
def client(server):
    lam = server.client(config=Config(parameter_validation=False, retries={"total_max_attempts": 1},
                                      read_timeout=30))
    yield lam
    for name in (MISSING,):  # in case a create succeeded
        try:
            lam.delete_function(FunctionName=name)
        except ClientError:
            pass


def _drain(resp):
    for value in list(resp.values()):
        if hasattr(value, "read"):
            value.read()
        elif hasattr(value, "__iter__") and hasattr(value, "_event_generator"):
            for _ in value:
                pass


@pytest.mark.parametrize("op_name", OPERATIONS)
def test_operation_is_routed_and_answers_modelled_errors(client, op_name):
    op = MODEL.operation_model(op_name)
    params = minimal_request(op_name)
    modelled = {e.name for e in op.error_shapes}
    try:
        resp = getattr(client, xform_name(op_name))(**params)
    except ClientError as e:
        code = e.response["Error"].get("Code", "")
        status = e.response["ResponseMetadata"].get("HTTPStatusCode")
        message = e.response["Error"].get("Message", "")
        what = f"{op_name} {op.http['method']} {op.http['requestUri']} -> HTTP {status} {code}: {message!r}"
        assert code != "UnknownOperationException", "not routed: " + what
        assert not (status == 404 and not code), "unknown route: " + what
        assert "Traceback" not in message and 'File "' not in message, "stack trace: " + what
        assert status is not None and status < 500, "server error: " + what
        assert code in modelled, f"error code not modelled for {op_name} (modelled: {sorted(modelled)}): " + what
        return
    status = resp["ResponseMetadata"]["HTTPStatusCode"]
    assert 200 <= status < 300, (op_name, status)
    _drain(resp)
