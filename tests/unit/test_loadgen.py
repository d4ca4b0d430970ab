"""bench/loadgen.py signs exactly as botocore does, and its request parser/bytes are well formed."""
from __future__ import annotations

import datetime
import sys
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import loadgen  # noqa: E402


def botocore_auth(url: str, body: bytes, when: datetime.datetime, token: str | None, region: str) -> str:
    req = AWSRequest(method="POST", url=url, data=body, headers={"User-Agent": "x"})   # User-Agent is never signed
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "lambda",
                  region).add_auth(req)
    return req.headers["Authorization"]


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:8443", "https://LocalHost", "http://127.0.0.1:80",
                                      "https://[::1]:9000"])
@pytest.mark.parametrize("function", ["noop", "arn:aws:lambda:us-east-1:000000000000:function:noop"])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE token/with+chars=="])
@pytest.mark.parametrize("body", [b"{}", b'{"k": "v \\u00e9"}', b""])
def test_authorization_matches_botocore(endpoint, function, token, body):
    when = datetime.datetime(2024, 2, 29, 23, 59, 58)
    tgt = loadgen.Target({"endpoint_url": endpoint, "ca_bundle": None, "access_key": "AKIDEXAMPLE",
                          "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region": "eu-west-3",
                          "function_name": function, "payload": body, "session_token": token, "expect": None})
    ours = tgt.authorization(when.strftime("%Y%m%dT%H%M%SZ"))
    assert ours == botocore_auth(endpoint + tgt.path, body, when, token, "eu-west-3")


def test_signing_key_follows_the_date():
    tgt = loadgen.Target({"endpoint_url": "https://h:1", "ca_bundle": None, "access_key": "AKIDEXAMPLE",
                          "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region": "us-east-1",
                          "function_name": "f", "payload": b"{}", "session_token": None, "expect": None})
    for when in (datetime.datetime(2024, 1, 1, 23, 59, 59), datetime.datetime(2024, 1, 2, 0, 0, 0),
                 datetime.datetime(2024, 1, 1, 12, 0, 0)):
        assert tgt.authorization(when.strftime("%Y%m%dT%H%M%SZ")) == \
            botocore_auth("https://h:1" + tgt.path, b"{}", when, None, "us-east-1")


def test_every_request_is_signed_afresh():
    tgt = loadgen.Target({"endpoint_url": "https://h:1", "ca_bundle": None, "access_key": "AK", "secret_key": "S",
                          "region": "us-east-1", "function_name": "f", "payload": b"{}", "session_token": None,
                          "expect": None})
    with mock.patch.object(loadgen.time, "time", side_effect=[1700000000.1, 1700000000.9, 1700000001.0]):
        dates = [tgt.request().split(b"X-Amz-Date: ")[1][:16] for _ in range(3)]
    assert dates == [b"20231114T221320Z", b"20231114T221320Z", b"20231114T221321Z"]


def test_request_bytes():
    tgt = loadgen.Target({"endpoint_url": "https://127.0.0.1:8443", "ca_bundle": None, "access_key": "AK",
                          "secret_key": "S", "region": "us-east-1", "function_name": "noop", "payload": b"{}",
                          "session_token": "T", "expect": None})
    raw = tgt.request()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /2015-03-31/functions/noop/invocations HTTP/1.1" and body == b"{}"
    hdrs = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:])}
    assert hdrs["host"] == "127.0.0.1:8443" and hdrs["content-length"] == "2"
    assert hdrs["content-type"] == "application/json" and hdrs["user-agent"].startswith("lambdalet-loadgen/")
    assert hdrs["x-amz-security-token"] == "T"
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in hdrs["authorization"]
    assert hdrs["authorization"].split("Credential=AK/")[1].startswith(hdrs["x-amz-date"][:8] + "/us-east-1/lambda/")


class FakeTransport:
    def __init__(self):
        self.closed = self.aborted = False
        self.written = b""

    def write(self, data):
        self.written += data

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


@pytest.mark.parametrize("chunks", [1, 3, 1000])
def test_response_parsing(chunks):
    import asyncio

    async def go():
        c = loadgen.Conn()
        c.connection_made(FakeTransport())
        resp = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nX-Amz-Executed-Version: $LATEST\r\n\r\nnull"
        for keep in (True, False):
            raw = resp if keep else resp.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            fut = c.send(b"req")
            step = max(1, len(raw) // chunks)
            for i in range(0, len(raw), step):
                c.data_received(raw[i:i + step])
            status, headers, body = await fut
            assert (status, body, headers["x-amz-executed-version"]) == (200, b"null", "$LATEST")
            assert c.closed is (not keep) and c.transport.closed is (not keep)
        c2 = loadgen.Conn()
        c2.connection_made(FakeTransport())
        fut = c2.send(b"req")
        c2.data_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc")
        c2.connection_lost(None)
        with pytest.raises(ConnectionError):
            await fut

    asyncio.run(go())


def test_chunked_and_garbage_are_protocol_errors():
    import asyncio

    async def go():
        for raw in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnull\r\n0\r\n\r\n",
                    b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy"):
            c = loadgen.Conn()
            c.connection_made(FakeTransport())
            fut = c.send(b"req")
            c.data_received(raw)
            with pytest.raises(loadgen.ProtocolError):
                await fut
            assert c.closed and c.transport.aborted

    asyncio.run(go())
