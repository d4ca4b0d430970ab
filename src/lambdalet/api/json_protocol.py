"""The awsJson1_0 / awsJson1_1 wire protocol (SQS today), driven by botocore's service model.

Every request is `POST /` with `X-Amz-Target: <targetPrefix>.<Operation>` and a JSON body whose
keys are the input shape's member names; the answer is the output shape as JSON. Errors are
`{"__type": "<namespace>#<Code>", "message": ...}`.

Services that moved from the query protocol (metadata `awsQueryCompatible`, e.g. SQS) also answer
`x-amzn-query-error: <legacy code>;<Sender|Receiver>`: botocore then reports the legacy code as
`Error.Code` (e.g. `AWS.SimpleQueueService.NonExistentQueue`) and, for SQS, picks the modelled
exception class from the `__type` shape name (`sqs.exceptions.QueueDoesNotExist`).

Same surface as `RestJsonProtocol` (match / parse / serialize / serialize_error), so api/app.py
binds it unchanged.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import math
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape

from lambdalet.api.protocol import WireRequest, WireResponse
from lambdalet.models.errors import AwsError, UnknownOperationException


class _ProtocolError(AwsError):
    """A request the protocol layer refuses before the service sees it (4xx, sender's fault)."""
    status, sender_fault = 400, True


class SerializationException(_ProtocolError):
    code, query_code = "SerializationException", "InvalidParameterValue"


class InvalidParameterValue(_ProtocolError):
    code, query_code = "InvalidParameterValue", "InvalidParameterValue"


class MissingParameter(_ProtocolError):
    code, query_code = "MissingParameter", "MissingParameter"


class UnknownOperation(_ProtocolError):
    code, query_code = "UnknownOperationException", "InvalidAction"


# Legacy query codes for errors raised outside the service (auth, app.py) when the service is
# query-compatible; errors from the service carry their own `query_code` attribute.
_QUERY_CODES = {
    "InvalidParameterValueException": "InvalidParameterValue",
    "UnknownOperationException": "InvalidAction",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidClientTokenId",
    "IncompleteSignatureException": "IncompleteSignature",
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
    "AccessDeniedException": "AccessDenied",
    "RequestEntityTooLargeException": "RequestEntityTooLarge",
    "ServiceException": "InternalFailure",
}


class JsonProtocol:
    def __init__(self, model: ServiceModel, namespace: str | None = None):
        self.model = model
        meta = model.metadata
        self.target_prefix = meta["targetPrefix"]
        self.content_type = f"application/x-amz-json-{meta.get('jsonVersion', '1.0')}"
        self.query_compatible = "awsQueryCompatible" in meta
        # The smithy namespace of the error shapes (com.amazonaws.sqs#QueueDoesNotExist).
        self.namespace = namespace or f"com.amazonaws.{meta.get('endpointPrefix', model.service_name)}"
        self._ops = {name: model.operation_model(name) for name in model.operation_names}

    # ---- routing ----
    def match(self, req: WireRequest) -> tuple[OperationModel, dict[str, str]]:
        target = req.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if req.method != "POST":
            raise UnknownOperation(f"{self.target_prefix} accepts only POST requests.")
        if not target:
            raise UnknownOperation("The request has no X-Amz-Target header.")
        if prefix != self.target_prefix or name not in self._ops:
            raise UnknownOperation(f"Unknown operation {target}.")
        return self._ops[name], {}

    # ---- input ----
    def parse(self, op: OperationModel, req: WireRequest, labels: dict[str, str]) -> dict:
        shape = op.input_shape
        body = req.body.strip()
        if shape is None:
            return {}
        if not body:
            doc: Any = {}
        else:
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise SerializationException("The request body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise SerializationException("The request body must be a JSON object.")
        return _decode_structure(shape, doc, "")

    # ---- output ----
    def serialize(self, op: OperationModel, result: dict | None) -> WireResponse:
        shape = op.output_shape
        body = _encode(shape, result or {}) if shape is not None else {}
        return WireResponse(200, {"Content-Type": self.content_type}, json.dumps(body).encode())

    def serialize_error(self, err: AwsError) -> WireResponse:
        body: dict[str, Any] = {"__type": f"{self.namespace}#{err.code}", "message": err.message}
        body.update(err.extra)
        headers = {"Content-Type": self.content_type, **err.headers}
        if self.query_compatible:
            qcode = getattr(err, "query_code", None) or _QUERY_CODES.get(err.code)
            if qcode:
                headers["x-amzn-query-error"] = f"{qcode};{'Sender' if err.sender_fault else 'Receiver'}"
        return WireResponse(err.status, headers, json.dumps(body).encode())


# ---- decoding (JSON value -> params, checked against the shape) ----

def _bad(path: str, value: Any, expected: str) -> AwsError:
    shown = json.dumps(value)[:64] if not isinstance(value, str) else repr(value[:64])
    return SerializationException(f"Value {shown} at '{path}' failed to satisfy constraint: must be {expected}.")


def _decode_structure(shape: Shape, value: dict, path: str) -> dict:
    out = {}
    wire_to_member = {m.serialization.get("name", n): n for n, m in shape.members.items()}
    for key, v in value.items():
        name = wire_to_member.get(key)
        if name is None:
            where = f" in {path}" if path else ""
            raise InvalidParameterValue(f"Unrecognized field \"{key}\"{where}.")
        if v is not None:
            out[name] = _decode(shape.members[name], v, f"{path}.{name}" if path else name)
    for name in shape.required_members:
        if name not in out:
            raise MissingParameter(f"The request must contain the parameter {f'{path}.{name}' if path else name}.")
    return out


def _decode(shape: Shape, value: Any, path: str) -> Any:
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            raise _bad(path, value, "an object")
        if shape.is_document_type:
            return value
        return _decode_structure(shape, value, path)
    if t == "list":
        if not isinstance(value, list):
            raise _bad(path, value, "a list")
        return [_decode(shape.member, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict):
            raise _bad(path, value, "a map")
        return {k: _decode(shape.value, v, f"{path}.{k}") for k, v in value.items() if v is not None}
    if t == "blob":
        if not isinstance(value, str):
            raise _bad(path, value, "base64-encoded binary data")
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise _bad(path, "<binary>", "base64-encoded binary data") from None
    if t == "string":
        if not isinstance(value, str):
            raise _bad(path, value, "a string")
        return value
    if t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, value, "an integer")
        return value
    if t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(path, value, "a number")
        return value
    if t == "boolean":
        if not isinstance(value, bool):
            raise _bad(path, value, "a boolean")
        return value
    if t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad(path, value, "a timestamp in epoch seconds")
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return value


# ---- encoding (result dict -> JSON value, per the output shape) ----

def _encode(shape: Shape, value: Any) -> Any:
    t = shape.type_name
    if t == "structure":
        if shape.is_document_type:
            return value
        out = {}
        for k, v in value.items():
            member = shape.members.get(k)
            if member is None or v is None:
                continue
            out[member.serialization.get("name", k)] = _encode(member, v)
        return out
    if t == "list":
        return [_encode(shape.member, v) for v in value]
    if t == "map":
        return {str(k): _encode(shape.value, v) for k, v in value.items() if v is not None}
    if t == "blob":
        return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    if t == "timestamp":
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return value
    if t == "string":
        return str(value)
    return value
