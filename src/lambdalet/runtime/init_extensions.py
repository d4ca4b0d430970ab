"""init's side of the Extensions API and the Telemetry API (runtime/init.py calls in here).

Starting /opt/extensions' executables before the runtime, the phases that wait for every party's
next (init -> READY, an invocation -> INVOKE_DONE, the shutdown -> SHUTDOWN_DONE), and the two APIs'
HTTP handlers on init's Runtime API address. `st` is init's _State (cond, send, drain_logs, exts,
telemetry, timings, the runtime's readiness flags); nothing here runs unless an extension exists or
registers.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid

from lambdalet.runtime import bridge, extensions, runtime_http, telemetry

MAX_ERROR_DOC = 6 * 1024 * 1024 + 100
_NOT_FOUND = json.dumps({"errorType": "NotFound", "errorMessage": "unknown path"}).encode()
_ACCEPTED = b'{"status": "OK"}'

_INIT_WAIT_S = 10.0                     # the host's init limit ends the environment before this


def start(st, cfg, env: dict[str, str], pump) -> None:
    """The Extensions API's registry; /opt/extensions' executables started and registered before the
    runtime starts (AWS's order). Nothing but a directory listing when there are none."""
    st.version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    info = {"functionName": env.get("AWS_LAMBDA_FUNCTION_NAME", ""), "functionVersion": st.version,
            "handler": env.get("_HANDLER", "")}
    st.exts = exts = extensions.Extensions(st.cond, info, cfg.account_id, lambda: phase_check(st))
    paths = extensions.external_executables()
    if not paths:
        st.telemetry.end_init()
        return
    st.telemetry.emit("platform.initStart", {"initializationType": "on-demand", "phase": "init",
                                             "functionName": info["functionName"],
                                             "functionVersion": st.version,
                                             "instanceMaxMemory": int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)})
    r, w = os.pipe()
    os.set_blocking(r, False)
    st.ext_log_fd = r
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        exts.launch(paths, env, w, devnull)
    finally:
        os.close(w)
        os.close(devnull)
    threading.Thread(target=pump, args=(st, r, "extension"), daemon=True).start()
    exts.wait_registered(_INIT_WAIT_S)
    if exts.failure is not None:
        failed(st)
        threading.Event().wait()      # no runtime after a failed extension init: the host ends us


def failed(st) -> None:
    """An extension failed the init phase (did not start, crashed, never registered): the init error."""
    with st.cond:
        if st.init_failed or st.exts is None or st.exts.failure is None:
            return
        st.init_failed = True
        error_type, message = st.exts.failure
    _init_error(st, error_type, json.dumps({"errorType": error_type, "errorMessage": message}).encode())


def _init_error(st, error_type: str, doc: bytes) -> None:
    st.drain_logs()
    st.send(bridge.INIT_ERROR, {"error_type": error_type}, doc[:MAX_ERROR_DOC])


def phase_check(st) -> None:
    """Caller holds st.cond. Ends the phase whose parties are all waiting in next: init (READY),
    an invocation (INVOKE_DONE) or the shutdown (SHUTDOWN_DONE)."""
    exts = st.exts
    if not st.ready_sent:
        if st.runtime_ready and not st.init_failed and (exts is None or exts.all_ready()):
            st.ready_sent = True
            if exts is not None:
                exts.open = False
                if exts.active:
                    st.timings = {**st.timings, "extensions": exts.summary()}
            st.send(bridge.READY, st.timings)
            st.telemetry.emit("platform.initReport", {"initializationType": "on-demand", "phase": "init",
                                                      "status": "success", "metrics": {"durationMs": round(
                                                          (time.monotonic() - st.t_spawn) * 1000, 3)}})
            st.telemetry.end_init()
    elif exts is None:
        return
    elif st.invoking and st.runtime_waiting and exts.all_ready("INVOKE"):
        st.invoking = False
        drain_extension_logs(st)
        st.send(bridge.INVOKE_DONE, {"telemetry": bool(st.telemetry.subscribers), "reset": exts.any_gone()})
    elif st.shutting and exts.all_ready("SHUTDOWN"):
        st.shutting = False
        drain_extension_logs(st)
        st.send(bridge.SHUTDOWN_DONE)


