"""An attacker's tour of the API front (issue 10, findings 2 and 5), against a real server over TLS:
unauthenticated bodies are refused before they are read, bodies read before verification share a
budget and a deadline, slow heads are dropped, and JSON nested past any parser's depth answers 400.
"""
from __future__ import annotations

import json
import socket
import ssl
import time
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MB = 1 << 20


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    from harness import own_server
    yield from own_server(tmp_path_factory, "--request-head-timeout", "1", "--request-body-timeout", "2",
                          "--max-unverified-body-mb", "8", prefix="strict")


def _connect(srv) -> ssl.SSLSocket:
    u = urlparse(srv.url)
    ctx = ssl.create_default_context(cafile=srv.ca)
    raw = socket.create_connection((u.hostname, u.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=u.hostname)


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _closed_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


def test_unauthenticated_large_bodies_are_refused_unread(server):
    """Six connections each announcing 60 MB with no Authorization header: each is answered 403 at
    once and closed, and the server does not grow by the bodies (it grew ~370 MB before)."""
    host = urlparse(server.url).netloc
    before = _rss_kib(server.pid)
    socks = []
    try:
        for _ in range(6):
            s = _connect(server)
            s.sendall((f"POST /2015-03-31/functions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {60 * MB}\r\n\r\n").encode() + b"x" * (4 * MB // 8))
            socks.append(s)
        for s in socks:
            status, headers, body = _read_response(s)
            assert status == 403, body
            assert json.loads(body)["message"] == "Missing Authentication Token" or b"Authentication" in body
            assert headers.get("connection") == "close"
        for s in socks:                    # the rest of the body is not wanted: the connection ends
            s.settimeout(5)
            deadline = time.monotonic() + 15
            with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
                while time.monotonic() < deadline:
                    s.sendall(b"x" * MB)
        grown = _rss_kib(server.pid) - before
        assert grown < 8 * 1024, f"server grew by {grown} KiB"
    finally:
        for s in socks:
            s.close()
    assert server.client().list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200


def _signed(srv, body: bytes, *, path="/2015-03-31/functions", service="lambda", target=None,
            secret: str | None = None, content_type="application/json") -> tuple[str, dict[str, str]]:
    creds = Credentials(srv.access_key, secret or srv.secret_key)
    headers = {"Content-Type": content_type}
    if target:
        headers["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=srv.url + path, data=body, headers=headers)
    SigV4Auth(creds, service, srv.region).add_auth(req)
    return path, dict(req.headers.items())


def _send_head(sock, srv, path: str, headers: dict[str, str], length: int) -> None:
    host = urlparse(srv.url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_a_known_key_with_a_wrong_signature_cannot_exceed_the_unverified_budget(strict_server):
    """The budget (8 MB here): bodies still arriving count against it; past it 429, which SDKs retry."""
    body = b"{" + b" " * (6 * MB) + b"}"
    path, headers = _signed(strict_server, body, secret="not-the-secret")
    first, second = _connect(strict_server), _connect(strict_server)
    try:
        _send_head(first, strict_server, path, headers, len(body))
        first.sendall(body[:5 * MB])                  # held: 5 MB of the 8 MB budget
        time.sleep(0.3)
        _send_head(second, strict_server, path, headers, len(body))
        second.sendall(body[:4 * MB])
        status, hdrs, answer = _read_response(second)
        assert status == 429 and hdrs.get("x-amzn-errortype") == "TooManyRequestsException", answer
        first.sendall(body[5 * MB:])
        status, _, answer = _read_response(first)
        assert status == 403 and b"signature" in answer.lower()
    finally:
        first.close()
        second.close()


def test_a_slow_head_is_dropped(strict_server):
    quiet = _connect(strict_server)                   # says nothing after the TLS handshake
    trickle = _connect(strict_server)
    try:
        trickle.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\n")
        start = time.monotonic()
        closed = False
        for i in range(10):                         # one header byte every 0.3 s: never a whole head
            try:
                trickle.sendall(b"X-A: b\r\n"[i % 8:i % 8 + 1])
            except (ConnectionError, ssl.SSLError, OSError):
                closed = True
                break
            time.sleep(0.3)
        assert closed or _closed_within(trickle, 2), "a trickled head kept its connection"
        assert time.monotonic() - start < 4
        assert _closed_within(quiet, 3), "a silent connection was kept"
    finally:
        quiet.close()
        trickle.close()


def test_a_body_that_does_not_arrive_in_time_is_answered_408(strict_server):
    body = b'{"a": 1}' * 10
    path, headers = _signed(strict_server, body)
    s = _connect(strict_server)
    try:
        _send_head(s, strict_server, path, headers, len(body))
        s.sendall(body[:10])
        started = time.monotonic()
        status, hdrs, answer = _read_response(s)
        assert status == 408 and hdrs.get("x-amzn-errortype") == "RequestTimeoutException", answer
        assert 1.5 < time.monotonic() - started < 6
        assert hdrs.get("connection") == "close"
    finally:
        s.close()


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_a_400_everywhere(function_server):
    """Finding 5: a RecursionError used to answer 500 ServiceException."""
    from tests.integration.e2e_support import create_function, delete_quietly, unique
    lam = function_server.client()
    name = unique("deep")
    create_function(lam, name)
    try:
        with pytest.raises(lam.exceptions.InvalidRequestContentException):
            lam.invoke(FunctionName=name, Payload=DEEP)
        assert lam.invoke(FunctionName=name, Payload=b'[[[1]]]')["StatusCode"] == 200
    finally:
        delete_quietly(lam, name)
    import requests
    for path, service, target, ctype, code in [
        ("/2015-03-31/functions", "lambda", None, "application/json", "InvalidRequestContentException"),
        ("/", "sqs", "AmazonSQS.ListQueues", "application/x-amz-json-1.0", "SerializationException"),
    ]:
        path, headers = _signed(function_server, DEEP, path=path, service=service, target=target, content_type=ctype)
        resp = requests.post(function_server.url + path, data=DEEP, headers=headers, verify=function_server.verify,
                             timeout=30)
        assert resp.status_code == 400, (service, resp.status_code, resp.text[:300])
        assert resp.headers.get("x-amzn-ErrorType", "").split(":")[0] == code or code in resp.text, resp.text[:300]
