"""The rest-json protocol against botocore's own serializer: every operation routes back to itself,
and what botocore sends parses back into the params it was given."""
import json
from urllib.parse import parse_qsl

import pytest
from botocore.serialize import create_serializer

from lambdalet.api.protocol import RestJsonProtocol, WireRequest, load_service_model
from lambdalet.models.errors import InvalidParameterValueException, UnknownOperationException

MODEL = load_service_model("lambda")
PROTO = RestJsonProtocol(MODEL)
# Placeholder values ("name-1") route and decode, but break members' patterns: routing is tested
# without the model's constraints, which have tests of their own below.
ROUTING = RestJsonProtocol(MODEL, constraints=False)
SERIALIZER = create_serializer("rest-json", include_validation=False)


def _minimal(shape, depth=0):
    t = shape.type_name
    if t == "structure":
        return {n: _minimal(shape.members[n], depth + 1) for n in shape.required_members}
    if t == "string":
        if shape.enum:
            return shape.enum[0]
        return "arn:aws:lambda:us-east-1:000000000000:function:f" if "Arn" in shape.name else "name-1"
    if t in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if t == "boolean":
        return True
    if t == "blob":
        return b"xyz"
    if t == "list":
        return [_minimal(shape.member, depth + 1)]
    if t == "map":
        return {"k": _minimal(shape.value, depth + 1)}
    return "x"


def _wire(op, params):
    d = SERIALIZER.serialize_to_request(params, op)
    path = d["url_path"]
    query = [(k, v) for k, vs in d["query_string"].items() for v in (vs if isinstance(vs, list) else [vs])] \
        if isinstance(d["query_string"], dict) else parse_qsl(d["query_string"])
    path, _, inline = path.partition("?")
    query += parse_qsl(inline, keep_blank_values=True)
    body = d["body"] if isinstance(d["body"], bytes) else (d["body"] or "").encode()
    headers = {k.lower(): str(v) for k, v in d["headers"].items()}
    return WireRequest(d["method"], path, [(k, str(v)) for k, v in query], headers, body)


@pytest.mark.parametrize("name", MODEL.operation_names)
def test_every_operation_routes_to_itself(name):
    op = MODEL.operation_model(name)
    params = _minimal(op.input_shape) if op.input_shape else {}
    wire = _wire(op, params)
    matched, labels = ROUTING.match(wire)
    assert matched.name == name
    parsed = ROUTING.parse(matched, wire, labels)
    for key, value in params.items():
        assert parsed[key] == value, key


def test_arn_in_path_is_decoded():
    op = MODEL.operation_model("ListTags")
    arn = "arn:aws:lambda:us-east-1:000000000000:function:my-fn"
    wire = _wire(op, {"Resource": arn})
    assert "%3A" in wire.raw_path
    matched, labels = PROTO.match(wire)
    assert PROTO.parse(matched, wire, labels)["Resource"] == arn


def test_unknown_path_is_an_aws_error():
    with pytest.raises(UnknownOperationException):
        PROTO.match(WireRequest("GET", "/nope", [], {}, b""))


def test_wrong_types_and_unknown_fields_are_refused():
    op = MODEL.operation_model("CreateFunction")
    for body in ({"FunctionName": "f", "MemorySize": "big"}, {"FunctionName": "f", "Bogus": 1}, [1, 2]):
        wire = WireRequest("POST", "/2015-03-31/functions", [], {}, json.dumps(body).encode())
        with pytest.raises(InvalidParameterValueException):
            PROTO.parse(op, wire, {})
    wire = WireRequest("POST", "/2015-03-31/functions", [], {}, b"{not json")
    with pytest.raises(InvalidParameterValueException):
        PROTO.parse(op, wire, {})


