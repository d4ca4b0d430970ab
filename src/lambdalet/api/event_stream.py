"""AWS's event-stream framing (application/vnd.amazon.eventstream), the encoding side, and
InvokeWithResponseStream's events on top of it.

A message: total length (4 bytes, big-endian) | headers length (4) | CRC32 of those 8 bytes (4) |
headers | payload | CRC32 of everything before it (4). A header: name length (1) | name | value type
(1; 7 = string) | value length (2) | value. botocore's decoder (botocore.eventstream) reads these; the
unit tests decode with it. Nothing in botocore or the AWS SDK for Python encodes, hence this.
"""
from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import AsyncIterator

_STRING = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
MAX_PAYLOAD = 16 * 1024 * 1024 - 1024   # botocore's limit for one message's payload (16 MB with headers)
CHUNK_MAX = 1024 * 1024                 # a PayloadChunk carries at most this much (a long write is split)
LOG_TAIL_BYTES = 4096


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + bytes([_STRING]) + struct.pack(">H", len(v)) + v


def encode_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string headers."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("an event-stream message's payload is limited to 16 MB")
    hdrs = b"".join(_header(k, v) for k, v in headers)
    prelude = _PRELUDE.pack(12 + len(hdrs) + len(payload) + 4, len(hdrs))
    head = prelude + _CRC.pack(zlib.crc32(prelude)) + hdrs
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + _CRC.pack(crc)


def event(event_type: str, content_type: str, payload: bytes) -> bytes:
    return encode_message([(":event-type", event_type), (":content-type", content_type),
                           (":message-type", "event")], payload)


def payload_chunks(data: bytes) -> list[bytes]:
    """PayloadChunk events for `data` (the blob is the event's payload: the member is its eventpayload)."""
    return [event("PayloadChunk", "application/octet-stream", data[i:i + CHUNK_MAX])
            for i in range(0, len(data), CHUNK_MAX)]


def invoke_complete(error_code: str | None = None, error_details: str | None = None,
                    log_result: str | None = None) -> bytes:
    body = {k: v for k, v in (("ErrorCode", error_code), ("ErrorDetails", error_details),
                              ("LogResult", log_result)) if v}
    return event("InvokeComplete", "application/json", json.dumps(body).encode())


async def invoke_events(stream) -> AsyncIterator[bytes]:
    """InvokeWithResponseStream's body from an invoke.response_stream.ResponseStream that has started:
    each piece as a PayloadChunk while the function streams, then InvokeComplete. A function that does
    not stream (its result is its payload) is one PayloadChunk; a function error, a timeout or a crash
    is InvokeComplete's ErrorCode (its error type) and ErrorDetails (its error document)."""
    async for piece in stream.pieces():
        for message in payload_chunks(piece):
            yield message
    result = stream.result
    if result is None:                  # the invocation failed after it had started streaming
        yield invoke_complete("ServiceException", "The execution environment failed.")
        return
    if not result.function_error and not result.streamed and result.payload:
        for message in payload_chunks(result.payload):
            yield message
    tail = base64.b64encode(result.log_tail[-LOG_TAIL_BYTES:]).decode() if stream.tail else None
    if result.function_error:
        yield invoke_complete(result.error_type or result.function_error,
                              result.payload.decode("utf-8", "replace"), tail)
    else:
        yield invoke_complete(log_result=tail)


def stream_of(result):
    """The ResponseStream an operation answered (InvokeWithResponseStream's EventStream), or None."""
    if isinstance(result, dict):
        value = result.get("EventStream")
        if value is not None and hasattr(value, "started"):
            return value
    return None


def head_members(result: dict, stream) -> dict:
    """The output members the head carries; ResponseStreamContentType is the runtime's Content-Type, or
    (a function that did not stream) JSON, as its payload is."""
    head = {k: v for k, v in result.items() if k != "EventStream"}
    head["ResponseStreamContentType"] = stream.content_type or "application/json"
    return head


async def send_events(send, status: int, headers: list[tuple[bytes, bytes]], stream) -> None:
    """The head, then each event as it comes (no Content-Length: uvicorn frames it chunked); every
    send waits for the transport's flow control, so a slow reader holds the function back."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    try:
        async for message in invoke_events(stream):
            await send({"type": "http.response.body", "body": message, "more_body": True})
    finally:
        stream.close()
    await send({"type": "http.response.body", "body": b""})
