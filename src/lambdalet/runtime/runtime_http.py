"""A small HTTP/1.1 keep-alive server connection for init's Runtime API (runtime/init.py).

Replaces http.server there: its email.parser header parsing and buffered-file plumbing cost init
about as much CPU per invocation as the handler itself. This speaks exactly what Runtime API clients
send (awslambdaric's libcurl, curl bootstraps, http.client, Node's http, our python_bootstrap):
Content-Length or chunked bodies, `Expect: 100-continue`, keep-alive unless the client asks to close.
The peer is the tenant's runtime, so everything is bounded: the request head (64 KiB, 100 header
lines, as http.server), the body (over the caller's limit it is read and discarded, never buffered).
"""
from __future__ import annotations

import select
import socket
import threading
import time
from email.utils import formatdate

MAX_HEAD = 64 * 1024
MAX_HEADER_LINES = 100
MAX_CHUNK_LINE = 1024
_RECV = 256 * 1024
REASONS = {100: "Continue", 200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
           413: "Request Entity Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported"}


class BadRequest(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Request:
    __slots__ = ("method", "path", "headers", "body", "streamed")

    def __init__(self, method: str, path: str, headers: dict[str, str]):
        self.method, self.path, self.headers = method, path, headers
        self.body: bytes | None = b""       # None: larger than the limit (consumed, not kept)
        self.streamed = False               # the body is left to Connection.body_pieces()


_date_cache = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:            # formatting costs ~10 us; once a second is enough
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


class Connection:
    """One client connection: read_request() then reply(), in a loop, from one thread. reply() may
    also be called from another thread (init's relay answers a waiting /next): writes are locked."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.keep_alive = True
        self.write_lock = threading.Lock()
        self.trailers: dict[str, str] = {}   # of the last chunked body read
        self._pending_body: tuple[bool, int] | None = None   # (chunked, length) of a streamed body not yet read

    # -- reading ---------------------------------------------------------------------------------

    def _fill(self) -> bool:
        data = self.sock.recv(_RECV)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self, limit: int) -> bytes:
        """One CRLF (or LF) terminated line without its ending; BadRequest past `limit`."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                if i > limit:
                    raise BadRequest(400, "line too long")
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > limit:
                raise BadRequest(400, "line too long")
            if not self._fill():
                raise ConnectionError("closed mid-request")

    def _take(self, n: int, keep: bool) -> bytes:
        """The next n bytes (or b"" when not kept: read and dropped as they come)."""
        parts, need = [], n
        while need:
            if not self.buf and not self._fill():
                raise ConnectionError("closed mid-body")
            piece = self.buf[:need]
            need -= len(piece)
            del self.buf[:len(piece)]
            if keep:
                parts.append(piece)
        return b"".join(parts) if keep else b""

    def read_request(self, body_limit: int, stream=None) -> Request | None:
        """The next request, its body read (None when over body_limit); None when the client closed
        between requests. `stream(method, path, headers)` true: the body is not read here but piece
        by piece with body_pieces() (a streamed function response), before the next request."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, "request head too large")
            if not self._fill():
                if self.buf.strip():
                    raise ConnectionError("closed mid-request")
                return None
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        if end > MAX_HEAD:
            raise BadRequest(431, "request head too large")
        lines = head.lstrip("\r\n").split("\r\n")   # (a stray CRLF between requests is tolerated)
        if len(lines) > MAX_HEADER_LINES + 1:
            raise BadRequest(431, "too many headers")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400 if len(parts) != 3 else 505, "bad request line")
        method, path, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if not sep or not k or k != k.strip():
                raise BadRequest(400, "bad header line")
            k = k.lower()
            v = v.strip()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        conn = headers.get("connection", "").lower()
        self.keep_alive = "close" not in conn and (version != "HTTP/1.0" or "keep-alive" in conn)
        req = Request(method, path, headers)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if not chunked and length is not None and not length.isdigit():
            raise BadRequest(400, "bad Content-Length")
        if headers.get("expect", "").lower() == "100-continue" and version != "HTTP/1.0":
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")   # libcurl would otherwise wait 1 s
        self.trailers = {}
        if stream is not None and stream(method, path, headers):
            req.streamed, req.body = True, None
            self._pending_body = (chunked, int(length or 0))
            return req
        if chunked:
            req.body = self._chunked(body_limit)
        elif length and int(length):
            n = int(length)
            if n <= body_limit:
                req.body = self._take(n, keep=True)
            else:
                self._take(n, keep=False)
                req.body = None
        return req

    def _chunked(self, limit: int) -> bytes | None:
        """A whole chunked body; None past `limit` (what follows is read and dropped as it comes)."""
        parts, total = [], 0
        for piece in self._chunked_pieces(1 << 16):
            total += len(piece)
            if total <= limit:
                parts.append(piece)
            elif parts:
                parts = []                       # over the limit: drop what was kept too
        return b"".join(parts) if total <= limit else None

    def _chunked_pieces(self, piece_max: int):
        """The one decoder of a chunked body: its data as it arrives, in pieces of at most piece_max
        bytes, then its trailers (into self.trailers)."""
        while True:
            size_field = self._line(MAX_CHUNK_LINE).split(b";")[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size") from None
            if size < 0:
                raise BadRequest(400, "bad chunk size")
            if size == 0:
                self._read_trailers()
                return
            while size:
                piece = self._piece(min(size, piece_max))
                size -= len(piece)
                yield piece
            self._line(MAX_CHUNK_LINE)           # the CRLF after the chunk

    def _read_trailers(self) -> None:
        """The trailer fields after a chunked body, up to the empty line (bounded as a head is)."""
        size = 0
        while line := self._line(MAX_HEAD):
            size += len(line)
            if size > MAX_HEAD or len(self.trailers) >= MAX_HEADER_LINES:
                raise BadRequest(431, "trailers too large")
            k, sep, v = line.decode("latin-1").partition(":")
            if sep and k and k == k.strip():
                self.trailers[k.lower()] = v.strip()

    def body_pieces(self, piece_max: int):
        """The streamed body of the request read_request() left unread, as it arrives, in pieces of at
        most piece_max bytes (never the whole body in memory); trailers land in self.trailers."""
        pending, self._pending_body = self._pending_body, None
        if pending is None:
            return
        chunked, length = pending
        if not chunked:
            while length:
                piece = self._piece(min(length, piece_max))
                length -= len(piece)
                yield piece
            return
        yield from self._chunked_pieces(piece_max)

    def _piece(self, most: int) -> bytes:
        """Up to `most` bytes of what has arrived (waiting for at least one): a chunk is relayed as it
        comes, not once all of it is here."""
        if not self.buf and not self._fill():
            raise ConnectionError("closed mid-body")
        piece = bytes(self.buf[:most])
        del self.buf[:len(piece)]
        return piece

    # -- writing ---------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(data)

    def reply(self, code: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        head = [f"HTTP/1.1 {code} {REASONS.get(code, 'Unknown')}\r\nServer: lambdalet-init\r\n"
                f"Date: {_http_date()}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"]
        for k, v in headers:
            head.append(f"{k}: {v}\r\n")
        if not self.keep_alive:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1")
        with self.write_lock:
            if len(body) < 65536:
                self.sock.sendall(data + body)   # one write for head and body (no Nagle/delayed-ACK stall)
            else:
                self._sendmsg_all([data, body])  # large payloads: no 6 MB concatenation

    def _sendmsg_all(self, bufs: list[bytes]) -> None:
        views = [memoryview(b) for b in bufs]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if sent:
                views[0] = views[0][sent:]

    def hung_up(self) -> bool:
        """The client closed its end while we hold its request (a waiting event/next): one poll(0)."""
        p = select.poll()
        p.register(self.sock, select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000))
        return bool(p.poll(0))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def serve(listener: socket.socket, handle_connection) -> None:
    """Accept for ever; each connection in its own daemon thread (a /next may wait indefinitely)."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            time.sleep(0.01)             # e.g. EMFILE from a runtime holding connections: don't spin
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle_connection, args=(Connection(sock),), daemon=True).start()
