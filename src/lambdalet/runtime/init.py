"""The environment's init: PID 1 of its PID namespace (or a plain child under the process backend).

It serves Lambda's Runtime API on 127.0.0.1:9001 to ONE runtime process it spawns, and relays
between that API and the host over the inherited bridge socket (runtime/bridge.py):
INVOKE frames become /next responses; /response, /error, /init/error become frames; everything
the runtime writes to stdout/stderr becomes LOG frames, drained before each result so an
invocation's log is complete when its result arrives. When the runtime exits, init reports EXIT and
ends, which (as PID 1) takes the whole namespace down. When the host closes the bridge, init ends.
The same address serves the Extensions API (extensions.py: /opt/extensions' executables start
before the runtime; READY and, after an invocation, INVOKE_DONE wait for every extension's next) and
the Telemetry API (telemetry.py). Without a registered extension none of that adds work.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from lambdalet.runtime import api_proxy, bridge, extensions, init_extensions, pyfork, runtime_http, telemetry
from lambdalet.runtime import pychannel

MAX_RESPONSE = 6 * 1024 * 1024 + 100   # AWS: 6291556 bytes
API = "/2018-06-01/runtime"
CONFIG = 2                              # process backend only: first frame carries InitConfig


@dataclass
class InitConfig:
    argv: list[str]                     # the runtime process (bootstrap) and its arguments
    env: dict[str, str]                 # its complete environment; AWS_LAMBDA_RUNTIME_API filled in here
    cwd: str = "/var/task"
    host: str = "127.0.0.1"
    port: int = 9001                    # 0 under the process backend (many envs share the host's lo)
    pid1: bool = True                   # reap every orphan, not just the runtime
    timings: dict = field(default_factory=dict)   # set-up steps measured before init started
    python_fork: bool = False           # argv is our python_bootstrap: fork it from init, no exec (pyfork.py)
    account_id: str = ""                # the Extensions API's accountId (Lambda-Extension-Accept-Feature)


class _State:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.pending: tuple[dict, bytes] | None = None
        self.current: str | None = None
        self.streaming: str | None = None   # the request id whose response is being streamed
        self.ready_sent = False
        self.log_fd = -1
        self.log_lock = threading.Lock()
        self.timings: dict = {}
        self.t_spawn = 0.0
        self.runtime_pid = 0            # set by the reaper, which every spawn path starts
        self.exts: extensions.Extensions | None = None   # once the configuration is known
        self.telemetry = telemetry.Telemetry()
        self.runtime_ready = False      # the runtime's first /next (its init is done)
        self.runtime_waiting = False    # the runtime waits in /next (for INVOKE_DONE)
        self.invoking = False           # extensions got an INVOKE: INVOKE_DONE is owed to the host
        self.shutting = False           # SHUTDOWN delivered: SHUTDOWN_DONE is owed
        self.init_failed = False
        self.version = "$LATEST"
        self.t_invoke = 0.0
        self.ext_log_fd = -1            # the external extensions' output pipe (their own pump)
        self.ext_log_lock = threading.Lock()

    def send(self, kind: int, header: dict | None = None, body: bytes = b"") -> None:
        with self.send_lock:
            try:
                bridge.send(self.sock, kind, header, body)
            except OSError:
                os._exit(3)   # host is gone: nothing left to serve

    def drain_logs(self) -> None:
        """Forward whatever the runtime has written so far (non-blocking)."""
        with self.log_lock:
            while True:
                try:
                    data = os.read(self.log_fd, 65536)
                except BlockingIOError:
                    return
                except OSError:
                    return
                if not data:
                    return
                self.send(bridge.LOG, None, data)
                if self.telemetry.wants_function:
                    self.telemetry.lines("function", data)


_NOT_FOUND = json.dumps({"errorType": "NotFound", "errorMessage": "unknown path"}).encode()
_ACCEPTED = b'{"status": "OK"}'


def _serve_connection(st: _State, conn: runtime_http.Connection) -> None:
    """One Runtime API connection (a runtime keeps one alive): requests in order until it closes."""
    try:
        while True:
            try:
                req = conn.read_request(MAX_RESPONSE, _streamed)
            except runtime_http.BadRequest as e:
                conn.keep_alive = False
                conn.reply(e.code, json.dumps({"errorType": "BadRequest", "errorMessage": str(e)}).encode())
                return
            if req is None:
                return
            if not req.path.startswith(API):
                init_extensions.serve_api(st, conn, req)
            elif req.method == "GET":
                _next(st, conn, req)
            elif req.method == "POST":
                _post(st, conn, req)
            else:
                conn.reply(501, json.dumps({"errorType": "NotImplemented",
                                            "errorMessage": f"unsupported method {req.method[:64]}"}).encode())
            if not conn.keep_alive:
                return
    except OSError:
        return
    finally:
        conn.close()


def _next(st: _State, conn: runtime_http.Connection, req: runtime_http.Request) -> None:
    if req.path != API + "/invocation/next":
        return conn.reply(404, _NOT_FOUND)
    with st.cond:
        if not st.ready_sent:
            _runtime_asks_first(st)
        elif st.invoking:
            st.runtime_waiting = True
            init_extensions.phase_check(st)
        while st.pending is None:
            st.cond.wait()
        hdr, payload = st.pending
        # a runtime killed while frozen still looks alive until scheduled: /proc is read only after a thaw
        if _hung_up(conn.sock) or (hdr.get("after_thaw") and _kill_pending(st.runtime_pid)):
            return      # the runtime is gone (killed while frozen): the event stays untaken, EXIT says so
        st.pending = None
        st.runtime_waiting = False
        st.current = hdr["request_id"]
    headers = [("Lambda-Runtime-Aws-Request-Id", hdr["request_id"]),
               ("Lambda-Runtime-Deadline-Ms", str(hdr["deadline_ms"])),
               ("Lambda-Runtime-Invoked-Function-Arn", hdr["invoked_function_arn"]),
               ("Lambda-Runtime-Trace-Id", hdr.get("trace_id") or "")]
    if hdr.get("client_context"):
        headers.append(("Lambda-Runtime-Client-Context", hdr["client_context"]))
    if hdr.get("tenant_id"):      # PER_TENANT functions: the runtime's context.tenant_id
        headers.append(("Lambda-Runtime-Aws-Tenant-Id", hdr["tenant_id"]))
    conn.reply(200, payload, headers)


def _runtime_asks_first(st: _State) -> None:
    """Caller holds st.cond. The runtime's first request for an event: its init is done."""
    if not st.runtime_ready:
        st.runtime_ready = True
        st.timings["runtime_init_ms"] = round((time.monotonic() - st.t_spawn) * 1000, 3)
        st.telemetry.emit("platform.initRuntimeDone", {"initializationType": "on-demand",
                                                       "phase": "init", "status": "success"})
    init_extensions.phase_check(st)


_HANGUP = select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


def _kill_pending(pid: int) -> bool:
    """The runtime was SIGKILLed while frozen and has not run since the thaw (so its socket still looks
    open): the kill is pending in its /proc status, or it is already a zombie."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & (1 << (signal.SIGKILL - 1)):
                    return True
                if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                    return True
    except (OSError, ValueError, IndexError):
        return False
    return False


def _hung_up(sock: socket.socket) -> bool:
    """A runtime waiting on /next sends nothing more on its connection: anything readable there now is
    its end closing (one poll(0), once per invocation, inside the environment)."""
    p = select.poll()
    p.register(sock, _HANGUP)
    return bool(p.poll(0))


def _streamed(method: str, path: str, headers: dict[str, str]) -> bool:
    """A /response the runtime streams (AWS's custom-runtime streaming): relayed as it arrives."""
    return (method == "POST" and path.endswith("/response")
            and headers.get("lambda-runtime-function-response-mode", "").lower() == "streaming")


def _post(st: _State, conn: runtime_http.Connection, req: runtime_http.Request) -> None:
    # /2018-06-01/runtime/invocation/{id}/response|error  or  /2018-06-01/runtime/init/error
    path, body = req.path, req.body
    error_type = req.headers.get("lambda-runtime-function-error-type", "")
    if path == API + "/init/error":
        st.drain_logs()
        st.send(bridge.INIT_ERROR, {"error_type": error_type}, (body or b"")[:MAX_RESPONSE])
        return conn.reply(202, _ACCEPTED)
    parts = path.split("/")
    if len(parts) != 6 or path[: len(API) + 12] != API + "/invocation/" or parts[5] not in ("response", "error"):
        return conn.reply(404, _NOT_FOUND)
    rid = parts[4]
    with st.cond:
        if rid != st.current:
            if req.streamed:
                conn.keep_alive = False          # its body is not read: the connection cannot go on
            return conn.reply(400, json.dumps({"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"}).encode())
        st.current = None
        if req.streamed:
            st.streaming = rid
    if req.streamed:
        return _relay_stream(st, conn, req, rid)
    st.drain_logs()
    if body is None:
        msg = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE} bytes)."
        st.send(bridge.ERROR, {"request_id": rid, "error_type": "Function.ResponseSizeTooLarge"},
                json.dumps({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}).encode())
        return conn.reply(413, json.dumps({"errorType": "RequestEntityTooLarge", "errorMessage": msg}).encode())
    if parts[5] == "response":
        st.send(bridge.RESULT, {"request_id": rid}, body)
    else:
        st.send(bridge.ERROR, {"request_id": rid, "error_type": error_type}, body)
    if st.telemetry.subscribers:
        init_extensions.runtime_done(st, rid, parts[5] == "response", len(body))
    conn.reply(202, _ACCEPTED)


