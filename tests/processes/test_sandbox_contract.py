"""ONE compliance suite, run against every sandbox backend available here (cf. containerd's testsuite).

namespace: needs root (marked `root`, skipped otherwise), also with pre-isolated slots (sandbox/slots.py:
Python environments then start from a slot). process: always (explicitly unisolated).
"""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from lambdalet.sandbox import InitFailed, SandboxError, open_backend
from lambdalet.sandbox.testing import make_request, make_spec, namespace_unavailable_reason, write_code

PARAMS = [pytest.param("namespace", marks=pytest.mark.root), pytest.param("namespace-slots", marks=pytest.mark.root),
          "process"]


@pytest.fixture(scope="module", params=PARAMS)
def backend(request):
    if request.param.startswith("namespace"):
        reason = namespace_unavailable_reason()
        if reason:
            pytest.skip(reason)
        b = open_backend("namespace", slots=2 if request.param == "namespace-slots" else 0)
    else:
        b = open_backend("process", allow_unisolated=True)
    yield b
    b.close()


@pytest.fixture
def env(backend, tmp_path):
    """env(files, **spec) -> started sandbox; every sandbox is destroyed and checked clean afterwards."""
    made = []

    def make(files, runtime="python3.11", handler="app.handler", start=True, **kw):
        code = write_code(str(tmp_path / f"code{len(made)}"), files)
        if getattr(backend, "slots", None) is not None:
            assert backend.slots.wait_full(10)
        sb = backend.create(make_spec(code, runtime, handler, **kw))
        made.append(sb)
        if start:
            sb.start()
        return sb

    yield make
    for sb in made:
        sb.destroy()
        assert sb.stats()["pids"] == [] and not sb.alive
        cg = getattr(sb, "cgroup", None)
        assert cg is None


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"   # a zombie awaiting its new parent
    except FileNotFoundError:
        return True


def call(sb, event=None, **kw):
    r = sb.invoke(make_request(sb.spec, json.dumps(event).encode(), **kw))
    return r, json.loads(r.payload) if r.payload else None


APP = """
import os, json, time
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("event", json.dumps(event))
    if event.get("raise"):
        raise ValueError("boom")
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"count": COUNT, "pid": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd(),
            "ctx": {"function_name": context.function_name, "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn, "memory": context.memory_limit_in_mb,
                    "request_id": context.aws_request_id, "log_group": context.log_group_name,
                    "log_stream": context.log_stream_name, "remaining": context.get_remaining_time_in_millis(),
                    "client_context": context.client_context and {"custom": context.client_context.custom},
                    "identity": context.identity}}
"""


def test_start_invoke_warm_reuse(env):
    sb = env({"app.py": APP})
    assert sb.alive
    r1, p1 = call(sb, {"a": 1})
    r2, p2 = call(sb, {"a": 2})
    assert r1.function_error is None and r2.function_error is None
    assert (p1["count"], p2["count"]) == (1, 2) and p1["pid"] == p2["pid"]     # same warm process
    assert r1.init_duration_ms is not None and r2.init_duration_ms is None
    assert b"START RequestId:" in r1.log_tail and b"REPORT RequestId:" in r1.log_tail
    assert b'event {"a": 1}' in r1.log_tail and b"Init Duration" in r1.log_tail
    assert b'event {"a": 2}' in r2.log_tail and b"Init Duration" not in r2.log_tail
    stats = sb.stats()
    assert stats["cold_start_ms"] > 0


