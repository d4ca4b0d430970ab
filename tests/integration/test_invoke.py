"""Invoke, end to end: boto3 against a real `lambdalet serve`, function code from tests/integration/functions/.

As root the server runs the default `namespace` sandbox (the shared session `server`); otherwise the
behaviour tests run against a server started with `--sandbox process` and the tests that need real
isolation (OOM, crash recovery) are skipped.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, describe, expect_error, unique
from .functions_support import FUNCTIONS, PY_ZIP, host_runs, new_function, zip_dir

IS_ROOT = os.geteuid() == 0
AWSLAMBDARIC_CACHE = "/tmp/lambdalet-test-cache/awslambdaric"   # shared with tests/processes/test_sandbox_contract.py


# ---------------------------------------------------------------------------------------------- helpers



def invoke(lam, name: str, event=None, **kw) -> tuple[dict, object]:
    """-> (response without the stream, decoded JSON payload or None)."""
    if event is not None:
        kw["Payload"] = json.dumps(event).encode()
    try:
        resp = lam.invoke(FunctionName=name, **kw)
    except ClientError as e:
        raise AssertionError(f"Invoke {name} {kw.get('Qualifier', '')} failed: {describe(e)}") from None
    raw = resp.pop("Payload").read()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw
    return resp, payload


def header(resp: dict, name: str) -> str | None:
    return resp["ResponseMetadata"]["HTTPHeaders"].get(name.lower())


def wait_updated(lam, name: str) -> None:
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pyfn(lam):
    """One python3.11 function shared by the read-only behaviour tests."""
    name = new_function(lam, MemorySize=256, Timeout=10, Environment={"Variables": {"GREETING": "hello", "EMPTY": ""}})
    yield name
    delete_quietly(lam, name)


@pytest.fixture
def fns(lam):
    made: list[str] = []

    def make(**kw) -> str:
        made.append(new_function(lam, **kw))
        return made[-1]

    yield make
    for name in made:
        delete_quietly(lam, name)


# ---------------------------------------------------------------------------------------------- happy path

def test_python_handler_returns_json_with_event_and_context(lam, srv, pyfn):
    resp, p = invoke(lam, pyfn, {"hello": "world", "n": [1, 2, 3]})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, p)
    assert p["event"] == {"hello": "world", "n": [1, 2, 3]}
    c = p["context"]
    assert c["function_name"] == pyfn
    assert c["function_version"] == "$LATEST"
    assert str(c["memory_limit_in_mb"]) == "256"
    uuid.UUID(c["aws_request_id"])
    assert c["aws_request_id"] == header(resp, "x-amzn-RequestId"), "context.aws_request_id != the Invoke's request id"
    assert 0 < c["remaining_ms"] <= 10_000
    assert c["invoked_function_arn"] == srv.function_arn(pyfn)
    assert c["log_group_name"] == f"/aws/lambda/{pyfn}"
    assert c["log_stream_name"]


def test_invoked_arn_carries_the_qualifier_used(lam, srv, pyfn):
    _, p = invoke(lam, srv.function_arn(pyfn, "$LATEST"), {})
    assert p["context"]["invoked_function_arn"] == srv.function_arn(pyfn, "$LATEST")
    _, p = invoke(lam, pyfn, {}, Qualifier="$LATEST")
    assert p["context"]["invoked_function_arn"] == srv.function_arn(pyfn, "$LATEST")


def test_client_context_reaches_the_handler(lam, pyfn):
    cc = {"client": {"installation_id": "inst-1", "app_title": "t", "app_version_name": "1.0",
                     "app_version_code": "1", "app_package_name": "pkg"},
          "custom": {"k": "v"}, "env": {"platform": "test"}}
    resp, p = invoke(lam, pyfn, {}, ClientContext=base64.b64encode(json.dumps(cc).encode()).decode())
    got = p["context"]["client_context"]
    # AWS's Python runtime hands the handler a ClientContext object: context.client_context.custom / .env / .client
    assert got is not None, "context.client_context is None"
    assert got.get("custom") == {"k": "v"}, f"context.client_context.custom not usable as on AWS: {got}"
    assert got.get("env") == {"platform": "test"}, got
    assert (got.get("client") or {}).get("installation_id") == "inst-1", got


def test_environment_variables(lam, srv, pyfn):
    _, p = invoke(lam, pyfn, {})
    env = p["env"]
    assert env["GREETING"] == "hello" and env["EMPTY"] == ""
    expected = {"AWS_LAMBDA_FUNCTION_NAME": pyfn, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{pyfn}",
                "AWS_REGION": srv.region, "AWS_DEFAULT_REGION": srv.region, "_HANDLER": "app.handler",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
    assert {k: env.get(k) for k in expected} == expected
    for k in ("AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_X_AMZN_TRACE_ID"):
        assert env.get(k), f"{k} missing"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == p["context"]["log_stream_name"]
    if IS_ROOT:
        assert env["LAMBDA_TASK_ROOT"] == "/var/task" and env["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    # the server's own secrets / credentials never reach a function
    assert not any(k.startswith("LAMBDALET") for k in env), sorted(env)
    assert env.get("AWS_SECRET_ACCESS_KEY") != srv.secret_key


def test_log_type_tail(lam, pyfn):
    text = f"tail-me-{uuid.uuid4().hex}"
    resp, p = invoke(lam, pyfn, {"print": text}, LogType="Tail")
    assert "LogResult" in resp, resp
    log = base64.b64decode(resp["LogResult"]).decode()
    rid = p["context"]["aws_request_id"]
    assert f"START RequestId: {rid}" in log, log
    assert f"END RequestId: {rid}" in log, log
    assert f"REPORT RequestId: {rid}" in log and "Duration:" in log and "Max Memory Used:" in log, log
    assert text in log, log
    assert log.index("START") < log.index(text) < log.index("END RequestId") < log.index("REPORT")
    resp, _ = invoke(lam, pyfn, {})
    assert "LogResult" not in resp


def test_dry_run(lam, pyfn):
    resp = lam.invoke(FunctionName=pyfn, InvocationType="DryRun")
    assert resp["StatusCode"] == 204, resp
    assert resp["Payload"].read() == b""


def test_executed_version_latest_version_alias_and_weighted_routing(lam, fns):
    name = fns()
    resp, p = invoke(lam, name, {})
    assert resp["ExecutedVersion"] == "$LATEST" and header(resp, "x-amz-executed-version") == "$LATEST"
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_code(FunctionName=name, ZipFile=zip_dir(FUNCTIONS / "python_app", extra={"v2.txt": b"2"}))
    wait_updated(lam, name)
    v2 = lam.publish_version(FunctionName=name)["Version"]
    assert (v1, v2) == ("1", "2")
    resp, p = invoke(lam, name, {}, Qualifier=v1)
    assert resp["ExecutedVersion"] == "1" and p["context"]["function_version"] == "1"
    assert p["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == "1"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    resp, p = invoke(lam, name, {}, Qualifier="live")
    assert resp["ExecutedVersion"] == "2" and header(resp, "x-amz-executed-version") == "2"
    assert p["context"]["function_version"] == "2"
    assert p["context"]["invoked_function_arn"].endswith(f":function:{name}:live")
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen = {}
    for _ in range(40):
        resp, p = invoke(lam, name, {}, Qualifier="live")
        seen[resp["ExecutedVersion"]] = seen.get(resp["ExecutedVersion"], 0) + 1
        assert p["context"]["function_version"] == resp["ExecutedVersion"]
    assert set(seen) == {"1", "2"}, seen
    resp = lam.invoke(FunctionName=name, Qualifier="live", InvocationType="DryRun")
    assert resp["StatusCode"] == 204 and resp.get("ExecutedVersion") in ("1", "2"), resp


# ---------------------------------------------------------------------------------------------- function errors

def test_handler_exception(lam, pyfn):
    resp, p = invoke(lam, pyfn, {"raise": "boom went the handler"})
    assert resp["StatusCode"] == 200 and resp.get("FunctionError") == "Unhandled", resp
    assert header(resp, "x-amz-function-error") == "Unhandled"
    assert p["errorType"] == "ValueError" and p["errorMessage"] == "boom went the handler", p
    assert isinstance(p.get("stackTrace"), list)
    resp, p = invoke(lam, pyfn, {})
    assert "FunctionError" not in resp and p["event"] == {}


def test_import_error(lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "python_import_error"))
    for _ in range(2):                    # init fails every time: nothing broken is kept
        resp, p = invoke(lam, name, {})
        assert resp.get("FunctionError") == "Unhandled", (resp, p)
        assert p["errorType"] == "Runtime.ImportModuleError", p
        assert "Unable to import module 'app'" in p["errorMessage"] and "lambdalet_no_such_module_xyz" in p["errorMessage"]


def test_sys_exit_then_next_invoke_works(lam, fns):
    name = fns()
    _, before = invoke(lam, name, {})
    resp, p = invoke(lam, name, {"exit": 3}, LogType="Tail")
    assert resp.get("FunctionError") == "Unhandled", (resp, p)
    assert p["errorType"] == "Runtime.ExitError", p
    assert "Runtime exited with error: exit status 3" in p["errorMessage"], p
    resp, after = invoke(lam, name, {})
    assert "FunctionError" not in resp and after["marker"] != before["marker"]   # a new environment


def test_timeout_then_next_invoke_works(lam, fns):
    name = fns(Timeout=1)
    t0 = time.monotonic()
    resp, p = invoke(lam, name, {"sleep": 5}, LogType="Tail")
    took = time.monotonic() - t0
    assert resp.get("FunctionError") == "Unhandled", (resp, p)
    assert "Task timed out after 1.00 seconds" in p["errorMessage"], p
    assert took < 4, f"timeout answered after {took:.1f}s"
    assert "Task timed out after 1.00 seconds" in base64.b64decode(resp["LogResult"]).decode()
    resp, p = invoke(lam, name, {})
    assert "FunctionError" not in resp and p["event"] == {}


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root: the process sandbox has no memory limit")
def test_out_of_memory(lam, fns):
    name = fns(MemorySize=128, Timeout=20)
    resp, p = invoke(lam, name, {"alloc_mb": 512}, LogType="Tail")
    assert resp.get("FunctionError") == "Unhandled", (resp, p)
    assert p["errorType"] == "Runtime.ExitError", p
    assert "Runtime exited with error: signal: killed" in p["errorMessage"], p
    resp, p = invoke(lam, name, {})
    assert "FunctionError" not in resp


# ---------------------------------------------------------------------------------------------- other runtimes



@pytest.mark.skipif(not host_runs("nodejs22.x"),
                    reason="no Node.js 22 on this host (`make install` provisions it from npm into .venv/runtimes)")
def test_nodejs(lam, fns):
    # nodejs22.x: AWS blocks creating nodejs20.x functions since 2026-06-01 (and so does the catalogue)
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "nodejs_app"), runtime="nodejs22.x", handler="index.handler",
               Environment={"Variables": {"GREETING": "from-node"}})
    resp, p = invoke(lam, name, {"n": 7}, LogType="Tail")
    assert "FunctionError" not in resp, (resp, p)
    assert p["runtime"].startswith("v22."), p          # node 22 itself, not whatever `node` is on PATH
    assert p["event"] == {"n": 7} and p["functionName"] == name and p["greeting"] == "from-node", p
    assert p["remaining"] > 0 and p["requestId"]
    assert 'node saw {"n":7}' in base64.b64decode(resp["LogResult"]).decode()
    resp, p = invoke(lam, name, {"raise": "bad node"})
    assert resp.get("FunctionError") == "Unhandled" and p["errorType"] == "TypeError" and p["errorMessage"] == "bad node", p


VERSION_APP = (b"import sys\n\ndef handler(event, context):\n"
               b"    return {'version': list(sys.version_info[:2]), 'executable': sys.executable}\n")


@pytest.mark.skipif(not host_runs("python3.12"), reason="no Python 3.12 interpreter on this host")
def test_python312_runs_on_python312(lam, fns):
    """A python3.12 function runs on a 3.12 interpreter (exec'd, not forked from the server's 3.11)."""
    name = fns(zip_bytes=zip_dir(extra={"app.py": VERSION_APP}), runtime="python3.12")
    resp, p = invoke(lam, name, {})
    assert "FunctionError" not in resp, (resp, p)
    assert p["version"] == [3, 12], p
    if IS_ROOT:                                        # namespace backend: its prefix is bound at /var/lang
        assert p["executable"] == "/var/lang/bin/python3.12", p


def test_python311_still_runs_on_the_servers_python(lam, fns):
    name = fns(zip_bytes=zip_dir(extra={"app.py": VERSION_APP}), runtime="python3.11")
    _, p = invoke(lam, name, {})
    assert p["version"] == [3, 11], p


def test_runtime_this_host_lacks_is_refused(lam):
    """java21 is in AWS's catalogue but lambdalet cannot run it: refused, saying so (not 'deprecated')."""
    name = unique("java")
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName=name, Runtime="java21", Handler="example.Handler::handleRequest",
                            Role=ROLE, Code={"ZipFile": PY_ZIP})
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterValueException", err
    assert err["Message"].startswith("The runtime parameter of java21 is not available on this lambdalet host. "
                                     "Runtimes available here: provided.al2023, provided.al2, "), err
    assert "python3.11" in err["Message"] and "java" not in err["Message"].split("here:")[1], err


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("sh") is None, reason="no curl/sh on this host")
def test_provided_al2023_shell_bootstrap(lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "provided_curl"), runtime="provided.al2023", handler="unused")
    resp, p = invoke(lam, name, {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in resp, (resp, p)
    assert p["echo"] == {"k": "v"} and p["rid"], p
    assert 'shell runtime got {"k": "v"}' in base64.b64decode(resp["LogResult"]).decode()
    _, p2 = invoke(lam, name, {"k": 2})
    assert p2["echo"] == {"k": 2} and p2["rid"] != p["rid"]


def _awslambdaric() -> Path | None:
    if (Path(AWSLAMBDARIC_CACHE) / "awslambdaric").is_dir():
        return Path(AWSLAMBDARIC_CACHE)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", AWSLAMBDARIC_CACHE, "awslambdaric"],
                       capture_output=True, timeout=300)
    return Path(AWSLAMBDARIC_CACHE) if r.returncode == 0 else None


@pytest.mark.slow
def test_official_awslambdaric_unmodified(lam, fns):
    ric = _awslambdaric()
    if ric is None:
        pytest.skip("awslambdaric could not be installed (offline?)")
    name = fns(zip_bytes=zip_dir(ric, FUNCTIONS / "ric_app"), runtime="provided.al2023", handler="app.handler")
    resp, p = invoke(lam, name, {"v": 1}, LogType="Tail")
    assert "FunctionError" not in resp, (resp, p, base64.b64decode(resp.get("LogResult", "")))
    assert p["ok"] == {"v": 1} and p["fn"] == name and p["rid"] == header(resp, "x-amzn-RequestId"), p
    assert "ric handler says hi" in base64.b64decode(resp["LogResult"]).decode()
    resp, p = invoke(lam, name, {"raise": "k"})
    assert resp.get("FunctionError") == "Unhandled" and p["errorType"] == "KeyError", p
    resp, p = invoke(lam, name, {"v": 2})
    assert "FunctionError" not in resp and p["ok"] == {"v": 2}


# ---------------------------------------------------------------------------------------------- request errors

def test_payload_over_6mb(lam, pyfn):
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024)}).encode()
    # AWS answers 413 RequestEntityTooLargeException ("Request must be smaller than 6291456 bytes for the
    # InvokeFunction operation"); the botocore model of Invoke names RequestTooLargeException.
    with expect_error("RequestEntityTooLargeException", 413) as err:
        lam.invoke(FunctionName=pyfn, Payload=big)
    assert err.message == "Request must be smaller than 6291456 bytes for the InvokeFunction operation"


