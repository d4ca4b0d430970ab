"""Lambda's Extensions API inside the environment (served by init on AWS_LAMBDA_RUNTIME_API).

External extensions are the executables in /opt/extensions, started before the runtime; init starts
the runtime once each has registered. Internal extensions register from the runtime's own process
while it initializes (INVOKE only, as on AWS). Every registered extension must call event/next for
the init phase to end, and those registered for INVOKE must call it again for an invocation to end.
The peers are the tenant's own processes: every input is bounded and checked, nothing here trusts
them more than the runtime.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
import uuid

EXT_API = "/2020-01-01/extension"
EXTENSIONS_DIR = "/opt/extensions"
MAX_EXTENSIONS = 10                      # AWS: up to 10 extensions per function
MAX_NAME = 256
ERROR_TYPE_HEADER = "lambda-extension-function-error-type"


class ApiError(Exception):
    """An Extensions API error answer: status and AWS's errorType."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type = status, error_type

    def body(self) -> bytes:
        return json.dumps({"errorType": self.error_type, "errorMessage": str(self)}).encode()


class Extension:
    __slots__ = ("id", "name", "external", "events", "queue", "ready", "gone")

    def __init__(self, name: str, external: bool, events: set[str]):
        self.id = str(uuid.uuid4())
        self.name, self.external, self.events = name, external, events
        self.queue: collections.deque[dict] = collections.deque()
        self.ready = False            # waiting in event/next with nothing queued: done with the last phase
        self.gone = False             # its process ended (external)


