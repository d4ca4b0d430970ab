"""server/http_protocol.py: `_CoalescingTransport` (the write()s of one loop iteration handed on as one
write at the end of it; close() flushes first; everything else delegated; nothing written once the real
transport is closing), against a fake transport on a real loop — and `CoalescingHttpToolsProtocol`
behind a real uvicorn on loopback, spoken to over a raw keep-alive socket: responses arrive whole and
byte-exact, and a one-message response leaves the server as one write."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lambdalet.server.http_protocol import CoalescingHttpToolsProtocol, _CoalescingTransport


# ---- the transport, against a fake ---------------------------------------------------------------

class FakeTransport:
    """Records what reaches the real transport, in order."""

    def __init__(self):
        self.events: list[tuple] = []
        self.closing = False
        self.extra = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}

    @property
    def writes(self) -> list[bytes]:
        return [e[1] for e in self.events if e[0] == "write"]

    def write(self, data):
        self.events.append(("write", data))

    def close(self):
        self.events.append(("close",))
        self.closing = True

    def is_closing(self):
        return self.closing

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    def pause_reading(self):
        self.events.append(("pause_reading",))


def on_loop(test):
    """Run `test(transport, fake)` as a coroutine on a fresh loop; returns what the loop's exception
    handler saw (callbacks that raised)."""
    loop_errors = []

    async def go():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, ctx: loop_errors.append(ctx))
        fake = FakeTransport()
        await test(_CoalescingTransport(fake, loop), fake)
        await asyncio.sleep(0)            # any flush still scheduled runs before the loop closes

    asyncio.run(go())
    return loop_errors


async def next_iteration():
    """Let the loop finish the current iteration: what write() scheduled runs before we resume."""
    await asyncio.sleep(0)


def test_writes_in_one_iteration_become_one_write():
    async def test(t, fake):
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"hello")
        t.write(b" world")
        assert fake.writes == []          # nothing yet: gathered until the iteration ends
        await next_iteration()
        assert fake.writes == [b"HTTP/1.1 200 OK\r\n\r\nhello world"]

    assert on_loop(test) == []


def test_a_lone_write_is_handed_on_as_is():
    data = b"x" * 1000

    async def test(t, fake):
        t.write(data)
        await next_iteration()
        assert len(fake.writes) == 1 and fake.writes[0] is data      # no join, no copy

    assert on_loop(test) == []


def test_writes_in_separate_iterations_stay_separate():
    async def test(t, fake):
        t.write(b"one")
        await next_iteration()
        t.write(b"two")
        t.write(b"-2")
        await next_iteration()
        t.write(b"three")
        await next_iteration()
        assert fake.writes == [b"one", b"two-2", b"three"]

    assert on_loop(test) == []


def test_writelines_is_gathered_too():
    async def test(t, fake):
        t.writelines([b"a", b"", b"b"])
        t.write(b"c")
        await next_iteration()
        assert fake.writes == [b"abc"]

    assert on_loop(test) == []


def test_empty_writes_are_ignored():
    async def test(t, fake):
        t.write(b"")
        await next_iteration()
        assert fake.events == []
        t.write(b"data")
        t.write(b"")
        await next_iteration()
        assert fake.writes == [b"data"]

    assert on_loop(test) == []


def test_close_flushes_first():
    async def test(t, fake):
        t.write(b"last ")
        t.write(b"words")
        t.close()
        assert fake.events == [("write", b"last words"), ("close",)]     # at once, in that order
        await next_iteration()
        assert fake.events == [("write", b"last words"), ("close",)]     # the scheduled flush adds nothing

    assert on_loop(test) == []


def test_close_with_nothing_pending_just_closes():
    async def test(t, fake):
        t.close()
        assert fake.events == [("close",)]
        assert t.is_closing()

    assert on_loop(test) == []


def test_writes_once_the_real_transport_is_closing_are_dropped():
    async def test(t, fake):
        fake.closing = True
        t.write(b"too late")
        await next_iteration()
        t.write(b"pending")
        fake.closing = True
        await next_iteration()
        assert fake.writes == []

    assert on_loop(test) == []


def test_pending_writes_are_dropped_if_the_transport_starts_closing_first():
    async def test(t, fake):
        t.write(b"pending")
        fake.closing = True           # e.g. the connection was lost before the flush
        await next_iteration()
        assert fake.writes == []

    assert on_loop(test) == []


def test_everything_else_is_delegated():
    async def test(t, fake):
        assert t.get_extra_info("peername") == ("127.0.0.1", 40000)
        assert t.get_extra_info("socket", "none") == "none"
        assert t.is_closing() is False
        t.pause_reading()
        assert fake.events == [("pause_reading",)]
        with pytest.raises(AttributeError):
            t.no_such_method  # noqa: B018

    assert on_loop(test) == []


# ---- end to end: uvicorn on loopback -------------------------------------------------------------

CHUNKS = [b"first chunk|", b"second chunk|", b"", b"third and last"]


def response(body: bytes) -> bytes:
    """What the app below answers, byte for byte (the server and date headers are off)."""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(body)) + body


async def app(scope, receive, send):
    """/single: one body message; /stream: CHUNKS across loop iterations; /echo?x: the query back."""
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/stream":
        body = b"".join(CHUNKS)
    elif path == "/echo":
        body = scope["query_string"]
    else:
        body = b"single response body " * 10
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    if path == "/stream":
        for i, chunk in enumerate(CHUNKS):
            if i:
                await asyncio.sleep(0)        # the next chunk in a later loop iteration
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(CHUNKS) - 1})
    else:
        await send({"type": "http.response.body", "body": body})


SINGLE = response(b"single response body " * 10)
STREAM = response(b"".join(CHUNKS))


@contextlib.contextmanager
def serving(asgi, http=CoalescingHttpToolsProtocol):
    """uvicorn on 127.0.0.1:<free port> in a thread; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(asgi, http=http, lifespan="off", log_level="warning",
                                           access_log=False, server_header=False, date_header=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture(scope="module")
def port():
    with serving(app) as p:
        yield p


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nhost: test\r\n\r\n" % path.encode()


def read_response(s: socket.socket, buf: bytearray) -> bytes:
    """One whole response off the connection (head up to the blank line, then content-length bytes);
    whatever follows stays in buf for the next."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, f"connection closed mid-head: {bytes(buf)!r}"
        buf += data
    head_end = buf.index(b"\r\n\r\n") + 4
    length = next(int(line.split(b":", 1)[1]) for line in bytes(buf[:head_end]).split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(buf) < head_end + length:
        data = s.recv(65536)
        assert data, "connection closed mid-body"
        buf += data
    out = bytes(buf[:head_end + length])
    del buf[:head_end + length]
    return out


@pytest.mark.parametrize("paths", [["/single", "/single"], ["/stream", "/stream"], ["/single", "/stream"],
                                   ["/stream", "/single"]])
def test_two_requests_on_one_keep_alive_connection(port, paths):
    expected = {"/single": SINGLE, "/stream": STREAM}
    with connect(port) as s:
        buf = bytearray()
        for path in paths:
            s.sendall(request(path))
            assert read_response(s, buf) == expected[path]
        assert buf == b""


def test_pipelined_requests_come_back_in_order(port):
    with connect(port) as s:
        s.sendall(request("/echo?1") + request("/stream") + request("/echo?2"))
        buf = bytearray()
        assert [read_response(s, buf) for _ in range(3)] == [response(b"1"), STREAM, response(b"2")]
        assert buf == b""


def test_single_body_response_arrives_in_one_recv(port):
    with connect(port) as s:
        for _ in range(2):                    # a fresh connection, then the same one kept alive
            s.sendall(request("/single"))
            time.sleep(0.1)
            assert s.recv(65536) == SINGLE


class _RecordingTransport:
    """Between the coalescing layer and the socket: notes each write the socket is handed."""

    def __init__(self, transport, writes: list[bytes]):
        self._t = transport
        self._writes = writes

    def write(self, data):
        self._writes.append(bytes(data))
        self._t.write(data)

    def __getattr__(self, name):
        return getattr(self._t, name)


def test_head_and_body_leave_in_one_write_and_stream_chunks_as_they_come():
    writes: list[bytes] = []

    class Recording(CoalescingHttpToolsProtocol):
        def connection_made(self, transport):
            super().connection_made(_RecordingTransport(transport, writes))

    with serving(app, http=Recording) as p, connect(p) as s:
        buf = bytearray()
        s.sendall(request("/single"))
        assert read_response(s, buf) == SINGLE
        assert writes == [SINGLE]
        writes.clear()
        s.sendall(request("/stream"))
        assert read_response(s, buf) == STREAM
        # the head goes with the first chunk (same iteration); each later chunk is its own write (the
        # empty one is no write at all)
        head = STREAM[:STREAM.index(b"\r\n\r\n") + 4]
        assert writes == [head + CHUNKS[0], CHUNKS[1], CHUNKS[3]]


# ---- flow control --------------------------------------------------------------------------------

FLOOD_CHUNK, FLOOD_CHUNKS = 1 << 20, 32


def flood_app(done: threading.Event):
    """32 MiB in 1 MiB body messages, no awaits but send(): only uvicorn's flow control (send() waits
    for the drain while the transport is paused) can hold it back."""
    async def asgi(scope, receive, send):
        await receive()
        chunk = b"x" * FLOOD_CHUNK
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(FLOOD_CHUNK * FLOOD_CHUNKS).encode())]})
        for i in range(FLOOD_CHUNKS):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < FLOOD_CHUNKS - 1})
        done.set()
    return asgi


@pytest.mark.parametrize("http", [
    HttpToolsProtocol,
    CoalescingHttpToolsProtocol,
])
def test_a_client_that_does_not_read_holds_the_app_back(http):
    done = threading.Event()
    with serving(flood_app(done), http=http) as p, connect(p) as s:
        s.sendall(request("/"))
        sent_all = done.wait(0.5)     # then the client hangs up, unblocking the app if it waits
    assert not sent_all
