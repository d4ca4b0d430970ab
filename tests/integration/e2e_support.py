"""Helpers shared by the end-to-end tests: zips, names, functions, error assertions, raw signed requests."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
HANDLER_CODE = "def handler(event, context):\n    return {'hello': event}\n"
WAIT = {"Delay": 1, "MaxAttempts": 30}


def make_zip(files: dict[str, str | bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            z.writestr(info, content)
    return buf.getvalue()


def default_zip(marker: str = "") -> bytes:
    return make_zip({"app.py": HANDLER_CODE + (f"# {marker}\n" if marker else "")})


def unique(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def create_function(lam, name: str | None = None, *, zip_bytes: bytes | None = None, wait: bool = True, **kw) -> dict:
    name = name or unique()
    params = dict(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                  Code={"ZipFile": zip_bytes if zip_bytes is not None else default_zip()})
    params.update(kw)
    resp = lam.create_function(**params)
    if wait:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return resp


def delete_quietly(lam, name: str) -> None:
    with contextlib.suppress(ClientError):
        lam.delete_function(FunctionName=name)


def list_all_function_names(lam) -> list[str]:
    names, marker = [], None
    for _ in range(10_000):
        kw = {"Marker": marker} if marker else {}
        page = lam.list_functions(**kw)
        names += [f["FunctionName"] for f in page.get("Functions", [])]
        marker = page.get("NextMarker")
        if not marker:
            return names
    raise AssertionError("ListFunctions never stopped paging")


def error_of(exc: ClientError) -> tuple[str, int, str]:
    r = exc.response
    return r["Error"].get("Code", ""), r["ResponseMetadata"].get("HTTPStatusCode", 0), r["Error"].get("Message", "")


def describe(exc: ClientError) -> str:
    code, status, msg = error_of(exc)
    return f"{code} (HTTP {status}): {msg!r}"


@contextlib.contextmanager
def expect_error(codes: str | set[str] | tuple[str, ...], status: int | set[int] | None = None):
    """Assert the block raises a ClientError with one of `codes` (and `status`); yields a holder with .exc."""
    codes = {codes} if isinstance(codes, str) else set(codes)
    statuses = None if status is None else ({status} if isinstance(status, int) else set(status))

    @dataclass
    class Holder:
        exc: ClientError | None = None
        code: str = ""
        status: int = 0
        message: str = ""

    holder = Holder()
    try:
        yield holder
    except ClientError as e:
        holder.exc = e
        holder.code, holder.status, holder.message = error_of(e)
        assert holder.code in codes, f"expected {sorted(codes)}, server answered {describe(e)}"
        if statuses is not None:
            assert holder.status in statuses, f"expected HTTP {sorted(statuses)}, server answered {describe(e)}"
        assert_no_traceback(holder.message)
        return
    pytest.fail(f"expected a ClientError {sorted(codes)}, but the call succeeded")


def assert_no_traceback(text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for needle in ("Traceback (most recent call last)", 'File "/', ".py\", line "):
        assert needle not in text, f"error leaks a stack trace: {text[:2000]!r}"


# ---- raw signed requests (for auth tests) ----

@dataclass
class RawRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""
    extra: dict = field(default_factory=dict)


def sign(server, method: str, path: str, body: bytes = b"", *, access_key: str | None = None,
         secret: str | None = None, headers: dict[str, str] | None = None, service: str = "lambda") -> RawRequest:
    url = server.url.rstrip("/") + path
    hdrs = {"Content-Type": "application/json"} if body else {}
    hdrs.update(headers or {})
    req = AWSRequest(method=method, url=url, data=body, headers=hdrs)
    creds = Credentials(access_key or server.access_key, secret if secret is not None else server.secret_key)
    SigV4Auth(creds, service, server.region).add_auth(req)
    return RawRequest(method, url, dict(req.headers.items()), body)


def send(server, raw: RawRequest, body: bytes | None = None) -> requests.Response:
    return requests.request(raw.method, raw.url, headers=raw.headers, data=raw.body if body is None else body,
                            verify=server.verify, timeout=60)


def assert_aws_error(resp: requests.Response, codes: set[str] | str, status: int | None = None) -> dict:
    codes = {codes} if isinstance(codes, str) else set(codes)
    detail = f"HTTP {resp.status_code} headers={dict(resp.headers)} body={resp.content[:1000]!r}"
    if status is not None:
        assert resp.status_code == status, detail
    etype = resp.headers.get("x-amzn-ErrorType", "")
    assert etype, "no x-amzn-ErrorType header: " + detail
    assert etype.split(":", 1)[0] in codes, f"expected {sorted(codes)}: " + detail
    assert_no_traceback(resp.content)
    try:
        doc = json.loads(resp.content)
    except ValueError:
        pytest.fail("error body is not JSON: " + detail)
    assert isinstance(doc, dict), detail
    return doc


# ---- hand-built zips (hostile archives) ----

@dataclass
class RawEntry:
    name: bytes
    data: bytes                 # as stored (already compressed if method == 8)
    method: int = 0             # 0 stored, 8 deflate
    crc: int = 0
    declared_size: int = 0      # uncompressed size written in the headers
    external_attr: int = 0o644 << 16
    create_system: int = 3      # unix


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_zeros(size: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """Raw-deflate `size` zero bytes without holding them in memory; returns (stream, crc32)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, crc, block = [], 0, bytes(chunk)
    left = size
    while left:
        n = min(chunk, left)
        piece = block if n == chunk else bytes(n)
        crc = zlib.crc32(piece, crc)
        out.append(c.compress(piece))
        left -= n
    out.append(c.flush())
    return b"".join(out), crc


def build_raw_zip(entries: list[RawEntry]) -> bytes:
    """A zip written byte by byte, so sizes, names and attributes can lie."""
    body, central = io.BytesIO(), io.BytesIO()
    for e in entries:
        offset = body.tell()
        body.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, e.method, 0, 0x21, e.crc & 0xFFFFFFFF,
                               len(e.data), e.declared_size, len(e.name), 0))
        body.write(e.name)
        body.write(e.data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (e.create_system << 8) | 20, 20, 0, e.method, 0,
                                  0x21, e.crc & 0xFFFFFFFF, len(e.data), e.declared_size, len(e.name), 0, 0, 0, 0,
                                  e.external_attr & 0xFFFFFFFF, offset))
        central.write(e.name)
    cd = central.getvalue()
    cd_offset = body.tell()
    body.write(cd)
    body.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), cd_offset, 0))
    return body.getvalue()


def stored_entry(name: str, data: bytes, external_attr: int = 0o644 << 16) -> RawEntry:
    return RawEntry(name.encode(), data, 0, zlib.crc32(data), len(data), external_attr)


def files_under(root: Path) -> set[str]:
    root = Path(root)
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
