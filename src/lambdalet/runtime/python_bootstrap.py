"""lambdalet's Python runtime client: runs inside the environment as the runtime process.

Stand-alone on purpose (stdlib only, imports nothing from lambdalet): it is the tenant's code path.
Loop: GET /next -> call handler(event, context) -> POST /response or /error, errors shaped as AWS's.
"""
import importlib
import io
import json
import logging
import os
import socket
import struct
import sys
import time
import traceback

API = "/2018-06-01/runtime"


class _Client:
    """Minimal keep-alive HTTP/1.1 client for the Runtime API (http.client costs ~12 ms to import)."""

    def __init__(self, host, port):
        self.addr = (host, int(port))
        self.sock = None
        self.buf = b""

    def connect(self):
        self.sock = socket.create_connection(self.addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def request(self, method, path, body=b"", headers=None):
        if self.sock is None:
            self.connect()
        head = f"{method} {API}{path} HTTP/1.1\r\nHost: {self.addr[0]}\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", 0))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, _Headers(hdrs), body

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("runtime API closed the connection")
        self.buf += data


class _Headers(dict):
    def get(self, key, default=None):
        return super().get(key.lower(), default)


# The channel init shares with a runtime it forked (pyfork.py; runtime/pychannel.py is init's end).
# Frame: kind (1 byte) | header length (4, big-endian) | body length (4) | header | body.
CHAN_NEXT, CHAN_EVENT, CHAN_RESPONSE, CHAN_ERROR, CHAN_INIT_ERROR = 1, 2, 3, 4, 5
_CHAN_HDR = struct.Struct(">BII")
_ACCEPTED = b'{"status": "OK"}'


class _Channel:
    """The invocation calls main() makes (GET /next, POST /response, /error, /init/error), carried over
    a socket init gave this forked runtime instead of HTTP on loopback: an event is one frame in, a
    result one frame out, and a result means "next" (no 202 to wait for). Anything else goes to the
    HTTP Runtime API, as does everything when init closes the channel before the first event."""

    def __init__(self, sock, runtime_api):
        self.sock, self.runtime_api = sock, runtime_api
        self.buf = bytearray()
        self.http = None
        self.answered = False           # a result was sent since the last event: init knows we wait
        self.events = 0

    def request(self, method, path, body=b"", headers=None):
        if self.http is None:
            if method == "GET" and path == "/invocation/next":
                event = self._next_event()
                if event is not None:
                    return event
            elif method == "POST":
                parts = path.split("/")            # ["", "invocation", id, "response" | "error"]
                etype = (headers or {}).get("Lambda-Runtime-Function-Error-Type", "")
                if len(parts) == 4 and parts[1] == "invocation" and parts[3] in ("response", "error"):
                    kind = CHAN_RESPONSE if parts[3] == "response" else CHAN_ERROR
                    self._send(kind, f"{parts[2]}\n{etype}".encode("utf-8", "surrogateescape"), body)
                    self.answered = True
                    return 202, _Headers(), _ACCEPTED
                if path == "/init/error":
                    self._send(CHAN_INIT_ERROR, etype.encode("utf-8", "surrogateescape"), body)
                    return 202, _Headers(), _ACCEPTED
        if self.http is None:
            host, _, port = self.runtime_api.partition(":")
            self.http = _Client(host, port)
        return self.http.request(method, path, body, headers)

    def _send(self, kind, header, body=b""):
        head = _CHAN_HDR.pack(kind, len(header), len(body)) + header
        if len(body) < 65536:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)

    @staticmethod
    def _headers(head):
        """What GET /next's headers say, from init's NUL-separated event header (pychannel._event_frame)."""
        rid, deadline, arn, trace, tenant, cc = head.split("\0", 5)
        h = _Headers({"lambda-runtime-aws-request-id": rid, "lambda-runtime-deadline-ms": deadline,
                      "lambda-runtime-invoked-function-arn": arn, "lambda-runtime-trace-id": trace})
        if tenant:
            h["lambda-runtime-aws-tenant-id"] = tenant
        if cc:
            h["lambda-runtime-client-context"] = cc
        return h

    def _next_event(self):
        if not self.answered:
            self._send(CHAN_NEXT, b"")
        self.answered = False
        while True:
            buf = self.buf
            if len(buf) >= 9:
                kind, hlen, blen = _CHAN_HDR.unpack_from(buf)
                end = 9 + hlen + blen
                if len(buf) >= end:
                    head, body = bytes(buf[9:9 + hlen]).decode("utf-8", "surrogateescape"), bytes(buf[9 + hlen:end])
                    del buf[:end]
                    self.events += 1
                    return 200, self._headers(head), body
            data = self.sock.recv(1 << 20)    # (asleep in a unix socket's recv, freezing costs no wake-up)
            if not data:
                if self.events:
                    raise ConnectionError("runtime API closed the connection")
                self.sock.close()              # init chose the HTTP API: so does this runtime
                return None
            self.buf += data


