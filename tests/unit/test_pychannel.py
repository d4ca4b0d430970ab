"""The invocation channel between init and a Python runtime it forked (runtime/pychannel.py, init's end;
python_bootstrap._Channel, the runtime's): framing, limits, headers as GET /next gives them, fallback."""
from __future__ import annotations

import socket
import struct
import threading

import pytest

from lambdalet.runtime import pychannel, python_bootstrap

HDR = struct.Struct(">BII")


def frame(kind: int, head: bytes, body: bytes = b"") -> bytes:
    return HDR.pack(kind, len(head), len(body)) + head + body


def test_frames_arrive_whole_however_the_bytes_are_cut():
    data = frame(pychannel.RESPONSE, b"rid-1\n", b'{"a": 1}') + frame(pychannel.NEXT, b"")
    for cut in range(1, len(data)):
        f = pychannel._Frames(100)
        got = f.feed(data[:cut]) + f.feed(data[cut:])
        assert got == [(pychannel.RESPONSE, b"rid-1\n", b'{"a": 1}'), (pychannel.NEXT, b"", b"")], cut


def test_a_body_over_the_limit_is_dropped_as_it_arrives_not_kept():
    f = pychannel._Frames(10)
    big = frame(pychannel.RESPONSE, b"rid\n", b"x" * 1000) + frame(pychannel.ERROR, b"rid\nE", b"doc")
    out = []
    for i in range(0, len(big), 7):
        out += f.feed(big[i:i + 7])
        assert len(f.buf) <= 64, "the dropped body must not be buffered"
    assert out == [(pychannel.RESPONSE, b"rid\n", None), (pychannel.ERROR, b"rid\nE", b"doc")]


def test_a_header_over_its_limit_is_refused():
    with pytest.raises(ValueError):
        pychannel._Frames(10).feed(HDR.pack(pychannel.NEXT, pychannel.MAX_HEADER + 1, 0))


@pytest.mark.parametrize("extra", [{}, {"tenant_id": "t-1", "client_context": '{"custom":\n {"k": "v\\u0000"}}'}])
def test_the_event_reaches_the_runtime_with_the_headers_of_get_next(extra):
    hdr = {"request_id": "11111111-2222", "deadline_ms": 1765000000123, "after_thaw": True,
           "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:fn", "trace_id": "Root=1-2-3", **extra}
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(pychannel._event_frame(hdr, b'{"x": 1}'))
        ch = python_bootstrap._Channel(theirs, "127.0.0.1:9001")
        ch.answered = True                                   # (no NEXT owed: nothing to read on our side)
        status, headers, body = ch.request("GET", "/invocation/next")
    assert status == 200 and body == b'{"x": 1}'
    assert headers.get("Lambda-Runtime-Aws-Request-Id") == "11111111-2222"
    assert headers.get("Lambda-Runtime-Deadline-Ms") == "1765000000123"
    assert headers.get("Lambda-Runtime-Invoked-Function-Arn") == hdr["invoked_function_arn"]
    assert headers.get("Lambda-Runtime-Trace-Id") == "Root=1-2-3"
    assert headers.get("Lambda-Runtime-Aws-Tenant-Id") == extra.get("tenant_id")
    assert headers.get("Lambda-Runtime-Client-Context") == extra.get("client_context")
    ctx = python_bootstrap.LambdaContext(headers, {})
    assert ctx.aws_request_id == "11111111-2222" and ctx.tenant_id == extra.get("tenant_id")


def test_the_runtime_asks_once_then_each_result_means_next():
    ours, theirs = socket.socketpair()
    ch = python_bootstrap._Channel(theirs, "127.0.0.1:9001")
    ev = {"request_id": "r1", "deadline_ms": 1, "invoked_function_arn": "arn"}
    got = []
    t = threading.Thread(target=lambda: got.append(ch.request("GET", "/invocation/next")))
    t.start()
    f = pychannel._Frames(1 << 20)
    assert f.feed(ours.recv(100)) == [(pychannel.NEXT, b"", b"")]
    ours.sendall(pychannel._event_frame(ev, b"{}"))
    t.join(5)
    assert got[0][1].get("Lambda-Runtime-Aws-Request-Id") == "r1"
    assert ch.request("POST", "/invocation/r1/response", b"null")[0] == 202
    assert ch.request("POST", "/invocation/r2/error", b'{"errorType": "E"}',
                      {"Lambda-Runtime-Function-Error-Type": "Unhandled"})[0] == 202
    assert ch.request("POST", "/init/error", b"{}", {"Lambda-Runtime-Function-Error-Type": "Runtime.X"})[0] == 202
    theirs.shutdown(socket.SHUT_WR)
    frames, data = [], b""
    while chunk := ours.recv(1 << 16):
        data += chunk
    frames = f.feed(data)
    assert frames == [(pychannel.RESPONSE, b"r1\n", b"null"), (pychannel.ERROR, b"r2\nUnhandled", b'{"errorType": "E"}'),
                      (pychannel.INIT_ERROR, b"Runtime.X", b"{}")]       # and no second NEXT
    ours.close()
    theirs.close()


def test_init_closing_the_channel_before_any_event_sends_the_runtime_to_the_http_api():
    """With an extension, init closes the channel at the runtime's first request: the runtime then asks
    AWS_LAMBDA_RUNTIME_API over HTTP (here a bare server that answers that one GET)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = []

    def http_api() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(conn.recv(4096))
            conn.sendall(b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: via-http\r\nContent-Length: 2\r\n\r\n{}")

    t = threading.Thread(target=http_api)
    t.start()
    ours, theirs = socket.socketpair()
    ch = python_bootstrap._Channel(theirs, f"127.0.0.1:{listener.getsockname()[1]}")
    closer = threading.Thread(target=lambda: (ours.recv(100), ours.close()))
    closer.start()
    status, headers, body = ch.request("GET", "/invocation/next")
    t.join(5)
    closer.join(5)
    listener.close()
    assert (status, headers.get("Lambda-Runtime-Aws-Request-Id"), body) == (200, "via-http", b"{}")
    assert seen[0].startswith(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1")
    ch.http.sock.close()


def test_the_channel_closing_after_an_event_is_an_error_not_a_fallback():
    ours, theirs = socket.socketpair()
    ch = python_bootstrap._Channel(theirs, "127.0.0.1:1")
    ch.answered = True
    ours.sendall(pychannel._event_frame({"request_id": "r", "deadline_ms": 1, "invoked_function_arn": "a"}, b""))
    ch.request("GET", "/invocation/next")
    ch.request("POST", "/invocation/r/response", b"null")
    ours.close()
    with pytest.raises(ConnectionError):
        ch.request("GET", "/invocation/next")
    theirs.close()
