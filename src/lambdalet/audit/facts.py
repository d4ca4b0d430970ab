"""What the audit queue may hold about one call: only what its record needs, never the raw bytes.

A request's parameters can carry a decoded 12 MB zip (CreateFunction's Code.ZipFile) and its
exception a traceback whose frames keep every local alive. The record omits blobs and keeps only
an error's code and message, so `slim` drops them before the call's facts are queued: the queue
then holds kilobytes per call, and `size` (an estimate of what an item keeps alive) lets the
recorder bound the queue in bytes.

`slim` only replaces what the record never shows (`records.redact` omits every bytes value
whatever its name), so the record built from slim facts is the record built from the originals;
the one exception is a string longer than 64 KiB (no modelled management parameter is; CloudTrail
too leaves oversized parameters out), which is replaced by a note of its length.
"""
from __future__ import annotations

from typing import Any

_MAX_MESSAGE = 1024
MAX_STRING = 64 * 1024
_OVERHEAD = 64          # per value: a rough CPython object header + container slot


class ErrorFacts:
    """An exception as the record sees it: its AWS error code (None: an internal error) and message."""
    __slots__ = ("code", "message")

    def __init__(self, code: str | None, message: str):
        self.code = code
        self.message = message

    @classmethod
    def of(cls, error: BaseException | None) -> "ErrorFacts | None":
        if error is None:
            return None
        code = getattr(error, "code", None)
        if not isinstance(code, str) or not code:
            return cls(None, "")                 # recorded as ServiceException, internals never kept
        return cls(code, str(getattr(error, "message", "") or "")[:_MAX_MESSAGE])


def slim(value: Any) -> Any:
    """A copy of a request/response value without blobs (b"" stands in: the record omits it)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b""
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"<omitted from the audit record: {len(value)} characters>"
    if isinstance(value, dict):
        return {k: slim(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [slim(v) for v in value]
    return value


def size(value: Any) -> int:
    """Approximate bytes kept alive by a slim value."""
    if isinstance(value, dict):
        return _OVERHEAD + sum(size(k) + size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return _OVERHEAD + sum(size(v) for v in value)
    if isinstance(value, str):
        return _OVERHEAD + len(value) * (1 if value.isascii() else 4)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _OVERHEAD + len(value)
    return _OVERHEAD