def test_invalid_json_payload(lam, pyfn):
    with expect_error("InvalidRequestContentException", 400):
        lam.invoke(FunctionName=pyfn, Payload=b"{not json")


def test_missing_function(lam, srv):
    with expect_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=unique("nosuch"), Payload=b"{}")
    with expect_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=srv.function_arn(unique("nosuch"), "7"), Payload=b"{}")


def test_missing_version_or_alias(lam, pyfn):
    for q in ("42", "no-such-alias"):
        with expect_error("ResourceNotFoundException", 404):
            lam.invoke(FunctionName=pyfn, Qualifier=q, Payload=b"{}")


# ---------------------------------------------------------------------------------------------- environments

def test_warm_reuse_and_code_update_gets_a_new_environment(lam, fns):
    name = fns()
    _, a = invoke(lam, name, {})
    _, b = invoke(lam, name, {})
    assert a["marker"] == b["marker"] and b["count"] == a["count"] + 1, (a["marker"], b["marker"])
    lam.update_function_code(FunctionName=name, ZipFile=zip_dir(FUNCTIONS / "python_app", extra={"x.txt": b"new"}))
    wait_updated(lam, name)
    _, c = invoke(lam, name, {})
    assert c["marker"] != a["marker"] and c["count"] == 1
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"NEW": "1"}})
    wait_updated(lam, name)
    _, d = invoke(lam, name, {})
    assert d["marker"] != c["marker"] and d["env"].get("NEW") == "1"