_STREAM_TOO_LARGE = f"Response payload size exceeded maximum allowed payload size ({bridge.MAX_STREAMED} bytes)."


def _relay_stream(st: _State, conn: runtime_http.Connection, req: runtime_http.Request, rid: str) -> None:
    """A streamed /response: each piece crosses the bridge as it arrives (CHUNK frames; the bridge's
    back-pressure reaches the runtime's writes), then RESULT, or ERROR from its error trailers."""
    content_type = req.headers.get("content-type") or "application/octet-stream"
    hdr = {"request_id": rid, "content_type": content_type[:1024]}
    total, too_large = 0, False
    try:
        for piece in conn.body_pieces(bridge.MAX_CHUNK):
            total += len(piece)
            if total > bridge.MAX_STREAMED:
                too_large = True                 # read to the end and dropped: the stream is cut here
            elif piece:
                st.drain_logs()                  # what the function logged before writing comes first
                st.send(bridge.CHUNK, hdr, piece)
    except runtime_http.BadRequest:
        conn.keep_alive = False
        error_type, doc = "Runtime.TruncatedResponse", None
    except OSError:                              # the runtime went away mid-stream
        conn.keep_alive = False
        time.sleep(0.1)                          # if it died, the reaper's EXIT (Runtime.ExitError) ends this first
        error_type, doc = "Runtime.TruncatedResponse", None
    else:
        error_type = conn.trailers.get("lambda-runtime-function-error-type", "")
        doc = _trailer_doc(error_type, conn.trailers.get("lambda-runtime-function-error-body", ""))
    st.drain_logs()
    if too_large:
        error_type = "Function.ResponseSizeTooLarge"
        doc = json.dumps({"errorMessage": _STREAM_TOO_LARGE, "errorType": error_type}).encode()
    elif error_type and doc is None:
        doc = json.dumps({"errorMessage": "The runtime's response stream ended early.",
                          "errorType": error_type}).encode()
    if error_type:
        st.send(bridge.ERROR, {"request_id": rid, "error_type": error_type, "streamed": True}, doc or b"")
    else:
        st.send(bridge.RESULT, {"request_id": rid, "streamed": True})
    if st.telemetry.subscribers:
        init_extensions.runtime_done(st, rid, not error_type, total)
    with st.cond:
        st.streaming = None
    if conn.keep_alive and too_large:
        conn.reply(413, json.dumps({"errorType": "RequestEntityTooLarge", "errorMessage": _STREAM_TOO_LARGE}).encode())
    elif conn.keep_alive:
        conn.reply(202, _ACCEPTED)


