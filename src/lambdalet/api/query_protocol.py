"""The awsQuery wire protocol (IAM, STS), driven by botocore's service model.

Requests are `POST /` with a form-encoded body (or `GET /?...`): `Action=<Operation>&Version=<api
version>` plus the input members flattened AWS's way (`Tags.member.1.Key=...`,
`Attributes.entry.1.key=...`). Answers are XML:

    <CreateUserResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
      <CreateUserResult>...output members...</CreateUserResult>
      <ResponseMetadata><RequestId>...</RequestId></ResponseMetadata>
    </CreateUserResponse>

and errors `<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>...`.

Same surface as `RestJsonProtocol` / `JsonProtocol` (match / parse / serialize / serialize_error).
A service may put `"ResponseMetadata": {"RequestId": ctx.request_id}` in its result so the body
carries the same request id as the `x-amzn-RequestId` header; otherwise a fresh one is used.
Errors raised by the service may set `query_code` (the wire code) and `request_id` attributes.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.model import OperationModel, ServiceModel, Shape

from lambdalet.api.protocol import WireRequest, WireResponse
from lambdalet.models.errors import AwsError

_MISSING = object()


class _QueryError(AwsError):
    status, sender_fault = 400, True


class ValidationError(_QueryError):
    code = "ValidationError"


class InvalidAction(_QueryError):
    code = "InvalidAction"


class MissingAction(_QueryError):
    code = "MissingAction"


# Wire codes for errors raised outside the service (app.py, auth) in query terms.
_QUERY_CODES = {
    "UnknownOperationException": "InvalidAction",
    "InvalidParameterValueException": "InvalidParameterValue",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidClientTokenId",
    "IncompleteSignatureException": "IncompleteSignature",
    "MissingAuthenticationTokenException": "MissingAuthenticationToken",
    "AccessDeniedException": "AccessDenied",
    "RequestEntityTooLargeException": "RequestEntityTooLarge",
    "ServiceException": "ServiceFailure",
}


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


class QueryProtocol:
    def __init__(self, model: ServiceModel):
        self.model = model
        self.version = model.metadata.get("apiVersion", "")
        self.xmlns = model.metadata.get("xmlNamespace", "")
        self._ops = {name: model.operation_model(name) for name in model.operation_names}

    # ---- routing ----
    def match(self, req: WireRequest) -> tuple[OperationModel, dict[str, str]]:
        if req.method not in ("POST", "GET"):
            raise InvalidAction(f"{req.method} is not supported; use POST with a form-encoded body.")
        pairs = list(req.query)
        if req.method == "POST" and req.body:
            ctype = req.headers.get("content-type", "application/x-www-form-urlencoded").lower()
            if "x-www-form-urlencoded" not in ctype:
                raise ValidationError("The request body must be application/x-www-form-urlencoded.")
            try:
                pairs += parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise ValidationError("The request body is not valid UTF-8.") from None
        flat: dict[str, str] = {}
        for k, v in pairs:
            flat[k] = v
        action = flat.get("Action")
        if not action:
            raise MissingAction("Missing Action")
        op = self._ops.get(action)
        if op is None:
            raise InvalidAction(f"Could not find operation {action} for version {flat.get('Version', self.version)}")
        version = flat.get("Version")
        if version and version != self.version:
            raise InvalidAction(f"Could not find operation {action} for version {version}")
        return op, flat

    # ---- input ----
    def parse(self, op: OperationModel, req: WireRequest, labels: dict[str, str]) -> dict:
        shape = op.input_shape
        if shape is None:
            return {}
        flat = {k: v for k, v in labels.items() if k not in ("Action", "Version")}
        errors: list[str] = []
        value = _decode_structure(shape, flat, "", errors, top=True)
        if errors:
            n = len(errors)
            raise ValidationError(f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors))
        return value

    # ---- output ----
    def serialize(self, op: OperationModel, result: dict | None) -> WireResponse:
        result = dict(result or {})
        meta = result.pop("ResponseMetadata", None) or {}
        request_id = meta.get("RequestId") or str(uuid.uuid4())
        parts = [f'<{op.name}Response xmlns="{escape(self.xmlns)}">']
        shape = op.output_shape
        if shape is not None:
            wrapper = shape.serialization.get("resultWrapper", f"{op.name}Result")
            parts.append(f"<{wrapper}>")
            parts.append(_encode_members(shape, result))
            parts.append(f"</{wrapper}>")
        parts.append(f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>")
        parts.append(f"</{op.name}Response>")
        return WireResponse(200, {"Content-Type": "text/xml"}, "".join(parts).encode())

    def serialize_error(self, err: AwsError) -> WireResponse:
        code = getattr(err, "query_code", None) or _QUERY_CODES.get(err.code, err.code)
        request_id = getattr(err, "request_id", None) or str(uuid.uuid4())
        kind = "Sender" if err.sender_fault else "Receiver"
        body = (f'<ErrorResponse xmlns="{escape(self.xmlns)}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
                f"<Message>{escape(err.message)}</Message></Error>"
                f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>")
        return WireResponse(err.status, {"Content-Type": "text/xml", **err.headers}, body.encode())


# ---------------------------------------------------------------- form -> params


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _indices(flat: dict[str, str], prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)(?:\.|$)")
    found = set()
    for k in flat:
        m = pat.match(k)
        if m:
            found.add(int(m.group(1)))
    return sorted(i for i in found if i >= 1)


def _present(flat: dict[str, str], key: str) -> bool:
    if key in flat:
        return True
    dotted = key + "."
    return any(k.startswith(dotted) for k in flat)


def _decode(shape: Shape, flat: dict[str, str], key: str, errors: list[str], path: str) -> Any:
    t = shape.type_name
    if t == "structure":
        if not _present(flat, key):
            return _MISSING
        return _decode_structure(shape, flat, key, errors, path=path)
    if t == "list":
        flattened = shape.serialization.get("flattened")
        if key in flat and flat[key] == "" and not _present_children(flat, key):
            return []
        if flattened:
            member_name = shape.member.serialization.get("name")
            list_prefix = key if not member_name else ".".join(key.split(".")[:-1] + [member_name])
        else:
            list_prefix = f"{key}.{shape.member.serialization.get('name', 'member')}"
        idx = _indices(flat, list_prefix)
        if not idx:
            return _MISSING
        out = []
        for i in idx:
            v = _decode(shape.member, flat, f"{list_prefix}.{i}", errors, f"{path}.{i}.member")
            if v is not _MISSING:
                out.append(v)
        _check_length(shape, out, path, errors)
        return out
    if t == "map":
        full = key if shape.serialization.get("flattened") else f"{key}.entry"
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        idx = _indices(flat, full)
        if not idx:
            return _MISSING
        out = {}
        for i in idx:
            k = flat.get(f"{full}.{i}.{kname}")
            if k is None:
                continue
            v = _decode(shape.value, flat, f"{full}.{i}.{vname}", errors, f"{path}.{k}")
            out[k] = None if v is _MISSING else v
        return out
    if key not in flat:
        return _MISSING
    raw = flat[key]
    return _scalar(shape, raw, path, errors)


def _present_children(flat: dict[str, str], key: str) -> bool:
    dotted = key + "."
    return any(k.startswith(dotted) for k in flat)


def _scalar(shape: Shape, raw: str, path: str, errors: list[str]) -> Any:
    t = shape.type_name
    shown = raw if len(raw) <= 64 else raw[:64] + "..."
    if t in ("integer", "long"):
        try:
            v = int(raw)
        except ValueError:
            errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must be an integer")
            return raw
        m = shape.metadata
        if "min" in m and v < m["min"]:
            errors.append(f"Value '{v}' at '{path}' failed to satisfy constraint: "
                          f"Member must have value greater than or equal to {m['min']}")
        if "max" in m and v > m["max"]:
            errors.append(f"Value '{v}' at '{path}' failed to satisfy constraint: "
                          f"Member must have value less than or equal to {m['max']}")
        return v
    if t in ("float", "double"):
        try:
            return float(raw)
        except ValueError:
            errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must be a number")
            return raw
    if t == "boolean":
        low = raw.lower()
        if low not in ("true", "false"):
            errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must be a boolean")
        return low == "true"
    if t == "timestamp":
        try:
            d = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            try:
                d = dt.datetime.fromtimestamp(float(raw), dt.timezone.utc)
            except ValueError:
                errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must be a timestamp")
                return raw
        return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)
    if t == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except ValueError:
            errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be base64-encoded")
            return b""
    # string
    _check_length(shape, raw, path, errors)
    pattern = shape.metadata.get("pattern")
    if pattern:
        try:
            ok = re.fullmatch(pattern, raw, re.DOTALL) is not None
        except re.error:
            ok = True   # a Java-only construct: leave it to the service
        if not ok:
            errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: "
                          f"Member must satisfy regular expression pattern: {pattern}")
    enum = shape.metadata.get("enum")
    if enum and raw not in enum:
        errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: "
                      f"Member must satisfy enum value set: [{', '.join(enum)}]")
    return raw


def _check_length(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    m = shape.metadata
    n = len(value)
    what = "length" if isinstance(value, str) else "length"
    if "min" in m and n < m["min"]:
        errors.append(f"Value at '{path}' failed to satisfy constraint: Member must have {what} greater than or "
                      f"equal to {m['min']}")
    if "max" in m and n > m["max"]:
        errors.append(f"Value at '{path}' failed to satisfy constraint: Member must have {what} less than or "
                      f"equal to {m['max']}")


def _decode_structure(shape: Shape, flat: dict[str, str], prefix: str, errors: list[str], *, top: bool = False,
                      path: str = "") -> dict:
    out: dict[str, Any] = {}
    required = set(shape.required_members)
    for name, member in shape.members.items():
        wire = member.serialization.get("name", name)
        mpath = _join(path, _lower_camel(name))
        v = _decode(member, flat, _join(prefix, wire), errors, mpath)
        if v is _MISSING:
            if name in required:
                errors.append(f"Value null at '{mpath}' failed to satisfy constraint: Member must not be null")
            continue
        out[name] = v
    return out


# ---------------------------------------------------------------- result -> XML


def _ts(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond // 1000:03d}Z" if value.microsecond
                                                      else "Z")
    return str(value)


def _encode_value(shape: Shape, value: Any) -> str:
    t = shape.type_name
    if t == "structure":
        return _encode_members(shape, value)
    if t == "list":
        name = shape.member.serialization.get("name", "member")
        return "".join(f"<{name}>{_encode_value(shape.member, v)}</{name}>" for v in value)
    if t == "map":
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        return "".join(f"<entry><{kname}>{escape(str(k))}</{kname}><{vname}>{_encode_value(shape.value, v)}</{vname}>"
                       f"</entry>" for k, v in value.items())
    if t == "boolean":
        return "true" if value else "false"
    if t == "timestamp":
        return _ts(value)
    if t == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode()
    return escape(str(value))


def _encode_members(shape: Shape, value: dict) -> str:
    parts = []
    for name, member in shape.members.items():
        if name not in value or value[name] is None:
            continue
        wire = member.serialization.get("name", name)
        v = value[name]
        if member.type_name == "list" and member.serialization.get("flattened"):
            item = member.member.serialization.get("name", wire)
            parts.extend(f"<{item}>{_encode_value(member.member, x)}</{item}>" for x in v)
            continue
        parts.append(f"<{wire}>{_encode_value(member, v)}</{wire}>")
    return "".join(parts)
