"""uvicorn's httptools protocol, with a response's writes coalesced into one.

uvicorn writes a response's head and its body separately; under TLS each write is its own TLS record
and its own send(2), and the client wakes up twice. The transport here gathers what one loop
iteration writes (the head and a whole body are written in the same iteration when nothing is
paused) and hands it on in one write at the end of that iteration. Nothing is held longer: the
flush is the next callback of the same loop, close() flushes first, and once 64 KiB are pending
they go at once, so a large or streamed body still meets the real transport's flow control (its
pause_writing) as soon as it would without this.

It also bounds how long a request's head may take (see CoalescingHttpToolsProtocol).
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024
UNREAD_BODY_LINGER_S = 1.0


class _CoalescingTransport:
    """Delegates everything to the real transport except write(), which is gathered per iteration."""

    __slots__ = ("_t", "_loop", "_pending", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._t = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self._flush()

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending, self._size = self._pending, [], 0
        if pending and not self._t.is_closing():
            self._t.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._t.close()

    def write_eof(self) -> None:
        self._flush()
        self._t.write_eof()

    def __getattr__(self, name: str):
        return getattr(self._t, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Also drops a client whose request line and headers do not arrive within `head_timeout_s` of
    the connection, or of the request's first byte (uvicorn's keep-alive timeout covers only the idle
    time between requests: a client trickling a head, or sending nothing after the TLS handshake,
    held its connection for ever)."""

    head_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # A response given before its request's body was read (a refused upload) closes the
        # connection; TLS's orderly shutdown would keep reading (and discarding) what the client
        # still sends for up to 30 s. Give the client a moment to read the answer, then reset.
        if self.transport.is_closing() and self.cycle is not None and self.cycle.more_body:
            self.loop.call_later(UNREAD_BODY_LINGER_S, self.transport.abort)
        super().on_response_complete()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
