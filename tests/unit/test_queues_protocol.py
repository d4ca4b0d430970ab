"""JsonProtocol (awsJson1_0, SQS) against botocore's own serializer and parser."""
from __future__ import annotations

import json

import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from lambdalet.api.json_protocol import JsonProtocol, MissingParameter
from lambdalet.api.protocol import WireRequest, load_service_model
from lambdalet.models.errors import AwsError, InvalidSignatureException
from lambdalet.queues import errors as E

MODEL = load_service_model("sqs")
PROTO = JsonProtocol(MODEL)
SERIALIZER = create_serializer("json", include_validation=True)
PARSER = create_parser("json")


def _minimal(shape):
    t = shape.type_name
    if t == "structure":
        return {n: _minimal(shape.members[n]) for n in shape.required_members}
    if t == "string":
        return shape.enum[0] if shape.enum else "https://h/000000000000/q"
    if t in ("integer", "long"):
        return 1
    if t == "boolean":
        return True
    if t == "blob":
        return b"\x00bin"
    if t == "list":
        return [_minimal(shape.member)]
    if t == "map":
        return {"k": _minimal(shape.value)}
    return "x"


def _wire(op, params) -> WireRequest:
    d = SERIALIZER.serialize_to_request(params, op)
    headers = {k.lower(): str(v) for k, v in d["headers"].items()}
    return WireRequest(d["method"], d["url_path"], [], headers, d["body"])


def _parse_response(op, resp):
    return PARSER.parse({"status_code": resp.status, "headers": {k.lower(): v for k, v in resp.headers.items()},
                         "body": resp.body}, op.output_shape)


def test_metadata_is_what_we_implement():
    meta = MODEL.metadata
    assert meta["protocol"] == "json" and meta["jsonVersion"] == "1.0" and meta["targetPrefix"] == "AmazonSQS"
    assert "awsQueryCompatible" in meta


@pytest.mark.parametrize("name", MODEL.operation_names)
def test_every_operation_routes_and_parses(name):
    op = MODEL.operation_model(name)
    params = _minimal(op.input_shape) if op.input_shape else {}
    wire = _wire(op, params)
    assert wire.headers["x-amz-target"] == f"AmazonSQS.{name}"
    matched, labels = PROTO.match(wire)
    assert matched.name == name and labels == {}
    assert PROTO.parse(matched, wire, labels) == params


def test_full_send_message_batch_round_trips():
    op = MODEL.operation_model("SendMessageBatch")
    params = {"QueueUrl": "https://h/000000000000/q", "Entries": [
        {"Id": "a", "MessageBody": "héllo", "DelaySeconds": 3, "MessageAttributes": {
            "s": {"DataType": "String", "StringValue": "v"}, "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}},
         "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1"}}}]}
    wire = _wire(op, params)
    assert PROTO.parse(op, wire, {}) == params


def test_refusals():
    op = MODEL.operation_model("ReceiveMessage")

    def parse(body, target="AmazonSQS.ReceiveMessage", method="POST"):
        w = WireRequest(method, "/", [], {"x-amz-target": target}, body)
        return PROTO.parse(*PROTO.match(w)[:1], w, {})

    with pytest.raises(AwsError) as ei:
        parse(b'{"QueueUrl": "u", "Bogus": 1}')
    assert ei.value.status == 400 and "Bogus" in ei.value.message
    with pytest.raises(AwsError):
        parse(b'{"QueueUrl": "u", "MaxNumberOfMessages": "3"}')
    with pytest.raises(AwsError):
        parse(b'{"QueueUrl": "u", "MaxNumberOfMessages": true}')
    with pytest.raises(AwsError):
        parse(b'{"QueueUrl": 5}')
    with pytest.raises(AwsError):
        parse(b'{"QueueUrl": "u", "AttributeNames": "All"}')
    with pytest.raises(AwsError):
        parse(b"not json")
    with pytest.raises(AwsError):
        parse(b"[1]")
    with pytest.raises(MissingParameter):
        parse(b"{}")
    with pytest.raises(MissingParameter):          # nested required members too
        w = WireRequest("POST", "/", [], {"x-amz-target": "AmazonSQS.DeleteMessageBatch"},
                        b'{"QueueUrl": "u", "Entries": [{"Id": "a"}]}')
        PROTO.parse(PROTO.match(w)[0], w, {})
    with pytest.raises(AwsError):
        parse(b"{}", target="AmazonSQS.Nope")
    with pytest.raises(AwsError):
        parse(b"{}", target="DynamoDB_20120810.ReceiveMessage")
    with pytest.raises(AwsError):
        parse(b"{}", target="")
    with pytest.raises(AwsError):
        parse(b"{}", method="GET")
    assert op.name == "ReceiveMessage"
    # An empty body is an empty object (operations with no required members).
    w = WireRequest("POST", "/", [], {"x-amz-target": "AmazonSQS.ListQueues"}, b"")
    assert PROTO.parse(PROTO.match(w)[0], w, {}) == {}


def test_output_parses_back_with_botocore():
    op = MODEL.operation_model("ReceiveMessage")
    result = {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r", "MD5OfBody": "x", "Body": "b",
                            "Attributes": {"ApproximateReceiveCount": "1"},
                            "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}}]}
    resp = PROTO.serialize(op, result)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-amz-json-1.0"
    parsed = _parse_response(op, resp)
    parsed.pop("ResponseMetadata", None)
    assert parsed == result
    op = MODEL.operation_model("DeleteMessage")       # no output shape
    resp = PROTO.serialize(op, {})
    assert resp.status == 200 and json.loads(resp.body) == {}


def test_errors_are_query_compatible():
    op = MODEL.operation_model("GetQueueUrl")
    resp = PROTO.serialize_error(E.QueueDoesNotExist("The specified queue does not exist."))
    assert resp.status == 400
    assert json.loads(resp.body) == {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                                     "message": "The specified queue does not exist."}
    assert resp.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    parsed = _parse_response(op, resp)
    assert parsed["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert parsed["Error"]["QueryErrorCode"] == "QueueDoesNotExist"     # -> sqs.exceptions.QueueDoesNotExist
    assert parsed["Error"]["Message"] == "The specified queue does not exist."
    assert MODEL.shape_for(parsed["Error"]["QueryErrorCode"]).error_code == "QueueDoesNotExist"

    resp = PROTO.serialize_error(E.QueueNameExists("x"))
    assert _parse_response(op, resp)["Error"]["Code"] == "QueueAlreadyExists"
    resp = PROTO.serialize_error(E.InvalidParameterValue("bad"))
    assert _parse_response(op, resp)["Error"]["Code"] == "InvalidParameterValue"
    # Errors raised outside the service (authentication) keep a meaningful code.
    resp = PROTO.serialize_error(InvalidSignatureException("sig"))
    assert resp.status == 403
    assert _parse_response(op, resp)["Error"]["Code"] == "SignatureDoesNotMatch"


def test_every_sqs_error_is_a_modelled_shape_or_common_code():
    modelled = {s.name for s in MODEL.error_shapes}
    for name in dir(E):
        cls = getattr(E, name)
        if isinstance(cls, type) and issubclass(cls, E.SqsError) and cls is not E.SqsError:
            assert cls.code in modelled or cls.code in ("InvalidParameterValue", "MissingParameter"), cls
