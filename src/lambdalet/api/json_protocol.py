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

import json
from typing import Any

from botocore.model import OperationModel, ServiceModel

from lambdalet.api.jsoncodec import Faults, decode_structure, encode
from lambdalet.api.protocol import WireRequest, WireResponse
from lambdalet.models.errors import AwsError


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
        prefix, _, name = target.rpartition(".")
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
        return decode_structure(shape, doc, "", _FAULTS)

    # ---- output ----
    def serialize(self, op: OperationModel, result: dict | None) -> WireResponse:
        shape = op.output_shape
        body = encode(shape, result or {}) if shape is not None else {}
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


_FAULTS = Faults(bad_value=SerializationException, unknown_field=InvalidParameterValue, missing=MissingParameter)
