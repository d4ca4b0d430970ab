"""Short-lived signed tokens (e.g. code download URLs): base64url(json) "." base64url(HMAC-SHA256).

The MAC is checked before the JSON is parsed, so forged input never reaches the decoder.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time

from lambdalet.crypto.errors import InvalidToken

_VERSION = "v1"
_MAX_TOKEN_CHARS = 8192
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")   # exactly one spelling per token


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    # The version is MACed too, so a future format can never be confused with this one.
    return hmac.new(key, f"{_VERSION}.{body}".encode("ascii"), hashlib.sha256).digest()


def make_token(key: bytes, payload: dict, ttl_s: int, now: float | None = None) -> str:
    """A URL-safe token carrying `payload` (JSON-serialisable) that expires `ttl_s` seconds from now."""
    if len(key) < 16:
        raise ValueError("token key must be at least 16 bytes")
    now = time.time() if now is None else now
    body = _b64e(json.dumps({"p": payload, "exp": int(now + ttl_s)}, separators=(",", ":"),
                            sort_keys=True).encode())
    return f"{body}.{_b64e(_mac(key, body))}"


def read_token(key: bytes, token: str, now: float | None = None) -> dict:
    """The payload of a genuine, unexpired token; InvalidToken otherwise."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        raise InvalidToken("malformed token")
    body, sig = token.split(".")
    try:
        given = _b64d(sig)
        raw = _b64d(body)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None
    if not hmac.compare_digest(given, _mac(key, body)):
        raise InvalidToken("bad token signature")
    try:
        claims = json.loads(raw)
        exp, payload = claims["exp"], claims["p"]
    except (ValueError, KeyError, TypeError):
        raise InvalidToken("malformed token") from None
    if not isinstance(exp, int) or (time.time() if now is None else now) >= exp:
        raise InvalidToken("token expired")
    if not isinstance(payload, dict):
        raise InvalidToken("malformed token")
    return payload