def test_environment_variables_and_context(env):
    sb = env({"app.py": APP}, env={"FOO": "bar", "AWS_LAMBDA_FUNCTION_NAME": "cannot-override"}, memory_mb=256)
    r, p = call(sb, {}, client_context='{"custom": {"k": "v"}}', trace_id="Root=1-abc-def;Sampled=1",
                request_id="11111111-2222-3333-4444-555555555555")
    e, c = p["env"], p["ctx"]
    assert e["FOO"] == "bar" and e["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert e["_HANDLER"] == "app.handler" and e["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert e["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11" and e["TZ"] == ":UTC"
    assert e["AWS_REGION"] == e["AWS_DEFAULT_REGION"] == "us-east-1"
    assert e["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert e["_X_AMZN_TRACE_ID"] == "Root=1-abc-def;Sampled=1"
    for k in ("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "LANG",
              "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_FUNCTION_VERSION"):
        assert e[k], k
    assert p["cwd"] == e["LAMBDA_TASK_ROOT"]
    assert c["request_id"] == "11111111-2222-3333-4444-555555555555"
    assert c["function_name"] == "fn" and c["function_version"] == "$LATEST" and c["memory"] == "256"
    assert c["invoked_function_arn"].endswith(":function:fn") and c["log_group"] == "/aws/lambda/fn"
    assert 0 < c["remaining"] <= 3000 and c["client_context"] == {"custom": {"k": "v"}}


INTERPRETER = """
import os, sys
def handler(event, context):
    out = {"path": sys.path, "env": sorted(os.environ), "argv": sys.argv, "exe": sys.executable,
           "main": sys.modules["__main__"].__file__, "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))}
    for what in ("import importlib.util", "import importlib.metadata", "'x'.encode('cp437')", "import http.cookies",
                 "import email.mime.text", "import urllib.request", "import json.tool"):
        try:
            exec(what)
            out[what] = "ok"
        except Exception as e:
            out[what] = repr(e)
    return out
"""


def test_python_runtime_looks_like_a_fresh_interpreter(env, backend):
    """Forked (pyfork.py) or prespawned in a slot, the runtime is what `python3 -s bootstrap` would be:
    the function's environment only, the standard search path, stdlib submodules importable."""
    sb = env({"app.py": INTERPRETER}, env={"FOO": "bar"})
    if getattr(backend, "slots", None) is not None:
        assert sb.stats().get("slot") is True
    r, p = call(sb, {})
    assert r.function_error is None, p
    for what in ("import importlib.util", "import importlib.metadata", "'x'.encode('cp437')", "import http.cookies",
                 "import email.mime.text", "import urllib.request", "import json.tool"):
        assert p[what] == "ok", (what, p[what])
    assert "FOO" in p["env"] and not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(p["env"])
    assert p["path"][0] == os.path.realpath(sb.spec.code_dir) if backend.name == "process" else p["path"][0] == "/var/task"
    assert "-" not in p["path"] and p["argv"] == [p["main"]] and p["main"].endswith("python_bootstrap.py")
    if backend.name == "namespace":
        assert p["exe"] == "/var/lang/bin/python3.11" and p["path"][-1] == "/var/lang/lib/python3.11/site-packages"
        assert p["fds"][:3] == [0, 1, 2] and len(p["fds"]) <= 5      # 0-2, the Runtime API socket, listdir's own fd


RAW_BOOTSTRAP = """#!/usr/bin/env python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
c = http.client.HTTPConnection(host, int(port))
while True:
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse(); body = r.read()
    h = {k: v for k, v in r.getheaders() if k.lower().startswith("lambda-runtime")}
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", json.dumps({"headers": h, "body": body.decode()}))
    c.getresponse().read()
"""


def test_runtime_api_headers(env):
    sb = env({"bootstrap": RAW_BOOTSTRAP}, runtime="provided.al2023", handler="ignored")
    r, p = call(sb, {"x": 1}, client_context='{"a":1}', trace_id="Root=1-2-3", request_id="req-1")
    h = {k.lower(): v for k, v in p["headers"].items()}
    assert h["lambda-runtime-aws-request-id"] == "req-1"
    assert abs(int(h["lambda-runtime-deadline-ms"]) - (time.time() + 3) * 1000) < 3000
    assert h["lambda-runtime-invoked-function-arn"].endswith(":function:fn")
    assert h["lambda-runtime-trace-id"] == "Root=1-2-3" and h["lambda-runtime-client-context"] == '{"a":1}'
    assert json.loads(p["body"]) == {"x": 1}


def test_handler_error_keeps_environment(env):
    sb = env({"app.py": APP})
    r, p = call(sb, {"raise": True})
    assert r.function_error == "Unhandled" and r.error_type == "ValueError"
    assert p["errorType"] == "ValueError" and p["errorMessage"] == "boom" and isinstance(p["stackTrace"], list)
    assert sb.alive
    r, p = call(sb, {})
    assert r.function_error is None and p["count"] == 2


@pytest.mark.parametrize("files,handler,etype,msg", [
    ({"app.py": APP}, "nope.handler", "Runtime.ImportModuleError", "Unable to import module 'nope'"),
    ({"app.py": APP}, "app.missing", "Runtime.HandlerNotFound", "Handler 'missing' missing on module 'app'"),
    ({"app.py": APP}, "nodot", "Runtime.MalformedHandlerName", "Bad handler 'nodot'"),
    ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
])
def test_init_errors(env, files, handler, etype, msg):
    sb = env(files, handler=handler, start=False)
    with pytest.raises(InitFailed) as ei:
        sb.start()
    res = ei.value.result
    assert res.function_error == "Unhandled" and res.error_type == etype
    assert msg in json.loads(res.payload)["errorMessage"]
    assert not sb.alive
    with pytest.raises(SandboxError):
        sb.invoke(make_request(sb.spec))


def test_runtime_exit_then_fresh_environment(env):
    sb = env({"app.py": APP})
    r, p = call(sb, {"exit": 3})
    assert r.function_error == "Unhandled" and r.error_type == "Runtime.ExitError"
    assert p["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    assert p["errorMessage"].startswith("RequestId: ")
    assert not sb.alive and sb.stats()["pids"] == []
    fresh = env({"app.py": APP})
    r, p = call(fresh, {})
    assert r.function_error is None and p["count"] == 1


def test_timeout_kills_environment(env):
    sb = env({"app.py": APP}, timeout_s=1.0)
    t = time.monotonic()
    r, p = call(sb, {"sleep": 30})
    assert time.monotonic() - t < 5
    assert r.function_error == "Unhandled" and r.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in p["errorMessage"]
    assert b"Task timed out after 1.00 seconds" in r.log_tail
    assert not sb.alive and sb.stats()["pids"] == []


def test_freeze_thaw(env):
    sb = env({"app.py": APP})
    call(sb, {})
    sb.freeze()
    assert sb.alive and sb.stats()["state"] == "frozen"
    sb.thaw()
    r, p = call(sb, {})
    assert p["count"] == 2
    sb.freeze()
    r, p = call(sb, {})             # invoke thaws a frozen environment itself
    assert p["count"] == 3


TICKER = """
import threading, time
ticks = []
def tick():
    while True:
        ticks.append(time.monotonic())
        time.sleep(0.001)
def handler(event, context):
    if not ticks:
        threading.Thread(target=tick, daemon=True).start()
        time.sleep(0.05)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    return {"max_gap_s": max(gaps or [0])}
"""


def test_a_frozen_environment_runs_nothing(env):
    """freeze() does not wait for the kernel to confirm (namespace: cgroups.py), yet a background thread
    of the function makes no progress from then until the next invocation thaws it."""
    sb = env({"app.py": TICKER})
    call(sb, {})
    sb.freeze()
    cg = getattr(sb, "cgroup", None)
    if cg is not None and cg.version == 1:
        state = lambda: open(f"{cg.dirs['freezer']}/freezer.state").read().strip()   # noqa: E731
        end = time.monotonic() + 2
        while state() != "FROZEN" and time.monotonic() < end:
            time.sleep(0.001)
        assert state() == "FROZEN"
    time.sleep(0.4)
    r, p = call(sb, {})
    assert p["max_gap_s"] >= 0.35, p      # the ticker stopped for the whole frozen time


def test_destroy_is_idempotent_and_clean(env):
    sb = env({"app.py": APP})
    call(sb, {})
    pids = sb.stats()["pids"]
    assert pids
    sb.destroy()
    sb.destroy()
    assert not sb.alive and sb.stats()["pids"] == []
    for pid in pids:
        assert _gone(pid)
    with pytest.raises(SandboxError):
        sb.invoke(make_request(sb.spec))


def test_missing_bootstrap_is_an_init_error(env):
    sb = env({"readme.txt": "no bootstrap"}, runtime="provided.al2023", start=False)
    with pytest.raises(InitFailed) as ei:
        sb.start()
    assert ei.value.result.error_type in ("Runtime.InvalidEntrypoint", "Runtime.ExitError")


NODE_APP = """
exports.asyncHandler = async (event, context) => ({ got: event, fn: context.functionName,
  rid: context.awsRequestId, left: context.getRemainingTimeInMillis() > 0 });
exports.cbHandler = (event, context, callback) => { console.log("cb", JSON.stringify(event)); callback(null, { cb: event.n }); };
exports.failing = async () => { throw new TypeError("bad thing"); };
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_nodejs_async_callback_and_error(env):
    for handler, check in (("index.asyncHandler", lambda p: p["got"] == {"n": 7} and p["fn"] == "fn" and p["left"]),
                           ("index.cbHandler", lambda p: p == {"cb": 7})):
        sb = env({"index.js": NODE_APP}, runtime="nodejs20.x", handler=handler)
        r, p = call(sb, {"n": 7})
        assert r.function_error is None and check(p), p
    assert b'cb {"n":7}' in r.log_tail
    sb = env({"index.js": NODE_APP}, runtime="nodejs20.x", handler="index.failing")
    r, p = call(sb, {})
    assert r.function_error == "Unhandled" and p["errorType"] == "TypeError" and p["errorMessage"] == "bad thing"
    sb = env({"index.js": NODE_APP}, runtime="nodejs20.x", handler="nothere.handler", start=False)
    with pytest.raises(InitFailed) as ei:
        sb.start()
    assert ei.value.result.error_type == "Runtime.ImportModuleError"


CURL_BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  RID=$(grep -i Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "shell got $EVENT"
  curl -sS -X POST "$API/invocation/$RID/response" -d "{\\"echo\\": $EVENT}" >/dev/null
done
"""


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("sh") is None, reason="no curl/sh on this host")
def test_provided_shell_bootstrap_with_curl(env):
    sb = env({"bootstrap": CURL_BOOTSTRAP}, runtime="provided.al2", handler="x")
    r, p = call(sb, {"k": "v"})
    assert r.function_error is None and p == {"echo": {"k": "v"}}
    assert b'shell got {"k": "v"}' in r.log_tail


AWSLAMBDARIC_CACHE = "/tmp/lambdalet-test-cache/awslambdaric"


def _awslambdaric_dir() -> str | None:
    """pip-install the official awslambdaric once into a cache dir (it is copied into the function's code)."""
    import subprocess
    import sys
    if os.path.isdir(os.path.join(AWSLAMBDARIC_CACHE, "awslambdaric")):
        return AWSLAMBDARIC_CACHE
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", AWSLAMBDARIC_CACHE, "awslambdaric"],
                       capture_output=True, timeout=300)
    return AWSLAMBDARIC_CACHE if r.returncode == 0 else None


@pytest.mark.slow
def test_official_awslambdaric_unmodified(env, tmp_path):
    ric = _awslambdaric_dir()
    if ric is None:
        pytest.skip("awslambdaric could not be installed (offline?)")
    files = {"app.py": "def handler(event, context):\n    print('ric says hi')\n"
                       "    if event.get('raise'): raise KeyError('k')\n"
                       "    return {'ok': event, 'rid': context.aws_request_id}\n",
             "bootstrap": "#!/bin/sh\ncd \"$LAMBDA_TASK_ROOT\"\nexec python3 -m awslambdaric app.handler\n"}
    sb = env(files, runtime="provided.al2023", handler="app.handler", start=False)
    shutil.copytree(ric, sb.spec.code_dir, dirs_exist_ok=True)
    write_code(sb.spec.code_dir, {})
    sb.start()
    r, p = call(sb, {"v": 1}, request_id="ric-req-1")
    assert r.function_error is None and p == {"ok": {"v": 1}, "rid": "ric-req-1"}, r
    assert b"ric says hi" in r.log_tail
    r, p = call(sb, {"raise": True})
    assert r.function_error == "Unhandled" and p["errorType"] == "KeyError"
    r, p = call(sb, {"v": 2})
    assert p["ok"] == {"v": 2}
