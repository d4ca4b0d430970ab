"""Lambda's Telemetry API inside the environment (PUT /2022-07-01/telemetry on AWS_LAMBDA_RUNTIME_API).

An extension subscribes an HTTP listener of its own (inside the sandbox) to the platform, function
and extension streams; init then POSTs it JSON arrays of events ({"time", "type", "record"}, schema
2022-12-13), batched by its buffering config. Platform events from before the subscription, while
the environment initializes, are kept (bounded) and replayed, so an extension subscribing during init
still sees platform.initStart. Delivery is best effort and never blocks init: a subscriber's queue is
bounded, what overflows is dropped and counted in a platform.logsDropped event.
"""
from __future__ import annotations

import collections
import http.client
import json
import threading
import time
import urllib.parse
from datetime import datetime, timezone

TELEMETRY_PATH = "/2022-07-01/telemetry"
SCHEMAS = ("2022-07-01", "2022-12-13", "2025-01-29")
# The older Logs API (PUT /2020-08-15/logs), still used by log-shipping layers: the same destinations,
# types and buffering, schemaVersion optional; its subscribers get the same stream of events.
LOGS_PATH = "/2020-08-15/logs"
LOGS_SCHEMAS = (None, "2020-08-15", "2021-03-18")
TYPES = ("platform", "function", "extension")
LOCAL_HOSTS = ("sandbox.localdomain", "sandbox", "localhost", "127.0.0.1")
# AWS's bounds and defaults for `buffering`
BOUNDS = {"maxItems": (25, 10_000, 1_000), "maxBytes": (262_144, 1_048_576, 262_144), "timeoutMs": (25, 30_000, 1_000)}
MAX_QUEUED = 10_000              # events per subscriber; past it (or MAX_QUEUED_BYTES) dropped and counted
MAX_QUEUED_BYTES = 16 * 1024 * 1024
MAX_BACKLOG = 1_000              # events kept from the init phase for later subscribers
POST_TIMEOUT_S = 5.0
MAX_LINE = 256 * 1024            # a longer line without an end is sent in pieces


class ValidationError(Exception):
    pass


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_subscription(body: bytes | None, logs_api: bool = False) -> tuple[tuple[str, int, str], list[str], dict]:
    """A Subscribe body -> ((host, port, path), types, buffering); ValidationError with AWS's wording."""
    try:
        doc = json.loads(body or b"")
    except ValueError:
        raise ValidationError("the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be an object")
    if logs_api and doc.get("schemaVersion") not in LOGS_SCHEMAS:
        raise ValidationError("schemaVersion must be 2020-08-15 or 2021-03-18")
    if not logs_api and doc.get("schemaVersion") not in SCHEMAS:
        raise ValidationError(f"schemaVersion must be one of {', '.join(SCHEMAS)}")
    dest = doc.get("destination")
    if not isinstance(dest, dict) or dest.get("protocol") != "HTTP" or not isinstance(dest.get("URI"), str):
        raise ValidationError("destination must be {\"protocol\": \"HTTP\", \"URI\": \"http://sandbox.localdomain:PORT\"}")
    url = urllib.parse.urlsplit(dest["URI"])
    try:
        port = url.port or 80
    except ValueError:
        raise ValidationError("destination URI has a bad port") from None
    if url.scheme != "http" or (url.hostname or "") not in LOCAL_HOSTS:
        raise ValidationError("destination URI must be an http URI on sandbox.localdomain")
    types = doc.get("types")
    if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
        raise ValidationError("types must list some of platform, function, extension")
    buffering = doc.get("buffering") or {}
    if not isinstance(buffering, dict):
        raise ValidationError("buffering must be an object")
    conf = {}
    for key, (low, high, default) in BOUNDS.items():
        value = buffering.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValidationError(f"buffering.{key} must be an integer from {low} to {high}")
        conf[key] = value
    return ("127.0.0.1", port, url.path or "/"), list(dict.fromkeys(types)), conf


