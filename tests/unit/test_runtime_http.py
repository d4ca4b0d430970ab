"""init's Runtime API HTTP/1.1 connection (runtime/runtime_http.py), over a socketpair."""
import socket
import threading

import pytest

from lambdalet.runtime import runtime_http


@pytest.fixture
def pair():
    client, server = socket.socketpair()
    yield client, runtime_http.Connection(server)
    client.close()
    server.close()


def _send_later(sock, data: bytes) -> threading.Thread:
    t = threading.Thread(target=sock.sendall, args=(data,))
    t.start()
    return t


def test_content_length_and_keep_alive_pipelining(pair):
    client, conn = pair
    client.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nLambda-Runtime-Function-Error-Type: E\r\n\r\nhello"
                   b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    r = conn.read_request(100)
    assert (r.method, r.path, r.body) == ("POST", "/a", b"hello")
    assert r.headers["lambda-runtime-function-error-type"] == "E" and conn.keep_alive
    r = conn.read_request(100)
    assert (r.method, r.path, r.body) == ("GET", "/next", b"")
    conn.reply(200, b"{}", [("Lambda-Runtime-Aws-Request-Id", "r1")])
    head = client.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Lambda-Runtime-Aws-Request-Id: r1\r\n" in head
    assert head.endswith(b"Content-Length: 2\r\nLambda-Runtime-Aws-Request-Id: r1\r\n\r\n{}")
    client.shutdown(socket.SHUT_WR)
    assert conn.read_request(100) is None


def test_chunked_body_with_extensions_and_trailers(pair):
    client, conn = pair
    client.sendall(b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert conn.read_request(100).body == b"hello world"


def test_expect_100_continue_is_answered_before_the_body(pair):
    client, conn = pair
    client.sendall(b"POST /r HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", conn.read_request(100)))
    t.start()
    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.sendall(b"abc")
    t.join()
    assert got["r"].body == b"abc"


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_the_limit_is_consumed_not_kept(pair, chunked):
    client, conn = pair
    big = b"x" * 300_000
    if chunked:
        msg = b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n"
    else:
        msg = b"POST /r HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    t = _send_later(client, msg + b"GET /next HTTP/1.1\r\n\r\n")
    assert conn.read_request(1000).body is None
    assert conn.read_request(1000).path == "/next"      # the stream stays in sync
    t.join()


@pytest.mark.parametrize("raw,code", [
    (b"GET /x\r\n\r\n", 400),
    (b"GET /x HTTP/2.0\r\n\r\n", 505),
    (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /x HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n", 431),
    (b"GET /x HTTP/1.1\r\nA: " + b"b" * 70_000 + b"\r\n\r\n", 431),
])
def test_malformed_requests_are_refused(pair, raw, code):
    client, conn = pair
    t = _send_later(client, raw)
    with pytest.raises(runtime_http.BadRequest) as e:
        conn.read_request(100)
    assert e.value.code == code
    t.join()


def test_connection_close_and_large_reply(pair):
    client, conn = pair
    client.sendall(b"GET /next HTTP/1.1\r\nConnection: close\r\n\r\n")
    conn.read_request(100)
    assert not conn.keep_alive
    body = b"y" * (6 * 1024 * 1024)
    got = bytearray()
    reader = threading.Thread(target=lambda: [got.extend(b) for b in iter(lambda: client.recv(1 << 20), b"")])
    reader.start()
    conn.reply(200, body)
    conn.close()
    reader.join()
    head, _, rest = bytes(got).partition(b"\r\n\r\n")
    assert b"Connection: close" in head and rest == body
