"""The rest-json protocol against botocore's own serializer: every operation routes back to itself,
and what botocore sends parses back into the params it was given."""
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.serialize import create_serializer

from lambdalet.api.protocol import RestJsonProtocol, WireRequest, load_service_model
from lambdalet.models.errors import InvalidParameterValueException, UnknownOperationException

MODEL = load_service_model("lambda")
PROTO = RestJsonProtocol(MODEL)
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
    matched, labels = PROTO.match(wire)
    assert matched.name == name
    parsed = PROTO.parse(matched, wire, labels)
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
    assert json.loads(out.body) == {"__type": "ResourceNotFoundException", "Type": "User", "Message": "Function not found: x"}
    out = PROTO.serialize_error(TooManyRequestsException("Rate exceeded", extra={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}))
    assert json.loads(out.body)["message"] == "Rate exceeded" and out.status == 429