def test_versions_never_share_an_environment(lam, fns):
    name = fns()
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="a1", FunctionVersion="1")
    _, latest = invoke(lam, name, {})
    _, one = invoke(lam, name, {}, Qualifier="1")
    _, via_alias = invoke(lam, name, {}, Qualifier="a1")
    _, latest2 = invoke(lam, name, {})
    assert latest["marker"] != one["marker"]
    assert via_alias["marker"] == one["marker"]          # an alias runs its version's environment
    assert latest2["marker"] == latest["marker"]


# ---------------------------------------------------------------------------------------------- concurrency

def _throttle_reason(e: ClientError) -> str | None:
    return e.response.get("Reason") or e.response.get("Error", {}).get("Reason")


def test_reserved_concurrency_one(lam, fns):
    name = fns(Timeout=10)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    invoke(lam, name, {})                                 # warm, so the sleep dominates

    errors = []

    def run():
        try:
            return lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 2}).encode())
        except ClientError as e:
            errors.append(e)
            return e

    with ThreadPoolExecutor(2) as ex:
        first = ex.submit(run)
        time.sleep(0.5)
        second = ex.submit(run)
        results = [first.result(), second.result()]
    assert len(errors) == 1, f"expected exactly one throttle, got {[describe(e) for e in errors]} / {results}"
    e = errors[0]
    code = e.response["Error"]["Code"]
    assert code == "TooManyRequestsException" and e.response["ResponseMetadata"]["HTTPStatusCode"] == 429, describe(e)
    assert _throttle_reason(e) == "ReservedFunctionConcurrentInvocationLimitExceeded", e.response
    ok = [r for r in results if not isinstance(r, ClientError)]
    assert ok[0]["StatusCode"] == 200 and "FunctionError" not in ok[0]
    invoke(lam, name, {})                                 # the slot is free again