class Subscriber:
    """One subscription: a queue and a thread POSTing batches to the extension's listener."""

    def __init__(self, name: str, dest: tuple[str, int, str], types: list[str], buffering: dict):
        self.name, self.dest, self.types, self.buffering = name, dest, set(types), buffering
        self.cond = threading.Condition()
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.dropped = 0
        threading.Thread(target=self._run, daemon=True, name=f"telemetry-{name}").start()

    def put(self, encoded: bytes) -> None:
        with self.cond:
            if len(self.queue) >= MAX_QUEUED or self.queued_bytes + len(encoded) > MAX_QUEUED_BYTES:
                self.dropped += 1
                return
            self.queue.append(encoded)
            self.queued_bytes += len(encoded)
            if len(self.queue) == 1 or len(self.queue) >= self.buffering["maxItems"]:
                self.cond.notify()        # the first starts the batch's timeout, a full batch goes now

    def _batch(self) -> list[bytes]:
        timeout = self.buffering["timeoutMs"] / 1000
        with self.cond:
            while not self.queue:
                self.cond.wait()
            end = time.monotonic() + timeout
            while len(self.queue) < self.buffering["maxItems"] and (left := end - time.monotonic()) > 0:
                self.cond.wait(left)
            batch: list[bytes] = []
            size = 2
            while self.queue and len(batch) < self.buffering["maxItems"]:
                if batch and size + len(self.queue[0]) + 1 > self.buffering["maxBytes"]:
                    break
                item = self.queue.popleft()
                self.queued_bytes -= len(item)
                batch.append(item)
                size += len(item) + 1
            if self.dropped:
                batch.append(_encode("platform.logsDropped", {"reason": "Some logs were dropped because the "
                                     "extension did not keep up", "droppedRecords": self.dropped, "droppedBytes": 0}))
                self.dropped = 0
            return batch

    def update(self, dest: tuple[str, int, str], types: list[str], buffering: dict) -> None:
        """A new Subscribe from the same extension replaces its settings (one thread per extension)."""
        with self.cond:
            self.dest, self.types, self.buffering = dest, set(types), buffering

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        sent_to = self.dest
        while True:
            body = b"[" + b",".join(self._batch()) + b"]"
            host, port, path = self.dest
            if self.dest != sent_to and conn is not None:
                conn.close()
                conn, sent_to = None, self.dest
            for _attempt in range(2):        # one retry on a fresh connection (a keep-alive closed by the peer)
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, port, timeout=POST_TIMEOUT_S)
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    conn.getresponse().read()
                    break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.05)


def _encode(kind: str, record) -> bytes:
    return json.dumps({"time": now_iso(), "type": kind, "record": record}, separators=(",", ":")).encode()


class Telemetry:
    """The environment's subscriptions. `subscribers` is empty unless an extension subscribed: init
    checks it before building any event, so a function without a subscriber pays nothing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribers: list[Subscriber] = []
        self.backlog: list[tuple[str, bytes]] | None = []   # until the init phase ends; then None
        self.wants_function = False
        self.wants_extension = False
        self.partials: dict[str, bytearray] = {}    # per stream, the line being written (one pump each)

    def subscribe(self, name: str, body: bytes | None, logs_api: bool = False) -> None:
        dest, types, buffering = parse_subscription(body, logs_api)
        with self.lock:
            sub = next((s for s in self.subscribers if s.name == name), None)
            if sub is not None:
                sub.update(dest, types, buffering)
            else:
                sub = Subscriber(name, dest, types, buffering)
                for kind, encoded in self.backlog or ():
                    if kind.split(".", 1)[0] in sub.types:
                        sub.put(encoded)
                self.subscribers = [*self.subscribers, sub]
            self.wants_function = any("function" in s.types for s in self.subscribers)
            self.wants_extension = any("extension" in s.types for s in self.subscribers)
        self.emit("platform.telemetrySubscription", {"name": name, "state": "Subscribed", "types": types})

    def end_init(self) -> None:
        with self.lock:
            self.backlog = None

    def emit(self, kind: str, record) -> None:
        """One event to every subscriber of its stream (the part of `kind` before the dot)."""
        if not self.subscribers and self.backlog is None:
            return
        encoded = _encode(kind, record)
        stream = kind.split(".", 1)[0]
        with self.lock:
            if self.backlog is not None and len(self.backlog) < MAX_BACKLOG:
                self.backlog.append((kind, encoded))
            subs = self.subscribers
        for sub in subs:
            if stream in sub.types:
                sub.put(encoded)

    def lines(self, stream: str, data: bytes) -> None:
        """Output of the function or of the extensions, one event per line (as AWS splits text logs):
        a line written in pieces is kept until its end arrives (at most MAX_LINE bytes)."""
        partial = self.partials.setdefault(stream, bytearray())
        partial += data
        *complete, rest = partial.split(b"\n")
        if len(rest) > MAX_LINE:
            complete.append(rest)
            rest = bytearray()
        partial[:] = rest
        for line in complete:
            if line.strip():
                self.emit(stream, _record_of(line.decode("utf-8", "replace").rstrip("\r")))


def _record_of(line: str):
    """A JSON log line (LogFormat=JSON) is its object; a text line is the string."""
    if line.startswith("{"):
        try:
            doc = json.loads(line)
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
    return line
