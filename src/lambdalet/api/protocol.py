"""The rest-json wire protocol, driven by botocore's service model.

botocore's model is our contract: routes, input locations (uri / querystring / header / body /
payload), output locations and error shapes all come from it, so an operation we have not
implemented is still routed and answered with a modelled error instead of an unknown-route 404.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from botocore.model import OperationModel, ServiceModel, Shape

from lambdalet.api.jsoncodec import Faults, constraint_violations, decode, decode_structure, encode
from lambdalet.models.errors import (AwsError, InvalidParameterValueException, UnknownOperationException,
                                     validation_error)
from lambdalet.models.service_model import load_service_model  # noqa: F401  (api/'s callers import it from here)

# Lambda answers malformed or unknown body members with InvalidParameterValueException.
_FAULTS = Faults(bad_value=InvalidParameterValueException, unknown_field=InvalidParameterValueException)

# Services whose request layer refuses a member that breaks its shape's constraints (min, max,
# pattern, enum, required) with ValidationException before the operation runs; the value is the
# shapes the service checks itself instead, with its own error (Lambda: Runtime against its current
# catalogue, InvalidParameterValueException; variable names: AWS accepts one-letter ones the
# model's pattern would refuse).
_CONSTRAINED = {"lambda": frozenset({"Runtime", "EnvironmentVariableName"})}


@dataclass
class WireRequest:
    method: str
    raw_path: str                       # percent-encoded, as sent
    query: list[tuple[str, str]]        # decoded pairs, in order
    headers: dict[str, str]             # lower-cased names
    body: bytes


@dataclass
class WireResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Route:
    operation: OperationModel
    method: str
    pattern: re.Pattern
    required_query: tuple[tuple[str, str], ...]
    specificity: tuple[int, int, int]


def _compile(op: OperationModel) -> _Route:
    uri = op.http["requestUri"]
    path, _, query = uri.partition("?")
    required = tuple((k, v) for k, v in parse_qsl(query, keep_blank_values=True))
    regex, literals = "", 0
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{"):
            name = part[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            regex += f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(part)
            literals += len(part)
    # More literal characters and required query keys win over generic templates.
    spec = (len(required), literals, -path.count("{"))
    return _Route(op, op.http["method"], re.compile(f"^{regex}/?$"), required, spec)


class RestJsonProtocol:
    def __init__(self, model: ServiceModel, *, constraints: bool = True):
        """constraints=False: routing and decoding only (tests that feed placeholder values)."""
        self.model = model
        self._unchecked = _CONSTRAINED.get(model.service_name) if constraints else None
        routes = [_compile(model.operation_model(n)) for n in model.operation_names]
        self._routes = sorted(routes, key=lambda r: r.specificity, reverse=True)

    # ---- routing ----
    def match(self, req: WireRequest) -> tuple[OperationModel, dict[str, str]]:
        query = dict(req.query)
        path_matched = False
        for route in self._routes:
            m = route.pattern.match(req.raw_path)
            if not m:
                continue
            path_matched = True
            if route.method != req.method:
                continue
            if any(query.get(k) != v for k, v in route.required_query):
                continue
            return route.operation, {k: unquote(v) for k, v in m.groupdict().items()}
        if path_matched:
            raise UnknownOperationException(f"No operation for {req.method} {req.raw_path}")
        raise UnknownOperationException(f"Unknown path {req.raw_path}")

    # ---- input ----
    def parse(self, op: OperationModel, req: WireRequest, labels: dict[str, str]) -> dict:
        shape = op.input_shape
        if shape is None:
            return {}
        params: dict[str, Any] = {}
        payload_name = shape.serialization.get("payload")
        body_members = {}
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if loc == "uri":
                if wire in labels:
                    params[name] = _scalar(member, labels[wire], name)
            elif loc == "querystring":
                values = [v for k, v in req.query if k == wire]
                if values:
                    params[name] = ([_scalar(member.member, v, name) for v in values]
                                    if member.type_name == "list" else _scalar(member, values[-1], name))
            elif loc == "header":
                if wire.lower() in req.headers:
                    params[name] = _scalar(member, req.headers[wire.lower()], name)
            elif loc == "headers":
                prefix = wire.lower()
                found = {k[len(prefix):]: v for k, v in req.headers.items() if k.startswith(prefix)}
                if found:
                    params[name] = found
            elif name == payload_name:
                if member.type_name in ("blob", "string"):
                    params[name] = req.body if member.type_name == "blob" else req.body.decode("utf-8", "replace")
                elif req.body:
                    params[name] = decode(member, _load_json(req.body), name, _FAULTS)
            else:
                body_members[name] = member
        if body_members and not payload_name and req.body.strip():
            doc = _load_json(req.body)
            if not isinstance(doc, dict):
                raise InvalidParameterValueException("The request body must be a JSON object.")
            params.update(decode_structure(shape, doc, "", _FAULTS, members=body_members))
        if self._unchecked is not None:
            violations = constraint_violations(shape, params, unchecked=self._unchecked)
            if violations:
                raise validation_error(violations)
        return params

    # ---- output ----
    def serialize(self, op: OperationModel, result: dict | None) -> WireResponse:
        status = int(op.http.get("responseCode", 200))
        headers = {}
        shape = op.output_shape
        result = result or {}
        if shape is None:
            return WireResponse(status, headers, b"")
        payload_name = shape.serialization.get("payload")
        body: dict[str, Any] = {}
        raw_body: bytes | None = None
        for name, member in shape.members.items():
            if name not in result or result[name] is None:
                continue
            value = result[name]
            loc = member.serialization.get("location")
            if loc == "header":
                headers[member.serialization.get("name", name)] = _header_value(value)
            elif loc == "statusCode":
                status = int(value)
            elif name == payload_name:
                if member.type_name in ("blob", "string"):
                    raw_body = value if isinstance(value, bytes) else str(value).encode()
                else:
                    raw_body = json.dumps(encode(member, value)).encode()
            else:
                body[name] = encode(member, value)
        if raw_body is None:
            raw_body = json.dumps(body).encode() if (body or status != 204) else b""
        if raw_body and "content-type" not in {k.lower() for k in headers}:
            headers["Content-Type"] = "application/json"
        return WireResponse(status, headers, raw_body)

    def serialize_error(self, err: AwsError) -> WireResponse:
        return rest_json_error(err, self.model)


# Errors outside a service's model: the front end's own (validation, authentication) spell the
# message in lower case, as AWS's request layer does; Lambda's authorizer answers `Message`.
_UNMODELLED_MESSAGE_KEY = {"AccessDeniedException": "Message", "RequestEntityTooLargeException": "Message"}


def rest_json_error(err: AwsError, model: ServiceModel) -> WireResponse:
    """AWS's rest-json error: the code only in x-amzn-ErrorType; the body carries exactly the error
    shape's members as the model spells them (Lambda: `Type` and `Message` or `message`)."""
    body: dict[str, Any] = {}
    if err.code in model.shape_names:
        members = model.shape_for(err.code).members
        if "Type" in members:
            body["Type"] = "User" if err.sender_fault else "Service"
        body["Message" if "Message" in members else "message"] = err.message
    else:
        body[_UNMODELLED_MESSAGE_KEY.get(err.code, "message")] = err.message
    body.update(err.extra)
    headers = {"x-amzn-ErrorType": err.code, "Content-Type": "application/json", **err.headers}
    return WireResponse(err.status, headers, json.dumps(body).encode())