def test_reserved_concurrency_zero_throttles_everything(lam, fns):
    name = fns()
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(3):
        with expect_error("TooManyRequestsException", 429) as h:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert _throttle_reason(h.exc) == "ReservedFunctionConcurrentInvocationLimitExceeded", h.exc.response
    lam.delete_function_concurrency(FunctionName=name)
    invoke(lam, name, {})


# ---------------------------------------------------------------------------------------------- crash recovery

def _pstat(pid: int):
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    return int(rest[1]), rest[0]          # ppid, state


def _tree(root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit() and (st := _pstat(int(e))):
            kids.setdefault(st[0], []).append(int(e))
    out, todo = set(), [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _env_cgroups(pids) -> set[str]:
    """The memory/pids/freezer/cpu cgroup dirs (v1) or unified dirs (v2) of lambdalet environments."""
    dirs = set()
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, ctrls, path = line.split(":", 2)
            if "/lambdalet" not in path:
                continue
            if ctrls == "":
                dirs.add(f"/sys/fs/cgroup{path}")
            for c in ctrls.split(","):
                if c in ("memory", "pids", "freezer", "cpu"):
                    dirs.add(f"/sys/fs/cgroup/{c}{path}")
    return dirs


def _members(dirs) -> set[int]:
    out = set()
    for d in dirs:
        try:
            out |= {int(x) for x in Path(d, "cgroup.procs").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pids) -> list[int]:
    return sorted(p for p in pids if (st := _pstat(p)) and st[1] not in ("Z", "X"))


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root (namespace sandbox, cgroups)")
def test_sigkilled_server_leaves_nothing_and_restart_works(lambdalet_server_factory):
    srv = lambdalet_server_factory()
    lam = srv.client()
    idle = new_function(lam, prefix="crash")
    busy = new_function(lam, prefix="crash", Timeout=30)
    invoke(lam, idle, {})                                  # one idle (frozen) environment
    invoke(lam, busy, {})
    t = threading.Thread(target=lambda: _swallow(lambda: lam.invoke(FunctionName=busy, Payload=b'{"sleep": 20}')),
                         daemon=True)
    t.start()                                              # one busy environment, mid-invocation
    time.sleep(1.0)
    procs = _tree(srv.proc.pid)
    cgroups = _env_cgroups(procs)
    env_pids = _members(cgroups)
    assert len({os.path.dirname(d) for d in cgroups}) >= 1 and len(env_pids) >= 2, (procs, cgroups)
    sandbox_uids = {os.stat(f"/proc/{p}").st_uid for p in env_pids} - {0}
    assert sandbox_uids, "environment processes should run as their own unprivileged uids"
    # pre-isolated slots (on by default): idle ones, and the claimed ones' code and /tmp, mounted in the
    # fork server's own mount namespace (never the host's)
    slots_dir = _run_dir(srv) + "/slots"
    zygote = next(p for p in procs if b"sandbox.zygote" in Path(f"/proc/{p}/cmdline").read_bytes()
                  and (_pstat(p) or (0,))[0] == srv.proc.pid)   # the fork server itself, not one of its forks
    assert len(_mounts_under(slots_dir, zygote)) >= 2 + 2 * 2, _mounts_under(slots_dir, zygote)
    assert not _mounts_under(slots_dir)

    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    deadline = time.monotonic() + 5
    while (_alive(procs | env_pids) or _members(cgroups) or os.listdir(slots_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(procs | env_pids)
    assert not left, f"processes outlived the SIGKILLed server: {[(p, Path(f'/proc/{p}/cmdline').read_bytes()[:80]) for p in left]}"
    assert not _members(cgroups), f"processes remain in the dead server's cgroups: {_members(cgroups)}"
    assert not os.listdir(slots_dir), f"slot directories outlived the SIGKILLed server: {os.listdir(slots_dir)}"
    owned_by_sandbox_uids = [p for p in os.listdir("/proc") if p.isdigit() and _pstat(int(p))
                             and _uid(int(p)) in sandbox_uids and _pstat(int(p))[1] not in ("Z", "X")
                             and _env_cgroups([int(p)]) & cgroups]
    assert not owned_by_sandbox_uids
    t.join(30)

    srv.stop()                                             # closes the dead server's logs
    srv.start()                                            # same data dir: cleans up, then serves
    lam = srv.client()
    resp, p = invoke(lam, idle, {})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, p)
    resp, p = invoke(lam, busy, {})
    assert "FunctionError" not in resp, (resp, p)
    new_cgroups = _env_cgroups(_tree(srv.proc.pid))
    assert new_cgroups, "no environment cgroups after the restart?"
    assert srv.stop() in (0, -signal.SIGTERM), srv.log_text()
    assert not srv.leaked, srv.leaked
    stale = [d for d in cgroups | new_cgroups | {os.path.dirname(d) for d in cgroups | new_cgroups}
             if os.path.isdir(d)]
    assert not stale, f"cgroups left after the final stop: {stale}\n{srv.log_text()}"
    assert not _mounts_under(slots_dir) and not os.path.exists(slots_dir), "slot mounts left after the final stop"


def _run_dir(srv) -> str:
    from lambdalet.config import Settings
    return str(Settings(data_dir=srv.data_dir).run_dir)


def _mounts_under(path: str, pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass
