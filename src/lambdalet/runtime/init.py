"""The environment's init: PID 1 of its PID namespace (or a plain child under the process backend).

It serves Lambda's Runtime API on 127.0.0.1:9001 to ONE runtime process it spawns, and relays
between that API and the host over the inherited bridge socket (runtime/bridge.py):
INVOKE frames become /next responses; /response, /error, /init/error become frames; everything
the runtime writes to stdout/stderr becomes LOG frames, drained before each result so an
invocation's log is complete when its result arrives. When the runtime exits, init reports EXIT and
ends, which (as PID 1) takes the whole namespace down. When the host closes the bridge, init ends.
"""
from __future__ import annotations

import http.server
import json
import os
import select
import signal
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field

from lambdalet.runtime import api_proxy, bridge, pyfork

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


class _State:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.pending: tuple[dict, bytes] | None = None
        self.current: str | None = None
        self.ready_sent = False
        self.log_fd = -1
        self.log_lock = threading.Lock()
        self.timings: dict = {}
        self.t_spawn = 0.0

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


def _read_body(h: http.server.BaseHTTPRequestHandler, limit: int) -> bytes | None:
    """Content-Length or chunked; returns None when the body exceeds `limit` (still consumed)."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts, total = [], 0
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunk = h.rfile.read(size)
            h.rfile.readline()
            total += size
            if total <= limit:
                parts.append(chunk)
        return b"".join(parts) if total <= limit else None
    n = int(h.headers.get("Content-Length") or 0)
    data = h.rfile.read(n) if n else b""
    return data if n <= limit else None


def _make_handler(st: _State):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive, as awslambdaric's libcurl client expects
        server_version = "lambdalet-init"
        disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall
        sys_version = ""

        def log_message(self, *a):      # the runtime's traffic is not platform log
            pass

        def _reply(self, code: int, obj: dict | None = None, body: bytes | None = None, headers=()):
            data = body if body is not None else json.dumps(obj or {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(data)       # one write for head and body
            self.flush_headers()

        def do_GET(self):
            if self.path != API + "/invocation/next":
                return self._reply(404, {"errorType": "NotFound", "errorMessage": "unknown path"})
            with st.cond:
                if not st.ready_sent:
                    st.ready_sent = True
                    st.timings["runtime_init_ms"] = round((time.monotonic() - st.t_spawn) * 1000, 3)
                    st.send(bridge.READY, st.timings)
                while st.pending is None:
                    st.cond.wait()
                hdr, payload = st.pending
                st.pending = None
                st.current = hdr["request_id"]
            headers = [("Lambda-Runtime-Aws-Request-Id", hdr["request_id"]),
                       ("Lambda-Runtime-Deadline-Ms", str(hdr["deadline_ms"])),
                       ("Lambda-Runtime-Invoked-Function-Arn", hdr["invoked_function_arn"]),
                       ("Lambda-Runtime-Trace-Id", hdr.get("trace_id") or "")]
            if hdr.get("client_context"):
                headers.append(("Lambda-Runtime-Client-Context", hdr["client_context"]))
            self._reply(200, body=payload, headers=headers)

        def do_POST(self):
            parts = self.path.split("/")
            # /2018-06-01/runtime/invocation/{id}/response|error  or  /2018-06-01/runtime/init/error
            body = _read_body(self, MAX_RESPONSE)
            if self.path == API + "/init/error":
                st.drain_logs()
                st.send(bridge.INIT_ERROR, {"error_type": self.headers.get("Lambda-Runtime-Function-Error-Type", "")},
                        (body or b"")[:MAX_RESPONSE])
                return self._reply(202, {"status": "OK"})
            if len(parts) != 6 or self.path[: len(API) + 12] != API + "/invocation/" or parts[5] not in ("response", "error"):
                return self._reply(404, {"errorType": "NotFound", "errorMessage": "unknown path"})
            rid = parts[4]
            with st.cond:
                if rid != st.current:
                    return self._reply(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})
                st.current = None
            st.drain_logs()
            if body is None:
                msg = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE} bytes)."
                st.send(bridge.ERROR, {"request_id": rid, "error_type": "Function.ResponseSizeTooLarge"},
                        json.dumps({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}).encode())
                return self._reply(413, {"errorType": "RequestEntityTooLarge", "errorMessage": msg})
            if parts[5] == "response":
                st.send(bridge.RESULT, {"request_id": rid}, body)
            else:
                st.send(bridge.ERROR, {"request_id": rid,
                                       "error_type": self.headers.get("Lambda-Runtime-Function-Error-Type", "")}, body)
            self._reply(202, {"status": "OK"})

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16

    def server_bind(self):
        # HTTPServer's own server_bind resolves getfqdn(): a lazy import and a DNS lookup we don't want
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def _exit_status(status: int) -> str:
    # Go-style wording, as AWS reports it: "exit status 1", "signal: killed"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = {9: "killed", 11: "segmentation fault", 6: "aborted", 15: "terminated"}.get(sig, signal.Signals(sig).name.lower())
        return f"signal: {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _log_pump(st: _State) -> None:
    while True:
        select.select([st.log_fd], [], [])
        with st.log_lock:
            try:
                data = os.read(st.log_fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            st.send(bridge.LOG, None, data)


def _reaper(st: _State, cfg: InitConfig, runtime_pid: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1 if cfg.pid1 else runtime_pid, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == runtime_pid:
            time.sleep(0.002)           # let the pipe's last writes land (other writers may hold it open)
            st.drain_logs()
            st.send(bridge.EXIT, {"status": _exit_status(status)})
            os._exit(0)


def _start_servers(st: _State, host: str, port: int) -> tuple[int, api_proxy.ApiProxy, str | None]:
    """The Runtime API and the API proxy; returns (runtime API port, proxy, proxy URL or None)."""
    server = _Server((host, port), _make_handler(st))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600}, daemon=True).start()
    api = api_proxy.ApiProxy(st.send)      # the function's path to lambdalet's API: 127.0.0.1:9002
    try:
        url = api.start(host, port + 1 if port else 0)
    except OSError:
        url = None
    return server.server_address[1], api, url


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


def main(cfg: InitConfig, sock: socket.socket, reader: bridge.FrameReader | None = None) -> None:
    """Never returns: ends the process when the runtime exits or the host goes away."""
    st = _State(sock)
    st.timings = dict(cfg.timings)
    t = time.monotonic()
    port, api, api_url = _start_servers(st, cfg.host, cfg.port)
    r, w = os.pipe()
    os.set_blocking(r, False)
    st.log_fd = r
    env = _runtime_env(cfg, port, api_url)
    devnull = os.open("/dev/null", os.O_RDONLY)
    st.t_spawn = time.monotonic()
    try:
        if cfg.python_fork:                 # our python_bootstrap: forked from this pre-imported process
            runtime_pid = pyfork.spawn(cfg.argv, cfg.cwd, env, devnull, w)
        else:
            runtime_pid = os.posix_spawn(cfg.argv[0], cfg.argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
    except OSError as e:
        _spawn_failed(st, cfg, e)
    os.close(w)
    os.close(devnull)
    st.timings["init_server_ms"] = round((st.t_spawn - t) * 1000, 3)
    threading.Thread(target=_log_pump, args=(st,), daemon=True).start()
    threading.Thread(target=_reaper, args=(st, cfg, runtime_pid), daemon=True).start()
    _relay(st, sock, reader or bridge.FrameReader(), api)


SLOT_HOST, SLOT_PORT = "127.0.0.1", 9001


def serve_slot(sock: socket.socket, reader: bridge.FrameReader, python_fork: bool, timings: dict) -> None:
    """A pre-isolated slot's init (sandbox/slots.py): everything that needs no tenant first (servers up,
    the Python runtime forked and reset, waiting for its configuration), then SLOT_READY to the host,
    then the CONFIG frame, which arrives only once the host has claimed the slot and mounted the code.
    Never returns."""
    st = _State(sock)
    t = time.monotonic()
    port, api, api_url = _start_servers(st, SLOT_HOST, SLOT_PORT)
    r, w = os.pipe()
    os.set_blocking(r, False)
    st.log_fd = r
    devnull = os.open("/dev/null", os.O_RDONLY)
    t_fork = time.monotonic()
    runtime = pyfork.prespawn(devnull, w, f"{SLOT_HOST}:{port}") if python_fork else None
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
    if runtime is not None:
        pyfork.release(runtime[1], cfg.argv, cfg.cwd, env)
    else:
        try:
            runtime_pid = os.posix_spawn(cfg.argv[0], cfg.argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
        except OSError as e:
            _spawn_failed(st, cfg, e)
        os.close(w)
        os.close(devnull)
        threading.Thread(target=_reaper, args=(st, cfg, runtime_pid), daemon=True).start()
    _relay(st, sock, reader, api)


def _relay(st: _State, sock: socket.socket, reader: bridge.FrameReader, api: api_proxy.ApiProxy) -> None:
    while True:
        try:
            kind, hdr, body = bridge.recv_blocking(sock, reader)
        except (bridge.BridgeClosed, bridge.ProtocolError, OSError):
            os._exit(0)                 # host closed: as PID 1 our exit kills the namespace
        if kind == bridge.INVOKE:
            with st.cond:
                st.pending = (hdr, body)
                st.cond.notify_all()
        elif kind == bridge.API_RESPONSE:
            api.deliver(hdr, body)


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
