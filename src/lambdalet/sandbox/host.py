"""Host side of a bridged environment, shared by the namespace and process backends.

A backend supplies how the environment is launched, frozen, measured and torn down; this class
speaks the bridge protocol, enforces deadlines and turns what happened into an `InvokeResult`
shaped as AWS shapes it (START/END/REPORT log lines, Runtime.ExitError, Sandbox.Timedout).
Every frame from the environment is untrusted: bounded by bridge.MAX_BODY, anything odd kills it.
"""
from __future__ import annotations

import abc
import json
import logging
import math
import select
import socket
import threading
import time
from typing import Callable

from lambdalet.logs.platform import PlatformLog, now_iso
from lambdalet.observe import lifecycle
from lambdalet.runtime import api_proxy, bridge
from lambdalet.sandbox.api import (EnvironmentSpec, InitFailed, InvokeRequest, InvokeResult, NotDelivered, Sandbox,
                                   SandboxError)

log = logging.getLogger(__name__)
LOG_TAIL = 4096
INIT_TIMEOUT_S = 10.0                    # AWS's init phase limit for on-demand environments
SHUTDOWN_LIMIT_S = 2.0                   # AWS's shutdown phase with external extensions registered


class _Died(Exception):
    def __init__(self, status: str, taken: bool | None = None):
        self.status = status
        self.taken = taken        # from init's EXIT frame; None: init itself went without a word


