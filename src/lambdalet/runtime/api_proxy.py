"""The function's one way out: lambdalet's own API, reached through the bridge, never the network.

Environments have no network but loopback, so a function could not use the credentials of its
execution role (invoke/credentials.py) anywhere. This module gives it exactly one destination:

  inside   `ApiProxy` (run by init, PID 1): a small HTTP server on 127.0.0.1:9002 (next to the
           Runtime API on 9001; any free port under the process backend). init sets
           AWS_ENDPOINT_URL to it unless the function set its own, so boto3 and the AWS CLI inside
           use it unchanged. Each request becomes one API_REQUEST frame on the bridge
           (runtime/bridge.py) and waits for its API_RESPONSE.
  host     `HostRelay` (one per environment, sandbox/host.py): treats every frame as untrusted,
           bounds size, concurrency and rate, and hands the request to a forwarder, off the
           thread that reads the bridge.
  host     `InProcessApi`: the forwarder. It runs the request through the server's own ASGI app on
           the server's event loop, exactly as if it had arrived on the TLS socket: the function
           signs it (SigV4) with its session credentials, so authentication and authorization are
           the ordinary ones. Nothing is added: no header, no identity, no privilege. The URL's
           scheme/host/port are ignored: the only thing reachable is the API.

The request is not sent over TLS (it never leaves the host; the bridge is a socketpair), so
`aws:SecureTransport` is false for these calls, and `aws:SourceIp` is 127.0.0.1.

Limits (both ends; the host's are the ones that count, since init runs in the tenant's sandbox):
request body 7 MB (an Invoke payload is at most 6 MB), request headers 32 KB, response 7 MB,
16 requests in flight and 50 requests/s (burst 100) per environment. Refusals are answered as
AWS does: 413 RequestEntityTooLargeException, 429 TooManyRequestsException.

What one environment has buffered on the host, outside its cgroup, is bounded too (issue 21.9: 16
requests of 7 MB held ~190 MiB): request bodies from admission until answered, and response bodies
as they are collected, count against MAX_HELD_BYTES (12 MiB) per environment. A request that does
not fit beside the ones in flight is refused with 429 (it may be retried); a response that does not
fit is not collected, and answered 502.
"""
from __future__ import annotations

import http.server
import itertools
import json
import socketserver
import threading
import time
from typing import Callable

from lambdalet.runtime import bridge

MAX_REQUEST_BODY = 7 * 1024 * 1024
MAX_RESPONSE_BODY = 7 * 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_TARGET = 16 * 1024
DRAIN_LIMIT = 80 * 1024 * 1024   # a too-large body up to this is read and dropped before the 413
MAX_IN_FLIGHT = 16
MAX_HELD_BYTES = 12 * 1024 * 1024   # per environment: one largest request and a response beside it
RATE_PER_S = 50.0
BURST = 100.0
WAIT_S = 960.0            # a nested synchronous Invoke may last the callee's 900 s timeout plus a cold start
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
                         "te", "trailer", "transfer-encoding", "upgrade", "content-length"})

Headers = list  # [[name, value], ...]: order and repeats kept (SigV4 signs them)


def error_response(status: int, code: str, message: str) -> tuple[int, Headers, bytes]:
    """An AWS-shaped error (rest-json: boto3 reads the code from x-amzn-ErrorType)."""
    body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    return status, [["Content-Type", "application/json"], ["x-amzn-ErrorType", code]], body