def _trailer_doc(error_type: str, encoded: str) -> bytes | None:
    """Lambda-Runtime-Function-Error-Body is the error document, base64-encoded (AWS's custom runtime
    streaming); a body that is not base64 is kept as the message."""
    if not error_type:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = encoded.encode("utf-8", "replace")
    try:
        if isinstance(json.loads(raw), dict):
            return raw[:MAX_RESPONSE]
    except (ValueError, UnicodeDecodeError):
        pass
    return json.dumps({"errorMessage": raw[:MAX_RESPONSE].decode("utf-8", "replace"), "errorType": error_type}).encode()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    return sock


def _exit_status(status: int) -> str:
    # Go-style wording, as AWS reports it: "exit status 1", "signal: killed"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = {9: "killed", 11: "segmentation fault", 6: "aborted", 15: "terminated"}.get(sig, signal.Signals(sig).name.lower())
        return f"signal: {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _log_pump(st: _State, fd: int = -1, stream: str = "function") -> None:
    """Forward a pipe's output as LOG frames: the runtime's (init's log_fd) or the extensions' own."""
    fd = st.log_fd if fd < 0 else fd
    lock = st.log_lock if stream == "function" else st.ext_log_lock
    wants = "wants_function" if stream == "function" else "wants_extension"
    while True:
        select.select([fd], [], [])
        with lock:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            st.send(bridge.LOG, None, data)
            if getattr(st.telemetry, wants):
                st.telemetry.lines(stream, data)


def _reaper(st: _State, cfg: InitConfig, runtime_pid: int) -> None:
    st.runtime_pid = runtime_pid
    others = cfg.pid1 or bool(st.exts and st.exts.expected)
    while True:
        try:
            pid, status = os.waitpid(-1 if others else runtime_pid, 0)
        except ChildProcessError:
            os._exit(0)
        if pid != runtime_pid and st.exts is not None and st.exts.exited(pid, _exit_status(status)):
            if st.exts.failure is not None and not st.ready_sent:
                init_extensions.failed(st)
        elif pid == runtime_pid:
            time.sleep(0.002)           # let the pipe's last writes land (other writers may hold it open)
            st.drain_logs()
            with st.cond:               # "taken": an event was handed to the runtime and not answered.
                taken = st.current is not None or st.streaming is not None   # False: never ran (the host may retry)
            st.send(bridge.EXIT, {"status": _exit_status(status), "taken": taken})
            os._exit(0)


def _start_servers(st: _State, host: str, port: int) -> tuple[int, api_proxy.ApiProxy, str | None]:
    """The Runtime API and the API proxy; returns (runtime API port, proxy, proxy URL or None)."""
    listener = _listen(host, port)
    threading.Thread(target=runtime_http.serve, args=(listener, lambda conn: _serve_connection(st, conn)),
                     daemon=True).start()
    api = api_proxy.ApiProxy(st.send)      # the function's path to lambdalet's API: 127.0.0.1:9002
    try:
        url = api.start(host, port + 1 if port else 0)
    except OSError:
        url = None
    return listener.getsockname()[1], api, url


def _runtime_env(cfg: InitConfig, port: int, api_url: str | None) -> dict[str, str]:
    env = dict(cfg.env)
    env["AWS_LAMBDA_RUNTIME_API"] = f"{cfg.host}:{port}"
    if api_url:
        env.setdefault("AWS_ENDPOINT_URL", api_url)
    return env


def _spawn_failed(st: _State, cfg: InitConfig, e: OSError) -> None:
    st.send(bridge.INIT_ERROR, {"error_type": "Runtime.InvalidEntrypoint"},
            json.dumps({"errorType": "Runtime.InvalidEntrypoint",
                        "errorMessage": f"RequestId: Error: fork/exec {cfg.argv[0]}: {e.strerror.lower()}"}).encode())
    st.send(bridge.EXIT, {"status": "exit status 127"})
    os._exit(0)