class ClientContext:
    """What awslambdaric hands handlers: .client (mobile app fields), .custom and .env dicts."""

    def __init__(self, doc):
        client = doc.get("client") or {}
        self.client = None
        if client:
            self.client = _Attrs(installation_id=client.get("installation_id"), app_title=client.get("app_title"),
                                 app_version_name=client.get("app_version_name"),
                                 app_version_code=client.get("app_version_code"),
                                 app_package_name=client.get("app_package_name"))
        self.custom = doc.get("custom")
        self.env = doc.get("env")


class _Attrs:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class LambdaContext:
    def __init__(self, headers, env):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None          # a CognitoIdentity only for mobile-SDK callers (none here)
        self.tenant_id = headers.get("Lambda-Runtime-Aws-Tenant-Id")   # PER_TENANT functions only
        self.client_context = None
        cc = headers.get("Lambda-Runtime-Client-Context")
        if cc:
            try:
                doc = json.loads(cc)
                self.client_context = ClientContext(doc) if isinstance(doc, dict) else None
            except ValueError:
                self.client_context = None

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)


class _Fault(Exception):
    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


def _error_doc(error_type, message, trace, request_id=""):
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace}


def _trace(exc):
    return traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])


def load_handler(task_root, handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if "/" in modname:                       # "dir/sub.handler" is accepted by AWS
        sub, modname = os.path.split(modname)
        sys.path.insert(0, os.path.join(task_root, sub))
    try:
        mod = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        raise _Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}",
                     [f'  File "{e.filename}" Line {e.lineno}\n', f"    {(e.text or '').strip()}\n"]) from None
    except Exception as e:
        raise _Fault(type(e).__name__, str(e), _trace(e)) from None
    fn = getattr(mod, fname, None)
    if fn is None:
        raise _Fault("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")
    return fn


_io_ready = False


class _LogFilter(logging.Filter):
    request_id = ""
    tenant_id = None

    def filter(self, record):
        record.aws_request_id = _LogFilter.request_id
        record.tenant_id = _LogFilter.tenant_id
        return True


# AWS_LAMBDA_LOG_LEVEL (LoggingConfig.ApplicationLogLevel) -> the logging module's level
_LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}
# LogRecord attributes that are not a caller's `extra=` keys
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"aws_request_id", "message",
                                                                                     "asctime", "taskName", "tenant_id"}


def _iso_ms(created):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + ".%03dZ" % (int(created * 1000) % 1000)


class _JsonFormatter(logging.Formatter):
    """AWS's JSON application log record (LogFormat=JSON): timestamp, level, message, logger, requestId;
    a dict message stays an object, `extra=` keys are added, an exception adds errorType, errorMessage,
    stackTrace and location."""

    def format(self, record):
        msg = record.msg if isinstance(record.msg, dict) and not record.args else record.getMessage()
        doc = {"timestamp": _iso_ms(record.created), "level": record.levelname, "message": msg,
               "logger": record.name, "requestId": getattr(record, "aws_request_id", "") or None,
               "tenantId": getattr(record, "tenant_id", None)}
        if record.exc_info and record.exc_info[0] is not None:
            etype, err, tb = record.exc_info
            doc.update(errorType=etype.__name__, errorMessage=str(err),
                       stackTrace=traceback.format_list(traceback.extract_tb(tb)),
                       location=f"{record.pathname}:{record.funcName}:{record.lineno}")
        for k, v in record.__dict__.items():
            if k not in _RECORD_KEYS and k not in doc:
                doc[k] = v
        return json.dumps({k: v for k, v in doc.items() if v is not None}, default=str, ensure_ascii=False) + "\n"


