"""The pieces of response streaming, each alone: init's reading of a streamed (chunked) /response and
its trailers (runtime/runtime_http.py), the event-stream encoder (api/event_stream.py, decoded here by
botocore's own decoder), and the ResponseStream hand-off (back-pressure, deadline, AWS's bandwidth cap)."""
import asyncio
import socket
import threading
import time

import pytest
from botocore.eventstream import EventStreamBuffer

from lambdalet.api import event_stream
from lambdalet.invoke.response_stream import ResponseStream
from lambdalet.runtime import runtime_http
from lambdalet.sandbox.api import InvokeResult


@pytest.fixture
def pair():
    client, server = socket.socketpair()
    yield client, runtime_http.Connection(server)
    client.close()
    server.close()


def _streamed(method, path, headers):
    return headers.get("lambda-runtime-function-response-mode") == "streaming"


def test_streamed_chunked_body_comes_in_pieces_with_trailers_then_next_request(pair):
    client, conn = pair
    client.sendall(b"POST /r/response HTTP/1.1\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n"
                   b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n")
    req = conn.read_request(100, _streamed)
    assert req.streamed and req.body is None and req.headers["content-type"] == "text/plain"
    pieces = conn.body_pieces(3)
    assert next(pieces) == b"hel" and next(pieces) == b"lo"        # what has arrived, before the rest is sent
    client.sendall(b"6\r\n world\r\n0\r\nLambda-Runtime-Function-Error-Type: Boom\r\n"
                   b"Lambda-Runtime-Function-Error-Body: e30=\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
    assert b"".join(pieces) == b" world"
    assert conn.trailers == {"lambda-runtime-function-error-type": "Boom", "lambda-runtime-function-error-body": "e30="}
    assert conn.read_request(100, _streamed).path == "/next"      # the connection goes on


def test_streamed_content_length_body_and_unstreamed_requests_unchanged(pair):
    client, conn = pair
    client.sendall(b"POST /r HTTP/1.1\r\nLambda-Runtime-Function-Response-Mode: streaming\r\nContent-Length: 4\r\n\r\nabcd"
                   b"POST /e HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert conn.read_request(100, _streamed).streamed
    assert b"".join(conn.body_pieces(1024)) == b"abcd" and conn.trailers == {}
    r = conn.read_request(100, _streamed)
    assert not r.streamed and r.body == b"{}"


def test_too_many_trailers_are_refused(pair):
    client, conn = pair
    trailers = b"".join(b"X-%d: 1\r\n" % i for i in range(runtime_http.MAX_HEADER_LINES + 1))
    client.sendall(b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers + b"\r\n")
    with pytest.raises(runtime_http.BadRequest):
        conn.read_request(100)


def _decode(data: bytes) -> list:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def test_event_stream_messages_decode_with_botocore():
    chunk, done = event_stream.payload_chunks(b"\x00hello")[0], event_stream.invoke_complete("Boom", "{}", "dGFpbA==")
    msgs = _decode(chunk + done)
    assert msgs[0].headers == {":event-type": "PayloadChunk", ":content-type": "application/octet-stream",
                               ":message-type": "event"} and msgs[0].payload == b"\x00hello"
    assert msgs[1].headers[":event-type"] == "InvokeComplete"
    assert msgs[1].payload == b'{"ErrorCode": "Boom", "ErrorDetails": "{}", "LogResult": "dGFpbA=="}'
    assert _decode(event_stream.invoke_complete())[0].payload == b"{}"
    assert len(event_stream.payload_chunks(bytes(event_stream.CHUNK_MAX + 1))) == 2


def _drain(stream: ResponseStream) -> list[bytes]:
    async def main():
        await stream.started()
        out = [piece async for piece in stream.pieces()]
        stream.close()
        return out
    return asyncio.run(main())


def test_response_stream_back_pressure_and_events():
    stream = ResponseStream()
    blocked = threading.Event()

    def writer():
        far = time.monotonic() + 30
        stream.write("text/plain", b"a" * (1 << 20), far)     # fills the high-water mark
        blocked.set()
        stream.write("text/plain", b"b", far)                 # waits for the reader
        stream.finish(InvokeResult(payload=b"", streamed=True))
    t = threading.Thread(target=writer)
    t.start()
    assert blocked.wait(5)
    time.sleep(0.1)
    assert t.is_alive()                                       # held back, not buffered
    assert b"".join(_drain(stream)) == b"a" * (1 << 20) + b"b"
    t.join(5)
    assert stream.content_type == "text/plain"


def test_response_stream_writer_times_out_when_nobody_reads():
    stream = ResponseStream()
    stream.write("x", b"a" * (1 << 20), time.monotonic() + 5)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        stream.write("x", b"b", time.monotonic() + 0.2)
    assert 0.15 < time.monotonic() - t0 < 2


def test_response_stream_bandwidth_after_the_burst():
    stream = ResponseStream(burst=1000, rate=10_000)           # (well under the high-water mark: no reader needed)
    t0 = time.monotonic()
    stream.write("x", bytes(900), t0 + 10)                     # within the burst: at once
    assert time.monotonic() - t0 < 0.05
    for _ in range(7):
        stream.write("x", bytes(300), t0 + 10)                 # 3000 bytes: 2000 past the burst = 0.2 s
    assert 0.18 < time.monotonic() - t0 < 1.0
    with pytest.raises(TimeoutError):                          # a pace that would outrun the deadline
        stream.write("x", bytes(10_000), time.monotonic() + 0.1)


def test_invoke_events_for_a_buffered_result_and_an_error():
    async def collect(result, tail=False):
        stream = ResponseStream()
        stream.tail = tail
        stream.finish(result)
        await stream.started()
        return [m async for m in event_stream.invoke_events(stream)]
    ok = asyncio.run(collect(InvokeResult(payload=b'{"a":1}', log_tail=b"log"), tail=True))
    msgs = _decode(b"".join(ok))
    assert [m.headers[":event-type"] for m in msgs] == ["PayloadChunk", "InvokeComplete"]
    assert msgs[0].payload == b'{"a":1}' and msgs[1].payload == b'{"LogResult": "bG9n"}'
    err = asyncio.run(collect(InvokeResult(payload=b'{"errorType":"Sandbox.Timedout"}', function_error="Unhandled",
                                           error_type="Sandbox.Timedout")))
    (msg,) = _decode(b"".join(err))
    assert msg.payload == b'{"ErrorCode": "Sandbox.Timedout", "ErrorDetails": "{\\"errorType\\":\\"Sandbox.Timedout\\"}"}'


def _relay(monkeypatch, body: bytes, limit: int | None = None):
    """init's relay of one streamed /response (its _State on a socketpair): the frames it sends the host
    and what it answers the runtime."""
    from lambdalet.runtime import bridge, init
    if limit is not None:
        monkeypatch.setattr(bridge, "MAX_STREAMED", limit)
    host, init_end = socket.socketpair()
    runtime, server = socket.socketpair()
    st = init._State(init_end)
    st.current = "rid"
    conn = runtime_http.Connection(server)
    runtime.sendall(b"POST /2018-06-01/runtime/invocation/rid/response HTTP/1.1\r\nContent-Type: text/plain\r\n"
                    b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    req = conn.read_request(init.MAX_RESPONSE, init._streamed)
    init._post(st, conn, req)
    init_end.close()
    frames, reader = [], bridge.FrameReader()
    while True:
        try:
            frames.append(bridge.recv_blocking(host, reader))
        except bridge.BridgeClosed:
            break
    answer = runtime.recv(65536)
    for s in (host, runtime, server):
        s.close()
    return frames, answer


def test_init_relays_chunks_then_the_trailers_error(monkeypatch):
    from lambdalet.runtime import bridge
    frames, answer = _relay(monkeypatch, b"3\r\nabc\r\n0\r\nLambda-Runtime-Function-Error-Type: Oops\r\n"
                                         b"Lambda-Runtime-Function-Error-Body: eyJlcnJvclR5cGUiOiJPb3BzIn0=\r\n\r\n")
    assert frames[0] == (bridge.CHUNK, {"request_id": "rid", "content_type": "text/plain"}, b"abc")
    assert frames[-1] == (bridge.ERROR, {"request_id": "rid", "error_type": "Oops", "streamed": True},
                          b'{"errorType":"Oops"}')
    assert answer.startswith(b"HTTP/1.1 202")


def test_init_cuts_a_stream_past_the_limit(monkeypatch):
    from lambdalet.runtime import bridge
    frames, answer = _relay(monkeypatch, b"4\r\nabcd\r\n4\r\nefgh\r\n4\r\nijkl\r\n0\r\n\r\n", limit=8)
    sent = b"".join(body for kind, _, body in frames if kind == bridge.CHUNK)
    assert len(sent) <= 8 and b"ijkl" not in sent
    kind, hdr, body = frames[-1]
    assert kind == bridge.ERROR and hdr["error_type"] == "Function.ResponseSizeTooLarge", frames[-1]
    assert answer.startswith(b"HTTP/1.1 413")