def _output_pipe(st: _State) -> tuple[int, int]:
    """The runtime's stdout/stderr pipe (its read end is the log pump's) and /dev/null for its stdin."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    st.log_fd = r
    return w, os.open("/dev/null", os.O_RDONLY)


def _exec_runtime(st: _State, cfg: InitConfig, env: dict, devnull: int, w: int) -> int:
    """Spawn an exec'd runtime (a `provided` bootstrap, node, another python) with stdin from
    /dev/null and its output into the log pipe; a failure is the runtime's init error (never returns)."""
    try:
        return os.posix_spawn(cfg.argv[0], cfg.argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
    except OSError as e:
        _spawn_failed(st, cfg, e)
        raise                               # (unreached: _spawn_failed ends the process)


def main(cfg: InitConfig, sock: socket.socket, reader: bridge.FrameReader | None = None) -> None:
    """Never returns: ends the process when the runtime exits or the host goes away."""
    st = _State(sock)
    st.timings = dict(cfg.timings)
    t = time.monotonic()
    port, api, api_url = _start_servers(st, cfg.host, cfg.port)
    w, devnull = _output_pipe(st)
    env = _runtime_env(cfg, port, api_url)
    st.t_spawn = time.monotonic()
    init_extensions.start(st, cfg, env, _log_pump)
    chan = None
    if cfg.python_fork:                     # our python_bootstrap: forked from this pre-imported process
        chan, theirs = pychannel.pair()     # its invocations: no HTTP round trip (pychannel.py)
        try:
            runtime_pid = pyfork.spawn(cfg.argv, cfg.cwd, env, devnull, w, theirs.fileno())
        except OSError as e:
            _spawn_failed(st, cfg, e)
        theirs.close()
    else:
        runtime_pid = _exec_runtime(st, cfg, env, devnull, w)
    os.close(w)
    os.close(devnull)
    st.timings["init_server_ms"] = round((st.t_spawn - t) * 1000, 3)
    threading.Thread(target=_reaper, args=(st, cfg, runtime_pid), daemon=True).start()
    _hand_over(st, sock, reader or bridge.FrameReader(), api, chan)


SLOT_HOST, SLOT_PORT = "127.0.0.1", 9001


def serve_slot(sock: socket.socket, reader: bridge.FrameReader, python_fork: bool, timings: dict) -> None:
    """A pre-isolated slot's init (sandbox/slots.py): everything that needs no tenant first (servers up,
    the Python runtime forked and reset, waiting for its configuration), then SLOT_READY to the host,
    then the CONFIG frame, which arrives only once the host has claimed the slot and mounted the code.
    Never returns."""
    st = _State(sock)
    t = time.monotonic()
    port, api, api_url = _start_servers(st, SLOT_HOST, SLOT_PORT)
    w, devnull = _output_pipe(st)
    t_fork = time.monotonic()
    chan, theirs = pychannel.pair() if python_fork else (None, None)   # its invocations (pychannel.py)
    runtime = pyfork.prespawn(devnull, w, theirs.fileno()) if theirs is not None else None
    if theirs is not None:
        theirs.close()
    else:                                   # (a forked runtime's output: pychannel.relay's, then the pump's)
        threading.Thread(target=_log_pump, args=(st,), daemon=True).start()
    if runtime is not None:                 # a runtime dying before the claim ends the slot (the host sees EXIT)
        os.close(w)
        os.close(devnull)
        threading.Thread(target=_reaper, args=(st, InitConfig([], {}), runtime[0]), daemon=True).start()
    now = time.monotonic()
    st.send(bridge.SLOT_READY, {**timings, "init_server_ms": round((t_fork - t) * 1000, 3),
                                "runtime_fork_ms": round((now - t_fork) * 1000, 3)})
    try:
        kind, hdr, _ = bridge.recv_blocking(sock, reader)
    except (bridge.BridgeClosed, bridge.ProtocolError, OSError):
        os._exit(0)                         # the host destroyed the slot unclaimed
    st.t_spawn = time.monotonic()
    if kind != CONFIG:
        raise RuntimeError(f"slot: expected the CONFIG frame, got kind {kind}")
    cfg = InitConfig(**{**hdr, "host": SLOT_HOST, "port": port, "pid1": True})
    if cfg.python_fork != python_fork:
        raise RuntimeError("slot: claimed for another kind of runtime")
    os.chdir(cfg.cwd)                       # the code is mounted now: the host mounts before it sends CONFIG
    env = _runtime_env(cfg, port, api_url)
    st.timings["config_ms"] = round((time.monotonic() - st.t_spawn) * 1000, 3)   # before the runtime can GET
    init_extensions.start(st, cfg, env, _log_pump)
    if runtime is not None:
        pyfork.release(runtime[1], cfg.argv, cfg.cwd, env)
    else:
        runtime_pid = _exec_runtime(st, cfg, env, devnull, w)
        os.close(w)
        os.close(devnull)
        threading.Thread(target=_reaper, args=(st, cfg, runtime_pid), daemon=True).start()
    _hand_over(st, sock, reader, api, chan)


def _hand_over(st: _State, sock: socket.socket, reader: bridge.FrameReader, api: api_proxy.ApiProxy,
               chan: socket.socket | None) -> None:
    """Relay invocations until the environment ends: over a forked Python runtime's channel
    (pychannel.py) while only the runtime takes part in them, then (or for any other runtime) over
    the HTTP Runtime API, with the log pump forwarding the runtime's output."""
    if chan is not None:
        pychannel.relay(st, sock, reader, api, chan, MAX_RESPONSE, lambda: _channel_next(st))
    threading.Thread(target=_log_pump, args=(st,), daemon=True).start()
    _relay(st, sock, reader, api)


def _channel_next(st: _State) -> bool:
    """The forked runtime's first request for an event, over its channel. False (the runtime is to ask
    the HTTP API, where extensions take part) when an extension or a Telemetry subscriber exists."""
    with st.cond:
        if (st.exts is not None and st.exts.active) or st.telemetry.subscribers:
            return False
        if not st.ready_sent:
            _runtime_asks_first(st)
        return True


def _relay(st: _State, sock: socket.socket, reader: bridge.FrameReader, api: api_proxy.ApiProxy) -> None:
    while True:
        try:
            kind, hdr, body = bridge.recv_blocking(sock, reader)
        except (bridge.BridgeClosed, bridge.ProtocolError, OSError):
            os._exit(0)                 # host closed: as PID 1 our exit kills the namespace
        if kind == bridge.INVOKE:
            if st.telemetry.subscribers:
                st.t_invoke = time.monotonic()
                st.telemetry.emit("platform.start", init_extensions.with_tracing({"requestId": hdr["request_id"],
                                                                   "version": st.version}, hdr))
            with st.cond:
                st.pending = (hdr, body)
                if st.exts is not None and st.exts.active:   # the invocation ends when they all call next
                    st.invoking, st.runtime_waiting = True, False
                    st.exts.deliver_invoke(hdr)
                st.cond.notify_all()
        elif kind == bridge.API_RESPONSE:
            api.deliver(hdr, body)
        elif kind == bridge.SHUTDOWN:
            init_extensions.shutdown(st, hdr)
        elif kind == bridge.PLATFORM:
            st.telemetry.emit(str(hdr.get("type", "")), hdr.get("record"))


def _process_main() -> None:
    """`python -m lambdalet.runtime.init FD`: the process backend's entry; config arrives as a frame."""
    import sys
    sock = socket.socket(fileno=int(sys.argv[1]))
    reader = bridge.FrameReader()
    kind, hdr, _ = bridge.recv_blocking(sock, reader)
    if kind != CONFIG:
        raise SystemExit("init: expected a CONFIG frame")
    cfg = InitConfig(**hdr)
    os.chdir(cfg.cwd)
    main(cfg, sock, reader)


if __name__ == "__main__":
    _process_main()
