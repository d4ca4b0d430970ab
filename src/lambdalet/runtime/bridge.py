"""The tiny framed protocol between the host and the environment's init, over one inherited socket.

Frame: kind (1 byte) | header length (4, big-endian) | body length (4) | JSON header | body.
The host treats every frame from init as untrusted input: sizes are capped, JSON is parsed, and a
malformed frame ends the environment.
"""
from __future__ import annotations

import json
import socket
import struct

# host -> init
INVOKE = 1
SHUTDOWN = 3      # the environment is going away: header {"reason", "deadline_ms"}; extensions get SHUTDOWN
PLATFORM = 4      # a platform event for Telemetry API subscribers: header {"type", "record"} (sent only when
                  # init said a subscriber exists)
# init -> host
READY = 10        # runtime asked for its first event; header carries init-side timings
RESULT = 11       # /response: body is the payload
ERROR = 12        # /error: header error_type, body the JSON error document
INIT_ERROR = 13   # /init/error
LOG = 14          # body: bytes the runtime wrote to stdout/stderr
EXIT = 15         # runtime process ended: header {"status": "exit status 1" | "signal: killed", "taken": bool}
                  # (taken: an event was handed to the runtime and not answered)
SETUP_ERROR = 16  # the sandbox could not be built (a platform failure, not the function's)
SLOT_READY = 17   # a pre-isolated slot is built and waits for its CONFIG (header: its build timings)
CHUNK = 18        # a piece of a streamed response (Lambda-Runtime-Function-Response-Mode: streaming):
                  # header {request_id, content_type}, body <= MAX_CHUNK bytes; then RESULT or ERROR
                  # with header "streamed": true ends it (ERROR: the runtime's error trailers)
INVOKE_DONE = 19  # with extensions registered: runtime and extensions all called next after the invocation
                  # (header {"telemetry": bool, "reset": bool}); never sent when no extension registered
SHUTDOWN_DONE = 20   # every extension registered for SHUTDOWN called next again (or exited)
# the function's calls to this server's API (runtime/api_proxy.py); numbered apart from the rest
API_REQUEST = 41   # init -> host: header {id, method, target, headers}, body the request body
API_RESPONSE = 40  # host -> init: header {id, status, headers}, body the response body

_HDR = struct.Struct(">BII")
MAX_HEADER = 64 * 1024
MAX_BODY = 8 * 1024 * 1024   # > the 6 MB response limit, which init enforces itself
MAX_CHUNK = 256 * 1024       # a streamed response crosses in pieces this large at most
MAX_STREAMED = 200 * 1024 * 1024   # AWS's limit for a streamed response (it was 20 MB until 2025)


class BridgeClosed(Exception):
    pass


class ProtocolError(Exception):
    pass


def encode(kind: int, header: dict | None = None, body: bytes = b"") -> bytes:
    h = json.dumps(header or {}, separators=(",", ":")).encode()
    return _HDR.pack(kind, len(h), len(body)) + h + body


def send(sock: socket.socket, kind: int, header: dict | None = None, body: bytes = b"") -> None:
    sock.sendall(encode(kind, header, body))


class FrameReader:
    """Incremental decoder: feed() bytes, then pop complete frames with next_frame()."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def unread(self, kind: int, header: dict, body: bytes) -> None:
        """Put a frame back in front (a loop handing the stream on to another, runtime/pychannel.py)."""
        self._buf[:0] = encode(kind, header, body)

    def next_frame(self) -> tuple[int, dict, bytes] | None:
        if len(self._buf) < _HDR.size:
            return None
        kind, hlen, blen = _HDR.unpack_from(self._buf)
        if hlen > MAX_HEADER or blen > MAX_BODY:
            raise ProtocolError(f"frame too large ({hlen}/{blen})")
        end = _HDR.size + hlen + blen
        if len(self._buf) < end:
            return None
        try:
            header = json.loads(bytes(self._buf[_HDR.size:_HDR.size + hlen]) or b"{}")
        except ValueError as e:
            raise ProtocolError(f"bad frame header: {e}") from None
        if not isinstance(header, dict):
            raise ProtocolError("frame header is not an object")
        body = bytes(self._buf[_HDR.size + hlen:end])
        del self._buf[:end]
        return kind, header, body


def recv_blocking(sock: socket.socket, reader: FrameReader) -> tuple[int, dict, bytes]:
    """Read until one frame is complete (used by init, which trusts nothing but waits forever)."""
    while True:
        frame = reader.next_frame()
        if frame is not None:
            return frame
        data = sock.recv(65536)
        if not data:
            raise BridgeClosed()
        reader.feed(data)