# ====================================================================== inside the environment


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16

    def server_bind(self):
        # HTTPServer.server_bind resolves getfqdn(): a DNS lookup (and a lazy import) we do not want
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class ApiProxy:
    """init's side: HTTP in, frames out. `send(kind, header, body)` is init's locked bridge sender."""

    def __init__(self, send: Callable[[int, dict, bytes], None]):
        self._send = send
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, list] = {}
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self.server: _Server | None = None
        self.url = ""

    def start(self, host: str, port: int) -> str:
        self.server = _Server((host, port), _make_handler(self))
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 3600}, daemon=True).start()
        self.url = f"http://{host}:{self.server.server_address[1]}"
        return self.url

    def deliver(self, header: dict, body: bytes) -> None:
        """An API_RESPONSE frame from the host."""
        with self._lock:
            waiter = self._waiting.pop(header.get("id"), None)
        if waiter is not None:
            waiter[1] = (header, body)
            waiter[0].set()

    def call(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        if not self._slots.acquire(blocking=False):
            return error_response(429, "TooManyRequestsException", "Rate exceeded")
        try:
            rid = next(self._ids)
            waiter: list = [threading.Event(), None]
            with self._lock:
                self._waiting[rid] = waiter
            self._send(bridge.API_REQUEST, {"id": rid, "method": method, "target": target, "headers": headers}, body)
            if not waiter[0].wait(WAIT_S):
                with self._lock:
                    self._waiting.pop(rid, None)
                return error_response(504, "ServiceException", "The lambdalet API did not answer in time.")
            hdr, rbody = waiter[1]
            return int(hdr.get("status") or 502), list(hdr.get("headers") or []), rbody
        finally:
            self._slots.release()


def _read_body(h: http.server.BaseHTTPRequestHandler) -> bytes | None:
    """Content-Length or chunked; None when larger than MAX_REQUEST_BODY."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts, total = [], 0
        while True:
            size = int(h.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_REQUEST_BODY:
                return None
            parts.append(h.rfile.read(size))
            h.rfile.readline(1024)
    n = int(h.headers.get("Content-Length") or 0)
    if n > MAX_REQUEST_BODY:
        if n <= DRAIN_LIMIT:          # read and drop it, so the client sees the 413 and not a broken pipe
            while n > 0:
                chunk = h.rfile.read(min(n, 1 << 20))
                if not chunk:
                    break
                n -= len(chunk)
        return None
    return h.rfile.read(n) if n > 0 else b""


def _make_handler(proxy: ApiProxy):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lambdalet-api-proxy"
        sys_version = ""
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def _answer(self, status: int, headers: Headers, body: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                if str(k).lower() not in _HOP_BY_HOP and str(k).lower() not in ("server", "date"):
                    self.send_header(str(k), str(v))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            if not self.path.startswith("/") or len(self.path) > MAX_TARGET:
                self.close_connection = True
                return self._answer(*error_response(400, "InvalidRequestException",
                                                    "Only lambdalet's API is reachable: send origin-form requests."))
            try:
                body = _read_body(self)
            except ValueError:
                self.close_connection = True
                return self._answer(*error_response(400, "InvalidRequestException", "Malformed request body."))
            if body is None:
                self.close_connection = True
                return self._answer(*error_response(413, "RequestEntityTooLargeException",
                                                    f"Request must be smaller than {MAX_REQUEST_BODY} bytes."))
            headers = [[k, v] for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
            headers.append(["Content-Length", str(len(body))])
            if sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
                return self._answer(*error_response(431, "RequestHeaderFieldsTooLarge", "Request headers too large."))
            self._answer(*proxy.call(self.command, self.path, headers, body))

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    return Handler


# ====================================================================== on the host


class HeldBytes:
    """Bytes one environment has buffered on the host (request and response bodies in flight)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class Charge:
    """One response's share of an environment's HeldBytes, given back whole by `release` (after which
    nothing more is taken: a forwarder that timed out may still be collecting)."""

    def __init__(self, held: HeldBytes):
        self._held = held
        self._taken = 0
        self._closed = False
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self._closed or not self._held.take(n):
                return False
            self._taken += n
            return True

    def release(self) -> None:
        with self._lock:
            self._closed = True
            taken, self._taken = self._taken, 0
        self._held.give(taken)


class HostRelay:
    """The host's side for one environment: validate, limit, forward on a thread, answer by frame.
    `send(kind, header, body)` writes one frame to the environment (raises once it is gone);
    `forwarder(method, target, headers, body) -> (status, headers, body)` is InProcessApi."""

    def __init__(self, send: Callable[[int, dict, bytes], None], forwarder: Callable | None, *,
                 rate_per_s: float = RATE_PER_S, burst: float = BURST, max_in_flight: int = MAX_IN_FLIGHT,
                 max_held_bytes: int = MAX_HELD_BYTES,
                 clock: Callable[[], float] = time.monotonic, spawn: Callable[[Callable], None] | None = None):
        self._send = send
        self.forwarder = forwarder
        self.held = HeldBytes(max_held_bytes)
        self._rate, self._burst, self._max = rate_per_s, burst, max_in_flight
        self._clock = clock
        self._tokens, self._last = burst, clock()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._spawn = spawn or (lambda fn: threading.Thread(target=fn, name="api-relay", daemon=True).start())

    def handle(self, header: dict, body: bytes) -> None:
        """One API_REQUEST frame. Never raises, never blocks on the forwarder."""
        rid = header.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            return                                   # nobody to answer
        method, target, headers = header.get("method"), header.get("target"), header.get("headers")
        if (method not in METHODS or not isinstance(target, str) or not target.startswith("/")
                or len(target) > MAX_TARGET or not _valid_headers(headers)):
            return self._reply(rid, *error_response(400, "InvalidRequestException", "Malformed API request."))
        if len(body) > min(MAX_REQUEST_BODY, self.held.limit):
            return self._reply(rid, *error_response(413, "RequestEntityTooLargeException",
                                                    f"Request must be smaller than "
                                                    f"{min(MAX_REQUEST_BODY, self.held.limit)} bytes."))
        if self.forwarder is None:
            return self._reply(rid, *error_response(503, "ServiceException",
                                                    "lambdalet's API is not reachable from this environment."))
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1 or self._in_flight >= self._max or not self.held.take(len(body)):
                limited = True
            else:
                limited = False
                self._tokens -= 1
                self._in_flight += 1
        if limited:
            return self._reply(rid, *error_response(429, "TooManyRequestsException", "Rate exceeded"))
        self._spawn(lambda: self._run(rid, method, target, headers, body))

    def _run(self, rid: int, method: str, target: str, headers: Headers, body: bytes) -> None:
        charge = Charge(self.held)
        try:
            if getattr(self.forwarder, "charges_response", False):     # InProcessApi: counted as collected
                status, rheaders, rbody = self.forwarder(method, target, headers, body, held=charge)
            else:
                status, rheaders, rbody = self.forwarder(method, target, headers, body)
        except Exception:
            import logging      # host only: init never imports logging
            logging.getLogger("lambdalet.api_proxy").exception("forwarding an API request from an environment failed")
            status, rheaders, rbody = error_response(500, "ServiceException", "An internal error occurred.")
        finally:
            with self._lock:
                self._in_flight -= 1
        if len(rbody) > MAX_RESPONSE_BODY:
            status, rheaders, rbody = error_response(502, "ServiceException", "The response is too large to relay.")
        try:
            self._reply(rid, status, rheaders, rbody)
        finally:             # the request's body (still referenced until now) and the response's
            self.held.give(len(body))
            charge.release()

    def _reply(self, rid: int, status: int, headers: Headers, body: bytes) -> None:
        try:
            self._send(bridge.API_RESPONSE, {"id": rid, "status": status, "headers": headers}, body)
        except Exception:
            pass                                     # the environment is gone (or going): nobody waits


def _valid_headers(headers) -> bool:
    if not isinstance(headers, list) or len(headers) > 200:
        return False
    size = 0
    for pair in headers:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            return False
        size += len(pair[0]) + len(pair[1])
    return size <= MAX_HEADER_BYTES


class InProcessApi:
    """The forwarder: a request from an environment runs through the server's ASGI app on the
    server's event loop (captured by `wrap`, which the server puts around its app), like a request
    from the socket. Host only (asyncio is imported lazily: init never needs it)."""

    charges_response = True    # HostRelay passes its environment's HeldBytes (`held`)

    def __init__(self, app=None, *, timeout_s: float = WAIT_S, client: tuple[str, int] = ("127.0.0.1", 0)):
        self.app = app     # None until `wrap`: the server makes the forwarder before the app that serves it
        self.timeout_s = timeout_s
        self.client = client
        self.loop = None

    def wrap(self, asgi_app):
        """The ASGI app to serve, and to forward to: notes the running loop (at lifespan startup),
        then delegates."""
        import asyncio
        if self.app is None:
            self.app = asgi_app

        async def app(scope, receive, send):
            if self.loop is None:
                self.loop = asyncio.get_running_loop()
            await asgi_app(scope, receive, send)
        return app

    def __call__(self, method: str, target: str, headers: Headers, body: bytes,
                 held: Charge | None = None) -> tuple[int, Headers, bytes]:
        """The response. With `held`, its body is charged there chunk by chunk (the caller releases it
        once the answer is sent); one that does not fit is dropped and answered 502."""
        import asyncio
        if self.loop is None or self.loop.is_closed():
            return error_response(503, "ServiceException", "lambdalet's API is not running.")
        try:
            raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            path, _, query = target.partition("?")
            raw_path = path.encode("latin-1")
        except UnicodeEncodeError:
            return error_response(400, "InvalidRequestException", "Headers and the path must be ASCII.")
        future = asyncio.run_coroutine_threadsafe(
            self._request(method, path, raw_path, query, raw_headers, body, held), self.loop)
        try:
            return future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            return error_response(504, "ServiceException", "The lambdalet API did not answer in time.")

    async def _request(self, method, path, raw_path, query, raw_headers, body, held=None):
        import asyncio
        from urllib.parse import unquote
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": unquote(path), "raw_path": raw_path,
                 "query_string": query.encode("latin-1"), "root_path": "", "headers": raw_headers,
                 "client": self.client, "server": ("127.0.0.1", 9002), "state": {}}
        done = asyncio.Event()
        sent_body = False
        status, out_headers, chunks, size = 500, [], [], 0
        over = False          # the body outgrew what this environment may hold: nothing more is kept

        async def receive():
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status, out_headers, size, over
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                size += len(data)
                if not over and size <= MAX_RESPONSE_BODY and (held is None or held.take(len(data))):
                    chunks.append(data)
                elif not over:
                    over = True          # what was taken stays charged until the relay releases it
                    chunks.clear()
                if not message.get("more_body", False):
                    done.set()
        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        if over or size > MAX_RESPONSE_BODY:
            return error_response(502, "ServiceException", "The response is too large to relay.")
        return status, out_headers, b"".join(chunks)