def test_error_uses_the_modelled_message_member():
    from lambdalet.models.errors import ResourceNotFoundException, TooManyRequestsException
    out = PROTO.serialize_error(ResourceNotFoundException("Function not found: x"))
    assert out.status == 404 and out.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    # AWS's body holds the error shape's members only: the code travels in x-amzn-ErrorType.
    assert json.loads(out.body) == {"Type": "User", "Message": "Function not found: x"}
    out = PROTO.serialize_error(TooManyRequestsException(
        "Rate exceeded", extra={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}))
    assert json.loads(out.body)["message"] == "Rate exceeded" and out.status == 429


def test_error_bodies_carry_exactly_the_shapes_members():
    from lambdalet.models.errors import PreconditionFailedException, ValidationException
    out = PROTO.serialize_error(PreconditionFailedException("stale"))
    assert json.loads(out.body) == {"Type": "User", "message": "stale"} and out.status == 412
    # ValidationException is the request layer's, outside Lambda's model: a lower-case message only.
    out = PROTO.serialize_error(ValidationException("1 validation error detected: x"))
    assert out.status == 400 and out.headers["x-amzn-ErrorType"] == "ValidationException"
    assert json.loads(out.body) == {"message": "1 validation error detected: x"}


def _create_wire(**body):
    base = {"FunctionName": "fn", "Role": "arn:aws:iam::123456789012:role/r", "Code": {"ZipFile": "UEs="}}
    base.update(body)
    return WireRequest("POST", "/2015-03-31/functions", [], {}, json.dumps({k: v for k, v in base.items()
                                                                            if v is not None}).encode())


@pytest.mark.parametrize("body, message", [
    ({"Role": "r1"}, "1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: Member must "
                     "satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"),
    ({"Role": None}, "1 validation error detected: Value null at 'role' failed to satisfy constraint: "
                     "Member must not be null"),
    ({"Architectures": ["x86_64", "arm64"]},
     "1 validation error detected: Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: "
     "Member must have length less than or equal to 1"),
    ({"Architectures": ["X86_64"]},
     "1 validation error detected: Value '[X86_64]' at 'architectures' failed to satisfy constraint: Member must "
     "satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]"),
    ({"MemorySize": 64, "Description": "d" * 300},
     "2 validation errors detected: Value '" + "d" * 256 + "...' at 'description' failed to satisfy constraint: "
     "Member must have length less than or equal to 256; Value '64' at 'memorySize' failed to satisfy constraint: "
     "Member must have value greater than or equal to 128"),
    ({"TracingConfig": {"Mode": "Sometimes"}},
     "1 validation error detected: Value 'Sometimes' at 'tracingConfig.mode' failed to satisfy constraint: "
     "Member must satisfy enum value set: [Active, PassThrough]"),
])
def test_model_constraints_are_aws_validation_errors(body, message):
    """One place words every model constraint failure as AWS's ValidationException does (values as
    Java prints them, members in lower camel case, several failures counted and joined by '; ')."""
    from lambdalet.models.errors import ValidationException
    op = MODEL.operation_model("CreateFunction")
    with pytest.raises(ValidationException) as err:
        PROTO.parse(op, _create_wire(**body), {})
    assert err.value.message == message


def test_runtime_is_left_to_the_catalogue():
    """AWS checks Runtime against the runtimes it accepts today (InvalidParameterValueException),
    not against the model's enum."""
    op = MODEL.operation_model("CreateFunction")
    assert PROTO.parse(op, _create_wire(Runtime="cobol1"), {})["Runtime"] == "cobol1"


def test_routing_weights_are_checked_as_aws_words_them():
    from lambdalet.models.errors import ValidationException
    wire = WireRequest("POST", "/2015-03-31/functions/fn/aliases", [], {}, json.dumps(
        {"Name": "live", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 2.0}}}).encode())
    matched, labels = PROTO.match(wire)
    with pytest.raises(ValidationException) as err:
        PROTO.parse(matched, wire, labels)
    assert err.value.message == (
        "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy "
        "constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member "
        "must have value greater than or equal to 0.0, Member must not be null]")