class BridgedSandbox(Sandbox):
    # True where nothing inside the environment can end init (PID 1 of its own PID namespace): then a
    # bridge that closes before init said anything during an invocation means it was killed from
    # outside before it handed the event on. Under the process backend the function can kill init.
    init_outlives_tenant = False

    def __init__(self, spec: EnvironmentSpec, log_sink: Callable[[bytes], None] | None = None,
                 init_timeout_s: float = INIT_TIMEOUT_S, *, api_forwarder=None):
        self.spec = spec
        self.api_forwarder = api_forwarder    # the function's calls to the API (runtime/api_proxy.InProcessApi)
        self._sink = log_sink
        self._init_timeout = init_timeout_s
        self._sock: socket.socket | None = None
        self._reader = bridge.FrameReader()
        self._lock = threading.Lock()     # one invocation at a time; also guards state changes
        self._state = "new"               # new -> ready <-> frozen -> dead
        self._after_thaw = False          # the next INVOKE is the first since a thaw
        self._timings: dict = {}
        self._init_ms: float | None = None
        self._first_invoke = True
        self._log = bytearray()
        self._send_lock = threading.Lock()   # INVOKE and API responses (relay threads) share the socket
        self._relay: api_proxy.HostRelay | None = None
        self._last_mem = 0
        self._hangup: select.poll | None = None   # the bridge, watched for a hang-up at thaw
        self._platform = PlatformLog(spec.log_format, spec.system_log_level)   # START/REPORT as LoggingConfig says
        self._extensions: dict | None = None   # init's READY: the registered extensions (None: none)
        self._telemetry = False                # a Telemetry API subscriber wants platform.report

    # --- what a backend provides ---------------------------------------------------------------
    @abc.abstractmethod
    def _launch(self) -> socket.socket:
        """Create the environment; return the host end of its bridge socket."""
    @abc.abstractmethod
    def _kill(self) -> None:
        """Kill every process of the environment and release its resources. Idempotent."""
    @abc.abstractmethod
    def _do_freeze(self) -> None: ...
    @abc.abstractmethod
    def _do_thaw(self) -> None: ...
    def _init_done(self) -> None:
        """Called once the runtime is ready (e.g. to end the init-phase CPU boost)."""
    def _max_memory_mb(self) -> int:
        return 0
    def _oom_killed(self) -> bool:
        return False
    def _pids(self) -> list[int]:
        return []

    # --- contract --------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._state in ("ready", "frozen")

    def stats(self) -> dict:
        return {"state": self._state, "init_duration_ms": self._init_ms, "pids": self._pids(), **self._timings}

    def start(self) -> None:
        with self._lock:
            if self._state != "new":
                raise SandboxError(f"start() on a {self._state} sandbox")
            self._state = "starting"
            t0 = time.monotonic()
            try:
                self._sock = self._launch()
            except BaseException:
                self._teardown()
                raise
            self._timings["launch_ms"] = round((time.monotonic() - t0) * 1000, 3)
            deadline = t0 + self._init_timeout
            init_error: tuple[str, bytes] | None = None
            try:
                while True:
                    frame = self._next_frame(deadline)
                    if frame is None:
                        if init_error:           # e.g. an extension's init/error: nothing exits after it
                            self._fail_init_doc(*init_error)
                        self._fail_init("Sandbox.Timedout", f"Init timed out after {self._init_timeout:.2f} seconds")
                    kind, hdr, body = frame
                    if kind == bridge.READY and init_error is None:
                        self._timings.update({k: v for k, v in hdr.items() if isinstance(v, (int, float))})
                        if isinstance(hdr.get("extensions"), dict):
                            self._extensions = hdr["extensions"]
                        break
                    if kind == bridge.LOG:
                        self._emit(body)
                    elif kind == bridge.API_REQUEST:
                        self._api_request(hdr, body)
                    elif kind == bridge.SETUP_ERROR:
                        self._teardown()
                        raise SandboxError(f"environment set-up failed: {hdr.get('error')}")
                    elif kind == bridge.INIT_ERROR:
                        init_error = (str(hdr.get("error_type", "")), body)
                        deadline = min(deadline, time.monotonic() + 0.5)   # let it exit and flush logs
                    elif kind == bridge.EXIT:
                        raise _Died(str(hdr.get("status", "")))
            except _Died as d:
                if init_error:
                    self._fail_init_doc(*init_error)
                self._fail_init("Runtime.ExitError", f"RequestId:  Error: Runtime exited with error: {d.status}")
            self._init_done()
            self._init_ms = round((time.monotonic() - t0) * 1000, 3)
            self._timings["cold_start_ms"] = self._init_ms
            self._state = "ready"
            lifecycle.created(self.spec, self._init_ms, bool(self._timings.get("slot")))

    def invoke(self, req: InvokeRequest) -> InvokeResult:
        if not self._lock.acquire(blocking=False):
            raise SandboxError("sandbox is busy: one invocation at a time")
        try:
            if self._state == "frozen":
                self._thaw_checked()
            if self._state == "dead":
                msg = "Runtime exited without providing a reason"
                raise NotDelivered("the environment died while idle", InvokeResult(
                    payload=_doc("Runtime.ExitError", f"RequestId: {req.request_id} Error: {msg}"),
                    function_error="Unhandled", error_type="Runtime.ExitError"))
            if self._state != "ready":
                raise SandboxError(f"invoke() on a {self._state} sandbox")
            return self._invoke(req)
        finally:
            self._lock.release()

    def freeze(self) -> None:
        with self._lock:
            if self._state == "ready":
                self._do_freeze()
                self._state = "frozen"
                lifecycle.paused(self.spec, "freeze")

    def thaw(self) -> None:
        with self._lock:
            if self._state == "frozen":
                self._thaw_checked()

    def _thaw_checked(self) -> None:
        """Thaw; an environment whose bridge hung up while it was idle (its init is gone) is torn down
        instead of being handed an invocation. One poll(0): no cost worth measuring on the warm path.
        (Processes killed while frozen under cgroup v1 die only once thawed, after this check: the
        invocation then finds out, see NotDelivered in _invoke.)"""
        self._do_thaw()
        self._state = "ready"
        lifecycle.paused(self.spec, "thaw")
        self._after_thaw = True            # init checks the runtime for a kill pending since the freeze
        if self._hangup is None and self._sock is not None:
            self._hangup = select.poll()
            self._hangup.register(self._sock, select.POLLHUP | select.POLLERR)   # not POLLIN: logs may wait
        if self._hangup is not None and self._hangup.poll(0):
            lifecycle.crashed(self.spec, "died_idle", "died while idle; not used again")
            self._teardown()

    def destroy(self) -> None:
        if self._extensions and self._extensions.get("shutdown"):
            self._shutdown_extensions()
        self._teardown()

    def _shutdown_extensions(self) -> None:
        """AWS's shutdown phase: SHUTDOWN to the extensions registered for it, which get until init's
        SHUTDOWN_DONE or the limit (then everything is killed); their output still reaches the log."""
        if not self._lock.acquire(blocking=False):
            return                        # mid-invocation (server closing): no shutdown phase
        try:
            if self._state == "frozen":
                self._do_thaw()
                self._state = "ready"
            if self._state != "ready":
                return
            deadline = time.monotonic() + SHUTDOWN_LIMIT_S
            self._send(bridge.SHUTDOWN, {"reason": "spindown", "deadline_ms": int((time.time() + SHUTDOWN_LIMIT_S) * 1000)})
            while (frame := self._next_frame(deadline)) is not None:
                kind, hdr, body = frame
                if kind in (bridge.SHUTDOWN_DONE, bridge.EXIT):
                    return
                if kind == bridge.LOG:
                    self._emit(body)
                elif kind == bridge.API_REQUEST:
                    self._api_request(hdr, body)
        except (_Died, OSError, SandboxError):
            pass
        except Exception:
            log.exception("environment %s: shutdown phase failed", self.spec.env_id)
        finally:
            self._lock.release()

    # --- internals -------------------------------------------------------------------------------
    def _teardown(self) -> None:
        if self._state != "dead":
            self._last_mem = self._max_memory_mb()   # read before the cgroup goes
        self._state = "dead"
        try:
            self._kill()
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _fail_init(self, error_type: str, message: str):
        self._fail_init_doc(error_type, json.dumps({"errorType": error_type, "errorMessage": message}).encode())

    def _fail_init_doc(self, error_type: str, doc: bytes):
        self._teardown()
        try:
            error_type = json.loads(doc).get("errorType") or error_type
        except (ValueError, AttributeError):
            pass
        lifecycle.crashed(self.spec, "init", f"init failed: {error_type or 'Runtime.Unknown'}")
        raise InitFailed(InvokeResult(payload=doc, function_error="Unhandled", error_type=error_type or "Runtime.Unknown",
                                      log_tail=bytes(self._log[-LOG_TAIL:]), init_duration_ms=None))

    def _emit(self, data: bytes, platform: bool = False) -> None:
        self._log += data
        if len(self._log) > 4 * LOG_TAIL:          # keep only what a tail can need
            del self._log[: len(self._log) - LOG_TAIL]
        if self._sink is not None:
            try:
                # the platform's lines go to the sink marked as such (logs/sink.py LogSink.platform)
                (getattr(self._sink, "platform", self._sink) if platform else self._sink)(data)
            except Exception:
                log.exception("log sink failed")

    def _send(self, kind: int, header: dict, body: bytes = b"") -> None:
        with self._send_lock:
            sock = self._sock
            if sock is None:
                raise OSError("environment is gone")
            try:
                sock.sendall(bridge.encode(kind, header, body))
            except OSError:
                try:
                    sock.shutdown(socket.SHUT_RDWR)   # a partial frame: the stream is unusable
                except OSError:
                    pass
                raise

    def _api_request(self, header: dict, body: bytes) -> None:
        if self._relay is None:
            self._relay = api_proxy.HostRelay(self._send, self.api_forwarder)
        self._relay.handle(header, body)

    def _next_frame(self, deadline: float):
        """One frame, or None at the deadline (monotonic). Raises _Died when the bridge closes."""
        assert self._sock is not None
        while True:
            try:
                frame = self._reader.next_frame()
            except bridge.ProtocolError as e:
                log.warning("environment %s sent a bad frame: %s", self.spec.env_id, e)
                raise _Died("signal: killed", taken=True) from None    # it said something: never "not delivered"
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(1 << 20)
            except socket.timeout:
                return None
            except OSError:
                data = b""
            if not data:
                raise _Died("signal: killed" if self._oom_killed() else "")
            self._reader.feed(data)

    def _invoke(self, req: InvokeRequest) -> InvokeResult:
        rid = req.request_id
        self._log.clear()
        self._emit(self._platform.start(rid, self.spec.function_version, req.tenant_id), platform=True)
        hdr = {"request_id": rid, "deadline_ms": req.deadline_ms, "invoked_function_arn": req.invoked_function_arn,
               "client_context": req.client_context, "trace_id": req.trace_id}
        if req.tenant_id:
            hdr["tenant_id"] = req.tenant_id
        if self._after_thaw:
            hdr["after_thaw"] = True
            self._after_thaw = False
        t0 = time.monotonic()
        deadline = t0 + max(req.deadline_ms / 1000.0 - time.time(), 0.0)
        payload, ferr, etype = b"", None, None
        undelivered = False
        heard = False                      # any frame from the environment since INVOKE
        streamed = _Streamed(req.stream)   # a response the runtime streams: relayed, or buffered
        try:
            self._send(bridge.INVOKE, hdr, req.payload)
            while True:
                frame = self._next_frame(deadline)
                heard = True
                if frame is None:
                    payload, ferr, etype = self._timed_out(rid)
                    break
                kind, fh, body = frame
                if kind == bridge.LOG:
                    self._emit(body)
                elif kind == bridge.CHUNK and fh.get("request_id") == rid:
                    streamed.write(str(fh.get("content_type") or ""), body, deadline)
                elif kind == bridge.API_REQUEST:
                    self._api_request(fh, body)
                elif kind in (bridge.RESULT, bridge.ERROR) and fh.get("request_id") == rid:
                    payload = body if kind == bridge.ERROR or not fh.get("streamed") else streamed.buffered()
                    if kind == bridge.RESULT and streamed.size > len(payload):
                        payload, ferr, etype = _doc("Function.ResponseSizeTooLarge",
                                                    f"Response payload size ({streamed.size} bytes) exceeded maximum "
                                                    f"allowed payload size ({streamed.KEEP - 1} bytes)."), \
                            "Unhandled", "Function.ResponseSizeTooLarge"
                        break
                    if kind == bridge.ERROR:
                        ferr = "Unhandled"
                        try:
                            etype = json.loads(body).get("errorType")
                        except (ValueError, AttributeError):
                            etype = None
                        etype = etype or fh.get("error_type") or "Unhandled"
                    break
                elif kind == bridge.EXIT:
                    raise _Died(str(fh.get("status", "")), fh.get("taken") is not False)
            if self._extensions is not None and self._state == "ready":
                self._await_extensions(rid, deadline)
        except TimeoutError:                # the stream's reader did not take it before the deadline
            payload, ferr, etype = self._timed_out(rid)
        except (_Died, OSError) as d:
            status = d.status if isinstance(d, _Died) else ""
            oom = self._oom_killed()
            if oom:
                status = "signal: killed"
            self._teardown()
            lifecycle.crashed(self.spec, "oom" if oom else "exit", f"runtime exited: {status or 'no reason'}", rid)
            undelivered = self._never_taken(d, heard, oom) and not streamed.started
            msg = f"Runtime exited with error: {status}" if status else "Runtime exited without providing a reason"
            self._emit(f"{_now()} {rid} Error: {msg}\n".encode(), platform=True)
            payload, ferr, etype = _doc("Runtime.ExitError", f"RequestId: {rid} Error: {msg}"), "Unhandled", "Runtime.ExitError"
        dur = (time.monotonic() - t0) * 1000
        mem = self._max_memory_mb() if self.alive else self._last_mem
        init_ms = self._init_ms if self._first_invoke else None
        self._first_invoke = False
        self._emit(self._platform.end_and_report(rid, dur, self.spec.memory_mb, mem, init_ms, etype,
                                                    req.tenant_id), platform=True)
        if self._telemetry and self.alive:
            self._report_telemetry(rid, dur, mem, init_ms, etype)
        result = InvokeResult(payload=payload, function_error=ferr, error_type=etype,
                              log_tail=bytes(self._log[-LOG_TAIL:]),
                              duration_ms=round(dur, 3), max_memory_mb=mem, init_duration_ms=init_ms,
                              streamed=streamed.relayed)
        if undelivered:
            raise NotDelivered(f"environment {self.spec.env_id} was dead before its runtime took the event", result)
        return result

    def _await_extensions(self, rid: str, deadline: float) -> None:
        """After the runtime's answer, the invocation lasts until the extensions registered for INVOKE
        called next too (init's INVOKE_DONE), within the function's timeout; an extension that crashed
        or timed out leaves an environment that is not used again, as AWS resets it."""
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                self._emit(f"{_now()} {rid} Extensions did not finish within the function's timeout\n".encode(),
                           platform=True)
                self._teardown()
                return
            kind, fh, body = frame
            if kind == bridge.LOG:
                self._emit(body)
            elif kind == bridge.API_REQUEST:
                self._api_request(fh, body)
            elif kind == bridge.INVOKE_DONE:
                self._telemetry = bool(fh.get("telemetry"))
                if fh.get("reset"):
                    self._teardown()
                return
            elif kind == bridge.EXIT:
                raise _Died(str(fh.get("status", "")), True)

    def _report_telemetry(self, rid: str, dur: float, mem: int, init_ms: float | None, etype: str | None) -> None:
        """platform.report for the Telemetry API's subscribers (the host alone knows these numbers)."""
        metrics = {"durationMs": round(dur, 3), "billedDurationMs": math.ceil(dur),
                   "memorySizeMB": self.spec.memory_mb, "maxMemoryUsedMB": mem}
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 3)
        status = {"Sandbox.Timedout": "timeout", "Runtime.ExitError": "error"}.get(etype or "", "success")
        try:
            self._send(bridge.PLATFORM, {"type": "platform.report",
                                         "record": {"requestId": rid, "status": status, "metrics": metrics}})
        except OSError:
            pass

    def _timed_out(self, rid: str) -> tuple[bytes, str, str]:
        secs = self.spec.timeout_s
        self._teardown()
        lifecycle.crashed(self.spec, "timeout", f"task timed out after {secs:.2f} s", rid)
        self._emit(f"{_now()} {rid} Task timed out after {secs:.2f} seconds\n".encode(), platform=True)
        return (_doc("Sandbox.Timedout", f"RequestId: {rid} Error: Task timed out after {secs:.2f} seconds"),
                "Unhandled", "Sandbox.Timedout")

    def _never_taken(self, d: Exception, heard: bool, oom: bool) -> bool:
        """Did the environment die before its runtime was handed the event? Init's EXIT frame says so
        (taken=False); a send refused because the bridge was already closed, or (where init outlives the
        tenant) a bridge closing before init said anything, mean init was gone or killed from outside
        before it could hand the event on."""
        if isinstance(d, _Died) and d.taken is not None:
            return d.taken is False
        if heard or oom:
            return False
        return isinstance(d, OSError) or self.init_outlives_tenant


class _Streamed:
    """One invocation's streamed response: each CHUNK to the request's consumer, or (a buffered
    Invoke of a streaming function) gathered into the payload as AWS buffers it, up to the 6 MB the
    invoker enforces (what is past it is counted, not kept)."""

    __slots__ = ("sink", "started", "parts", "size")
    KEEP = 6 * 1024 * 1024 + 1          # one byte past Invoke's limit: enough for its size check to refuse

    def __init__(self, sink):
        self.sink, self.started, self.parts, self.size = sink, False, [], 0

    @property
    def relayed(self) -> bool:
        return self.sink is not None and self.started

    def write(self, content_type: str, data: bytes, deadline: float) -> None:
        self.started = True
        if self.sink is not None:
            self.sink.write(content_type, data, deadline)
            return
        if self.size < self.KEEP:
            self.parts.append(data[: self.KEEP - self.size])
        self.size += len(data)

    def buffered(self) -> bytes:
        return b"".join(self.parts)


def _doc(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _now() -> str:
    return now_iso()
