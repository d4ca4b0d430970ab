"""Verification of AWS Signature Version 4 (header form), as AWS documents it.

We recompute the canonical request from what arrived on the wire and compare signatures in
constant time. The secret for an access key comes from a lookup the caller supplies, so this
module knows nothing about where identities live.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import posixpath
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from lambdalet.models.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
             "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass(frozen=True)
class SignedRequest:
    access_key_id: str
    date: str        # YYYYMMDD from the scope
    region: str
    service: str
    session_token: str | None


def parse_authorization(headers: dict[str, str]) -> tuple[SignedRequest, list[str], str]:
    auth = headers.get("authorization")
    if not auth:
        raise MissingAuthenticationTokenException("Missing Authentication Token")
    m = _AUTH_RE.match(auth.strip())
    if not m:
        if not auth.startswith(ALGORITHM):
            raise IncompleteSignatureException(f"Unsupported authorization type: only {ALGORITHM} is accepted.")
        raise IncompleteSignatureException(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
    parts = m["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise IncompleteSignatureException(f"Credential should be scoped correctly: {m['cred']}")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise InvalidSignatureException("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return (SignedRequest(parts[0], parts[1], parts[2], parts[3], headers.get("x-amz-security-token")),
            signed, m["sig"])


def canonical_uri(raw_path: str) -> str:
    # Non-S3 services sign the path with dot segments removed, then URI-encoded once more.
    path = posixpath.normpath(raw_path) if raw_path not in ("", "/") else "/"
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def canonical_query(query: list[tuple[str, str]]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _amz_date(headers: dict[str, str]) -> str:
    value = headers.get("x-amz-date")
    if value:
        return value
    if "date" in headers:  # RFC 1123 Date header is allowed by the spec
        from email.utils import parsedate_to_datetime
        try:
            return parsedate_to_datetime(headers["date"]).strftime("%Y%m%dT%H%M%SZ")
        except (TypeError, ValueError):
            pass
    raise IncompleteSignatureException("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def check_head(headers: dict[str, str], lookup_secret: Callable[[SignedRequest], str | None],
               max_skew_s: int = 300, now: float | None = None) -> tuple[SignedRequest, list[str], str, str, str]:
    """Everything that can be checked before the body arrives: the Authorization header, the date
    and its skew, and that the key exists. -> (request, signed headers, signature, amz date, secret).
    The API calls this before reading a large body, so an unauthenticated client is refused
    without the server buffering what it sends."""
    sreq, signed_headers, signature = parse_authorization(headers)
    amz_date = _amz_date(headers)
    try:
        ts = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise IncompleteSignatureException(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.") from None
    if amz_date[:8] != sreq.date:
        raise InvalidSignatureException(f"Credential should be scoped to a valid date: '{amz_date[:8]}'.")
    now = time.time() if now is None else now
    if abs(now - ts) > max_skew_s:
        fmt = lambda t: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))  # noqa: E731
        if ts < now:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than {fmt(now - max_skew_s)} ({fmt(now)} - 5 min.)")
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than {fmt(now + max_skew_s)} ({fmt(now)} + 5 min.)")
    secret = lookup_secret(sreq)
    if secret is None:
        raise UnrecognizedClientException("The security token included in the request is invalid.")
    return sreq, signed_headers, signature, amz_date, secret


def verify(method: str, raw_path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes,
           lookup_secret: Callable[[SignedRequest], str | None], max_skew_s: int = 300,
           now: float | None = None) -> SignedRequest:
    """Return who signed the request, or raise the AWS error a real endpoint would answer."""
    sreq, signed_headers, signature, amz_date, secret = check_head(headers, lookup_secret, max_skew_s, now)

    body_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared and declared != "UNSIGNED-PAYLOAD" and declared != body_hash:
        raise InvalidSignatureException("The provided 'x-amz-content-sha256' header does not match what was computed.")
    payload_hash = declared or body_hash
    if payload_hash == "UNSIGNED-PAYLOAD":
        raise InvalidSignatureException("Unsigned payloads are not accepted by this service.")

    for name in signed_headers:
        if name not in headers:
            raise InvalidSignatureException(f"Signed header '{name}' is missing from the request.")
    canon_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed_headers)
    canonical = "\n".join([method.upper(), canonical_uri(raw_path), canonical_query(query), canon_headers,
                           ";".join(signed_headers), payload_hash])
    scope = f"{sreq.date}/{sreq.region}/{sreq.service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(_signing_key(secret, sreq.date, sreq.region, sreq.service), to_sign.encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidSignatureException(_MISMATCH)
    return sreq


