"""Function URLs' payloads, pure: HTTP request -> the event (payload format version 2.0, as AWS sends
it to function URLs), the function's result -> the HTTP response, and the CORS headers a URL's Cors
configuration adds. No I/O here; api/function_url.py serves them.

Response mapping, as AWS documents it: a JSON object with a `statusCode` is a response description
(statusCode, headers, cookies -> Set-Cookie, body, isBase64Encoded); anything else (a string, a
number, an object without statusCode, even a non-JSON payload) is the body of a 200
`application/json` response, byte for byte.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qsl

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Bodies of these types reach the function as text; every other body (or one that is not UTF-8) is
# base64-encoded with isBase64Encoded true.
_TEXT_TYPES = ("application/json", "application/javascript", "application/ecmascript", "application/xml",
               "application/xhtml+xml", "application/ld+json", "application/graphql", "application/yaml",
               "application/x-yaml", "application/x-ndjson")
# Computed by the server for the response it sends, never taken from the function's description.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"})
# What HTTP allows in a header's name (a token) and value (no control characters but tab, one byte per
# character); anything else would make the server drop the connection mid-response.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


class InvalidFunctionResponse(ValueError):
    """The function returned a response description that cannot be turned into HTTP (502)."""


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)    # lower-case names, in order
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


# ---------------------------------------------------------------- request -> event


def is_text(content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))


def combine_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated headers comma-joined, as AWS joins them."""
    out: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def request_time(epoch_ms: int) -> str:
    t = time.gmtime(epoch_ms / 1000)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def build_event(*, url_id: str, domain_name: str, method: str, raw_path: str, raw_query: str,
                headers: Iterable[tuple[str, str]], body: bytes, source_ip: str, protocol: str, request_id: str,
                epoch_ms: int, account_id: str, iam: dict | None = None) -> dict[str, Any]:
    """The event a function URL hands its function. `account_id` is "anonymous" for NONE URLs (as AWS
    sends it); `iam` is requestContext.authorizer.iam for AWS_IAM URLs."""
    pairs = list(headers)
    hdrs = combine_headers((k, v) for k, v in pairs if k.lower() != "cookie")
    # The Cookie header leaves `headers` for `cookies`, one "name=value" each (payload format 2.0).
    cookies = [c.strip() for k, v in pairs if k.lower() == "cookie" for c in v.split(";") if c.strip()]
    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    context: dict[str, Any] = {"accountId": account_id, "apiId": url_id}
    if iam is not None:
        context["authorizer"] = {"iam": iam}
    context.update({
        "domainName": domain_name,
        "domainPrefix": url_id,
        "http": {"method": method, "path": raw_path, "protocol": protocol, "sourceIp": source_ip,
                 "userAgent": hdrs.get("user-agent", "")},
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": request_time(epoch_ms),
        "timeEpoch": epoch_ms,
    })
    event: dict[str, Any] = {"version": "2.0", "routeKey": "$default", "rawPath": raw_path,
                             "rawQueryString": raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = hdrs
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = context
    encoded = False
    if body:
        text = None
        if is_text(hdrs.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        encoded = text is None
        event["body"] = base64.b64encode(body).decode() if encoded else text
    event["isBase64Encoded"] = encoded
    return event


# ---------------------------------------------------------------- result -> response


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidFunctionResponse("header values must be strings")
    if _BAD_VALUE.search(value):
        raise InvalidFunctionResponse("a header value holds a character HTTP does not allow")
    return value


def _header_name(name: Any) -> str:
    name = str(name)
    if not _TOKEN.fullmatch(name):
        raise InvalidFunctionResponse(f"{name!r} is not a valid header name")
    return name.lower()


def map_response(payload: bytes) -> HttpResult:
    """The HTTP response for a function's (successful) result payload."""
    try:
        value = json.loads(payload) if payload else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if not (isinstance(value, dict) and "statusCode" in value):
        return HttpResult(200, [("content-type", "application/json")], payload)
    status = value["statusCode"]
    # 1xx are interim responses, never a final one: AWS answers 502 for them too.
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise InvalidFunctionResponse("statusCode must be an integer final HTTP status (200-599)")
    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise InvalidFunctionResponse("headers must be an object")
    out = [(_header_name(k), _header_value(v)) for k, v in headers.items()
           if v is not None and str(k).lower() not in _HOP_BY_HOP]
    if not any(k == "content-type" for k, _ in out):
        out.insert(0, ("content-type", "application/json"))
    cookies = value.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise InvalidFunctionResponse("cookies must be a list of strings")
    out += [("set-cookie", _header_value(c)) for c in cookies]
    body = value.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body).encode()
    if value.get("isBase64Encoded") is True:
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidFunctionResponse("body is not valid base64") from None
    return HttpResult(status, out, raw)


# ---------------------------------------------------------------- CORS


def _allowed_origin(cors: dict, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when the configuration refuses it."""
    origins = cors.get("AllowOrigins") or []
    if any(o.lower() == origin.lower() for o in origins):
        return origin
    if "*" in origins:
        return origin if cors.get("AllowCredentials") else "*"
    return None


def is_preflight(method: str, headers: dict[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def preflight(cors: dict, headers: dict[str, str]) -> HttpResult:
    """Lambda answers a CORS preflight itself when the URL has a Cors configuration (the function is
    not invoked). Without a match the answer carries no CORS headers, so the browser refuses."""
    out = HttpResult(200, [("vary", "Origin")])
    allowed = _allowed_origin(cors, headers.get("origin", ""))
    requested = headers.get("access-control-request-method", "").upper()
    methods = [m.upper() for m in cors.get("AllowMethods") or []]
    if allowed is None or not ("*" in methods or requested in methods):
        return out
    out.headers.append(("access-control-allow-origin", allowed))
    out.headers.append(("access-control-allow-methods", ",".join(methods)))
    if cors.get("AllowHeaders"):
        out.headers.append(("access-control-allow-headers", ",".join(cors["AllowHeaders"])))
    if cors.get("AllowCredentials"):
        out.headers.append(("access-control-allow-credentials", "true"))
    if cors.get("MaxAge") is not None:
        out.headers.append(("access-control-max-age", str(cors["MaxAge"])))
    return out


def apply_cors(cors: dict | None, origin: str | None, response: HttpResult) -> HttpResult:
    """Configured CORS headers on an actual response; they take precedence over the function's own."""
    if not cors or not origin:
        return response
    allowed = _allowed_origin(cors, origin)
    if allowed is None:
        return response
    added = [("access-control-allow-origin", allowed)]
    if cors.get("AllowCredentials"):
        added.append(("access-control-allow-credentials", "true"))
    if cors.get("ExposeHeaders"):
        added.append(("access-control-expose-headers", ",".join(cors["ExposeHeaders"])))
    replaced = {k for k, _ in added}
    response.headers = [(k, v) for k, v in response.headers if k not in replaced] + added
    if not any(k == "vary" for k, _ in response.headers):
        response.headers.append(("vary", "Origin"))
    return response