def generic_error(err: AwsError, model: ServiceModel | None = None) -> WireResponse:
    """AWS's shape: x-amzn-ErrorType names the error; the body has Type and message (or Message
    where the model's error shape spells it so)."""
    # __type as well as the header: JSON-protocol clients (SQS, Logs) read the code from the body.
    body: dict[str, Any] = {"__type": err.code, "Type": "User" if err.sender_fault else "Service"}
    msg_key = "message"
    if model is not None and err.code in model.shape_names and "Message" in model.shape_for(err.code).members:
        msg_key = "Message"
    body[msg_key] = err.message
    body.update(err.extra)
    headers = {"x-amzn-ErrorType": err.code, "Content-Type": "application/json", **err.headers}
    return WireResponse(err.status, headers, json.dumps(body).encode())


def _load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidParameterValueException(f"Could not parse request body into json: {e}") from None


def _bad(name: str, value: Any, expected: str) -> AwsError:
    shown = str(value)[:64]
    return InvalidParameterValueException(f"Value {shown!r} at '{name}' failed to satisfy constraint: must be {expected}")


def _scalar(shape: Shape, raw: str, name: str) -> Any:
    """Decode a value that arrived as text (path label, query string, header)."""
    t = shape.type_name
    try:
        if t == "integer" or t == "long":
            return int(raw)
        if t == "boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return raw.lower() == "true"
        if t in ("float", "double"):
            return float(raw)
        if t == "blob":
            return base64.b64decode(raw, validate=True)
        if t == "string" and shape.serialization.get("jsonvalue"):
            return json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        raise _bad(name, raw, f"a valid {t}") from None
    return raw


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return base64.b64encode(json.dumps(value).encode()).decode()
    return str(value)