def drain_extension_logs(st) -> None:
    """What the extensions wrote before they called next (or exited) goes out before the frame that
    ends the phase: the host stops reading at SHUTDOWN_DONE, and an invocation's log ends at INVOKE_DONE."""
    if st.ext_log_fd < 0:
        return
    with st.ext_log_lock:
        while True:
            try:
                data = os.read(st.ext_log_fd, 65536)
            except OSError:              # (BlockingIOError: nothing more for now)
                return
            if not data:
                return
            st.send(bridge.LOG, None, data)
            if st.telemetry.wants_extension:
                st.telemetry.lines("extension", data)


def shutdown(st, hdr: dict) -> None:
    """The host is ending the environment: extensions registered for SHUTDOWN get it; SHUTDOWN_DONE
    once they called next again or exited (the host kills everything at its deadline anyway)."""
    with st.cond:
        if st.exts is None or not st.exts.wants_shutdown():
            st.send(bridge.SHUTDOWN_DONE)
            return
        st.shutting = True
        st.exts.deliver_shutdown(str(hdr.get("reason") or "spindown"), int(hdr.get("deadline_ms") or 0))
        phase_check(st)


def with_tracing(record: dict, hdr: dict) -> dict:
    if hdr.get("trace_id"):
        record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": hdr["trace_id"]}
    return record


def runtime_done(st, rid: str, success: bool, produced: int) -> None:
    st.telemetry.emit("platform.runtimeDone", {
        "requestId": rid, "status": "success" if success else "error",
        "metrics": {"durationMs": round((time.monotonic() - st.t_invoke) * 1000, 3), "producedBytes": produced}})


def serve_api(st, conn: runtime_http.Connection, req: runtime_http.Request) -> None:
    """The Extensions API (/2020-01-01/extension/...) and the Telemetry API (/2022-07-01/telemetry)."""
    try:
        if st.exts is None:
            raise extensions.ApiError(403, "Extension.RegistrationServiceOff", "the environment is not configured yet")
        if req.path.startswith(extensions.EXT_API + "/"):
            return _extension_api(st, st.exts, conn, req)
        path = req.path.rstrip("/")
        if path in (telemetry.TELEMETRY_PATH, telemetry.LOGS_PATH) and req.method == "PUT":
            ext = st.exts.lookup(req.headers)
            try:
                st.telemetry.subscribe(ext.name, req.body, logs_api=path == telemetry.LOGS_PATH)
            except telemetry.ValidationError as e:
                return conn.reply(400, json.dumps({"errorType": "ValidationError", "errorMessage": str(e)}).encode())
            return conn.reply(200, b'"OK"')
        conn.reply(404, _NOT_FOUND)
    except extensions.ApiError as e:
        conn.reply(e.status, e.body())


def _extension_api(st, exts: extensions.Extensions, conn: runtime_http.Connection,
                   req: runtime_http.Request) -> None:
    action = (req.method, req.path[len(extensions.EXT_API):])
    if action == ("POST", "/register"):
        ext, body, headers = exts.register(req.headers, req.body)
        st.telemetry.emit("platform.extension", {"name": ext.name, "state": "Ready", "events": sorted(ext.events)})
        return conn.reply(200, body, headers)
    if action == ("GET", "/event/next"):
        ext = exts.lookup(req.headers)
        event = exts.next_event(ext, lambda: conn.hung_up())
        if event is None:
            conn.keep_alive = False
            return None
        return conn.reply(200, json.dumps(event).encode(), [("Lambda-Extension-Event-Identifier", str(uuid.uuid4()))])
    if action in (("POST", "/init/error"), ("POST", "/exit/error")):
        ext = exts.lookup(req.headers)
        error_type = req.headers.get(extensions.ERROR_TYPE_HEADER, "")[:256] or "Extension.UnknownReason"
        doc = _error_doc(error_type, req.body)
        with st.cond:
            during_init = not st.ready_sent and not st.init_failed
            st.init_failed = st.init_failed or during_init
            ext.gone = True               # it said it is exiting: no phase waits for it
            phase_check(st)
        if during_init:
            _init_error(st, error_type, doc)
        return conn.reply(202, _ACCEPTED)
    return conn.reply(404, _NOT_FOUND)


def _error_doc(error_type: str, body: bytes | None) -> bytes:
    """An extension's error document as the invocation's: its own JSON object with AWS's errorType."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    doc = {"errorType": error_type, "errorMessage": str(doc.get("errorMessage", ""))[:4096] or error_type}
    return json.dumps(doc).encode()