def external_executables(directory: str = EXTENSIONS_DIR) -> list[str]:
    """/opt/extensions' executables in name order (AWS starts them in alphabetical order)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    paths = [os.path.join(directory, n) for n in names]
    return [p for p in paths if os.path.isfile(p) and os.access(p, os.X_OK)][:MAX_EXTENSIONS]


class Extensions:
    """The registry and its events. `cond` is init's condition: the runtime's and the extensions'
    readiness are decided under one lock. `on_change()` is called (holding it) whenever an extension
    becomes ready or goes away, so init can end a phase."""

    def __init__(self, cond: threading.Condition, info: dict, account_id: str, on_change):
        self.cond = cond
        self.info = info                  # functionName, functionVersion, handler
        self.account_id = account_id
        self.on_change = on_change
        self.expected: dict[int, str] = {}   # pid -> file name of a launched external extension
        self.by_id: dict[str, Extension] = {}
        self.open = True                  # registration closes with the init phase
        self.active = False               # any extension registered: the per-invocation work is on
        self.failure: tuple[str, str] | None = None   # (errorType, message) of an extension's crash

    # -- the API --------------------------------------------------------------------------------

    def register(self, headers: dict[str, str], body: bytes | None) -> tuple[Extension, bytes, list[tuple[str, str]]]:
        name = headers.get("lambda-extension-name", "")
        if not name or len(name) > MAX_NAME:
            raise ApiError(403, "Extension.InvalidExtensionName", "Empty or invalid Lambda-Extension-Name")
        try:
            doc = json.loads(body or b"{}")
            events = doc.get("events", []) if isinstance(doc, dict) else None
        except ValueError:
            events = None
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ApiError(403, "InvalidRequestFormat", "the body must be {\"events\": [...]}")
        with self.cond:
            if not self.open:
                raise ApiError(403, "Extension.RegistrationServiceOff", "registration is closed after the init phase")
            if any(e.name == name for e in self.by_id.values()):
                raise ApiError(403, "Extension.AlreadyRegistered", f"extension {name} is already registered")
            if len(self.by_id) >= MAX_EXTENSIONS:
                raise ApiError(403, "Extension.TooManyExtensions", f"at most {MAX_EXTENSIONS} extensions")
            external = name in self.expected.values()
            for e in events:
                if e == "SHUTDOWN" and not external:
                    raise ApiError(403, "ShutdownEventNotSupportedForInternalExtension",
                                   f"internal extension {name} cannot register for SHUTDOWN")
                if e not in ("INVOKE", "SHUTDOWN"):
                    raise ApiError(403, "Extension.InvalidEventType", f"{e[:64]}: ErrorInvalidEventType")
            ext = Extension(name, external, set(events))
            self.by_id[ext.id] = ext
            self.active = True
            self.cond.notify_all()
        reply = dict(self.info)
        if "accountId" in headers.get("lambda-extension-accept-feature", ""):
            reply["accountId"] = self.account_id
        return ext, json.dumps(reply).encode(), [("Lambda-Extension-Identifier", ext.id)]

    def lookup(self, headers: dict[str, str]) -> Extension:
        ext_id = headers.get("lambda-extension-identifier", "")
        if not ext_id:
            raise ApiError(403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")
        ext = self.by_id.get(ext_id)
        if ext is None:
            raise ApiError(403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
        return ext

    def next_event(self, ext: Extension, hung_up) -> dict | None:
        """Block until the extension's next event; None when its connection went away meanwhile."""
        with self.cond:
            if not ext.queue:
                ext.ready = True
                self.on_change()
            while not ext.queue:
                self.cond.wait(1.0)
                if not ext.queue and hung_up():
                    ext.ready = True          # (a client gone while waiting: nothing to deliver to)
                    return None
            ext.ready = False
            return ext.queue.popleft()

    # -- events from init -------------------------------------------------------------------------

    def deliver_invoke(self, hdr: dict) -> None:
        event = {"eventType": "INVOKE", "deadlineMs": hdr["deadline_ms"], "requestId": hdr["request_id"],
                 "invokedFunctionArn": hdr["invoked_function_arn"]}
        if hdr.get("trace_id"):
            event["tracing"] = {"type": "X-Amzn-Trace-Id", "value": hdr["trace_id"]}
        self._deliver("INVOKE", event)

    def deliver_shutdown(self, reason: str, deadline_ms: int) -> None:
        self._deliver("SHUTDOWN", {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms})

    def _deliver(self, kind: str, event: dict) -> None:
        with self.cond:
            for ext in self.by_id.values():
                if kind in ext.events and not ext.gone:
                    ext.queue.append(event)
                    ext.ready = False
            self.cond.notify_all()

    def all_ready(self, kind: str | None = None) -> bool:
        """Every extension (registered for `kind`, if given) waits in event/next or is gone. Caller holds cond."""
        return all(e.ready or e.gone for e in self.by_id.values() if kind is None or kind in e.events)

    def any_gone(self) -> bool:
        return any(e.gone for e in self.by_id.values())

    def wants_shutdown(self) -> bool:
        return any("SHUTDOWN" in e.events for e in self.by_id.values())

    def summary(self) -> dict:
        return {"names": [e.name for e in self.by_id.values()],
                "shutdown": self.wants_shutdown()}

    # -- external extensions' processes ---------------------------------------------------------

    def launch(self, paths: list[str], env: dict[str, str], out_fd: int, devnull: int) -> None:
        """Start /opt/extensions' executables (stdout/stderr into `out_fd`); a failure to start one is
        the init phase's error (Extension.LaunchError)."""
        for path in paths:
            try:
                pid = os.posix_spawn(path, [path], env, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out_fd, 1),
                    (os.POSIX_SPAWN_DUP2, out_fd, 2)])
            except OSError as e:
                self.failure = ("Extension.LaunchError", f"fork/exec {path}: {(e.strerror or str(e)).lower()}")
                return
            with self.cond:
                self.expected[pid] = os.path.basename(path)

    def wait_registered(self, timeout_s: float) -> None:
        """Until every launched external extension registered (or one failed): the runtime starts after."""
        end = time.monotonic() + timeout_s
        with self.cond:
            while self.failure is None and not self._externals_registered():
                left = end - time.monotonic()
                if left <= 0:
                    self.failure = ("Extension.InitError", "an extension did not register in time")
                    return
                self.cond.wait(min(left, 0.02))
                self._reap_early()

    def _reap_early(self) -> None:
        """Init's reaper starts with the runtime, after this wait: an extension ending before it
        registered is noticed here (waitpid on our own children only)."""
        for pid in list(self.expected):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                code = os.waitstatus_to_exitcode(status)
                self.exited(pid, f"exit status {code}" if code >= 0 else f"signal {-code}")

    def _externals_registered(self) -> bool:
        names = {e.name for e in self.by_id.values()}
        return all(n in names for n in self.expected.values())

    def exited(self, pid: int, status: str) -> bool:
        """An external extension's process ended (init's reaper). True if it was one of ours."""
        with self.cond:
            name = self.expected.get(pid)
            if name is None:
                return False
            ext = next((e for e in self.by_id.values() if e.name == name), None)
            if ext is not None:
                ext.gone = True
            if self.open and self.failure is None:   # during init: the init phase fails
                self.failure = ("Extension.Crash", f"extension {name} exited: {status}")
            self.cond.notify_all()
            self.on_change()
            return True