def _json_logs():
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


def _configure_logging():
    """LoggingConfig, as the environment says it (after a slot's runtime got its tenant): JSON records
    at AWS_LAMBDA_LOG_LEVEL (INFO by default), else AWS's text lines with the root logger at WARNING."""
    root = logging.getLogger()
    h = next(h for h in root.handlers if any(isinstance(f, _LogFilter) for f in h.filters))
    if _json_logs():
        h.setFormatter(_JsonFormatter())
        root.setLevel(_LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper(), logging.INFO))
    else:
        h.setFormatter(_TEXT_FORMAT)
        root.setLevel(logging.WARNING)


def _log_error(doc):
    """An unhandled error, as the runtime logs it: AWS's JSON error record, or its [ERROR] text block."""
    if _json_logs():
        rec = {"timestamp": _iso_ms(time.time()), "log_level": "ERROR", **doc}
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return
    print(f"[ERROR] {doc['errorType']}: {doc['errorMessage']}\nTraceback (most recent call last):\n"
          f"{''.join(doc['stackTrace'])}", file=sys.stdout)


_TEXT_FORMAT = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                                 "%Y-%m-%dT%H:%M:%S")
_TEXT_FORMAT.converter = time.gmtime


def _setup_io():
    # unbuffered, so every line is in the log pipe before the result is posted
    global _io_ready
    if _io_ready:
        return                      # done ahead by a slot's runtime (pyfork.prespawn)
    _io_ready = True
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", write_through=True)
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(_TEXT_FORMAT)
    h.terminator = ""                  # both formats end their records with their own newline
    h.addFilter(_LogFilter())
    root = logging.getLogger()
    root.addHandler(h)
    root.setLevel(logging.WARNING)


def main(conn=None):
    """conn: a client already connected to this Runtime API (a slot's runtime connects ahead)."""
    env = os.environ
    host, _, port = env["AWS_LAMBDA_RUNTIME_API"].partition(":")
    conn = conn or _Client(host, port)
    task_root = env.get("LAMBDA_TASK_ROOT", "/var/task")

    def post(path, body, headers=None):
        return conn.request("POST", path, body, headers)[0]

    _setup_io()
    _configure_logging()
    sys.path.insert(0, task_root)
    try:
        handler = load_handler(task_root, env.get("_HANDLER", ""))
    except _Fault as f:
        _log_error(_error_doc(f.error_type, f.message, f.trace))
        post("/init/error", json.dumps(_error_doc(f.error_type, f.message, f.trace)).encode(),
             {"Lambda-Runtime-Function-Error-Type": f.error_type})
        sys.exit(1)
    while True:
        _, headers, body = conn.request("GET", "/invocation/next")
        ctx = LambdaContext(headers, env)
        rid = ctx.aws_request_id
        _LogFilter.request_id = rid
        _LogFilter.tenant_id = ctx.tenant_id
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        try:
            event = json.loads(body) if body else None
            result = handler(event, ctx)
            try:
                out = json.dumps(result).encode()
            except (TypeError, ValueError) as e:
                raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
        except _Fault as f:
            doc = _error_doc(f.error_type, f.message, f.trace, rid)
        except Exception as e:
            doc = _error_doc(type(e).__name__, str(e), _trace(e), rid)
            _log_error(doc)
        else:
            post(f"/invocation/{rid}/response", out)
            continue
        post(f"/invocation/{rid}/error", json.dumps(doc).encode(),
             {"Lambda-Runtime-Function-Error-Type": "Unhandled"})


if __name__ == "__main__":
    sys.path.pop(0)     # our own directory; /var/runtime stays reachable via PYTHONPATH
    main()
