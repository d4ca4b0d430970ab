"""A RESPONSE_STREAM function URL's answer: the invocation's ResponseStream (invoke/response_stream.py)
as an HTTP response whose body is sent as the function writes it (chunked).

A function that wrote through `awslambda.HttpResponseStream.from(stream, {statusCode, headers,
cookies})` streams with Content-Type application/vnd.awslambda.http-integration-response: its first
bytes are that JSON prelude, then 8 NUL bytes, then the body. Any other stream is the body itself,
200, with the function's content type; a function that does not stream answers its payload as is
(RESPONSE_STREAM does not map it as BUFFERED does). A function that fails before its first byte is
502, as in BUFFERED mode; a failure after it can only end the body early.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from lambdalet.api.function_url_payload import HttpResult, InvalidFunctionResponse, map_response

HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
MAX_PRELUDE = 64 * 1024


@dataclass
class StreamedResult(HttpResult):
    chunks: Any = field(default=None)        # async iterator of the body's pieces


async def http_result(stream, bad_gateway: HttpResult) -> HttpResult:
    """The head, once the function has written enough for it; then the rest of the body, as it comes."""
    await stream.started()                   # re-raises a failure before the first byte (e.g. a throttle)
    pieces = stream.pieces()
    if stream.content_type is None:          # ended without streaming: its payload, or its failure
        stream.close()
        result = stream.result
        if result is None or result.function_error:
            return bad_gateway
        return HttpResult(200, [("content-type", "application/json")], result.payload)
    if stream.content_type != HTTP_INTEGRATION:
        return StreamedResult(200, [("content-type", stream.content_type)], b"", _body(stream, pieces, b""))
    head = bytearray()
    async for piece in pieces:
        head += piece
        if DELIMITER in head or len(head) > MAX_PRELUDE:
            break
    prelude, sep, rest = bytes(head).partition(DELIMITER)
    if not sep:
        if stream.result is not None and not stream.result.function_error and len(head) <= MAX_PRELUDE:
            rest, prelude = b"", bytes(head)   # a prelude with no body: allowed
        else:
            stream.close()
            return bad_gateway
    try:
        meta = json.loads(prelude or b"{}")
        if not isinstance(meta, dict):
            raise InvalidFunctionResponse("the prelude is not a JSON object")
        headers = meta.get("headers") or {}
        if isinstance(headers, dict) and not any(str(k).lower() == "content-type" for k in headers):
            headers = {**headers, "content-type": "application/octet-stream"}
        mapped = map_response(json.dumps({"statusCode": meta.get("statusCode", 200), "headers": headers,
                                          "cookies": meta.get("cookies") or []}).encode())
    except (ValueError, InvalidFunctionResponse):
        stream.close()
        return bad_gateway
    return StreamedResult(mapped.status, mapped.headers, b"", _body(stream, pieces, rest))


async def _body(stream, pieces: AsyncIterator[bytes], first: bytes) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for piece in pieces:
            yield piece
    finally:
        stream.close()
