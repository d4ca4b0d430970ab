"""Lambda's Extensions API and Telemetry API inside a real environment (namespace sandbox), driven by
boto3 against a real `lambdalet serve`.

The extensions are written as AWS's samples (aws-samples/aws-lambda-extensions) write them and ship
in layers at /opt/extensions: a bash extension that registers for INVOKE and SHUTDOWN with curl and
echoes every event, a Python extension that subscribes an HTTP listener on sandbox.localdomain to the
Telemetry API, and a bash extension that reports an init error.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time

import pytest

from .e2e_support import create_function, delete_quietly, make_zip, unique
from .test_layers import exec_zip

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="extensions run only inside the namespace sandbox (root)")

# The shape of AWS's extensions/extension1.sh sample: register with curl, then event/next for ever,
# echo each event, leave on SHUTDOWN. (The sleep stands for an extension's post-invoke work.)
BASH_EXTENSION = r"""#!/bin/bash
set -euo pipefail
OWN_FILENAME="$(basename $0)"
LAMBDA_EXTENSION_NAME="$OWN_FILENAME"
TMPFILE=/tmp/$OWN_FILENAME
echo "[${LAMBDA_EXTENSION_NAME}] launching"
_term() { echo "[${LAMBDA_EXTENSION_NAME}] Received SIGTERM"; kill -TERM "$PID" 2>/dev/null; }
forward_sigterm_and_wait() { trap _term SIGTERM; wait "$PID"; trap - SIGTERM; }
HEADERS="$(mktemp)"
curl -sS -LD "$HEADERS" -XPOST "http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension/register" \
  --header "Lambda-Extension-Name: ${LAMBDA_EXTENSION_NAME}" -d "{ \"events\": [\"INVOKE\", \"SHUTDOWN\"]}" > $TMPFILE
RESPONSE=$(<$TMPFILE)
echo "[${LAMBDA_EXTENSION_NAME}] Registered: ${RESPONSE}"
EXTENSION_ID=$(grep -Fi Lambda-Extension-Identifier "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
while true
do
  curl -sS -L -XGET "http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension/event/next" \
    --header "Lambda-Extension-Identifier: ${EXTENSION_ID}" > $TMPFILE &
  PID=$!
  forward_sigterm_and_wait
  EVENT_DATA=$(<$TMPFILE)
  if [[ $EVENT_DATA == *"SHUTDOWN"* ]]; then
    echo "[${LAMBDA_EXTENSION_NAME}] Received SHUTDOWN event: ${EVENT_DATA}" 1>&2
    exit 0
  fi
  echo "[${LAMBDA_EXTENSION_NAME}] Received event: ${EVENT_DATA}"
  sleep 0.3
done
"""

# The shape of AWS's python telemetry-API sample (stdlib only): an HTTP listener on sandbox.localdomain,
# register, subscribe, then event/next; every batch received is kept in /tmp for the function to read.
TELEMETRY_EXTENSION = r"""#!/usr/bin/env python3
import json, os, sys, threading, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

NAME = Path(__file__).name
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
RECEIVED = "/tmp/telemetry.jsonl"

class Listener(BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(RECEIVED, "a") as f:
            for event in batch:
                f.write(json.dumps(event) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass

def call(method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{API}{path}", method=method, headers=headers or {},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as resp:
        return resp.headers, json.loads(resp.read() or b"null")

server = HTTPServer(("sandbox.localdomain", 4243), Listener)
threading.Thread(target=server.serve_forever, daemon=True).start()
headers, info = call("POST", "/2020-01-01/extension/register", {"events": ["INVOKE", "SHUTDOWN"]},
                     {"Lambda-Extension-Name": NAME, "Lambda-Extension-Accept-Feature": "accountId"})
ext_id = headers["Lambda-Extension-Identifier"]
print(f"[{NAME}] registered: {json.dumps(info)}", flush=True)
call("PUT", "/2022-07-01/telemetry", {
    "schemaVersion": "2022-12-13", "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"},
    "types": ["platform", "function"], "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}},
    {"Lambda-Extension-Identifier": ext_id})
while True:
    _, event = call("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    if event["eventType"] == "SHUTDOWN":
        print(f"[{NAME}] SHUTDOWN {event['shutdownReason']}", flush=True)
        sys.exit(0)
"""

READ_TELEMETRY = """
import json, os
def handler(event, context):
    print("hello-from-function", context.aws_request_id)
    if not os.path.exists("/tmp/telemetry.jsonl"):
        return []
    with open("/tmp/telemetry.jsonl") as f:
        return [json.loads(line) for line in f]
"""

# An internal extension: the function's own process registers it while it initializes (INVOKE only;
# SHUTDOWN is for external extensions) and follows the events in a thread.
INTERNAL_EXTENSION = """
import json, os, threading, urllib.error, urllib.request
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
seen, refused = [], []

def call(method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{API}{path}", method=method, headers=headers or {},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req) as resp:
        return resp.headers, json.loads(resp.read() or b"null")

try:
    call("POST", "/2020-01-01/extension/register", {"events": ["INVOKE", "SHUTDOWN"]}, {"Lambda-Extension-Name": "bad"})
except urllib.error.HTTPError as e:
    refused.append([e.code, json.loads(e.read())["errorType"]])
headers, _ = call("POST", "/2020-01-01/extension/register", {"events": ["INVOKE"]}, {"Lambda-Extension-Name": "inproc"})
ext_id = headers["Lambda-Extension-Identifier"]

def follow():
    while True:
        _, event = call("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
        seen.append(event["requestId"])

threading.Thread(target=follow, daemon=True).start()

def handler(event, context):
    return {"seen": list(seen), "refused": refused}
"""

CRASHING_EXTENSION = "#!/bin/bash\necho 'about to fail'\nexit 3\n"

INIT_ERROR_EXTENSION = r"""#!/bin/bash
set -euo pipefail
NAME="$(basename $0)"
HEADERS="$(mktemp)"
curl -sS -LD "$HEADERS" -XPOST "http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension/register" \
  --header "Lambda-Extension-Name: ${NAME}" -d '{"events": ["INVOKE"]}' > /dev/null
ID=$(grep -Fi Lambda-Extension-Identifier "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
curl -sS -XPOST "http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension/init/error" \
  --header "Lambda-Extension-Identifier: ${ID}" --header "Lambda-Extension-Function-Error-Type: Extension.ConfigInvalid" \
  -d '{"errorMessage": "no API key configured", "errorType": "ConfigInvalid", "stackTrace": []}'
sleep 30
"""


@pytest.fixture(scope="module")
def lam(function_server):
    return function_server.client("lambda")


@pytest.fixture
def made(lam):
    names, layers = [], []

    class Made:
        def layer(self, files: dict[str, tuple[str, int]]) -> str:
            name = unique("extl")
            arn = lam.publish_layer_version(LayerName=name, Content={"ZipFile": exec_zip(files)})["LayerVersionArn"]
            layers.append((name, int(arn.rsplit(":", 1)[1])))
            return arn

        def function(self, code: str, layers: list[str], **kw) -> str:
            name = unique("ext")
            create_function(lam, name, zip_bytes=make_zip({"app.py": code}), Layers=layers, Timeout=10, **kw)
            names.append(name)
            return name

    yield Made()
    for name in names:
        delete_quietly(lam, name)
    for name, version in layers:
        with contextlib.suppress(Exception):
            lam.delete_layer_version(LayerName=name, VersionNumber=version)


def _invoke(lam, name: str, payload=None) -> tuple[dict, object, str]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail")
    body = json.loads(resp.pop("Payload").read())
    return resp, body, base64.b64decode(resp.get("LogResult", "")).decode()


def _log_text(function_server, name: str, needle: str, timeout_s: float = 20.0) -> str:
    logs = function_server.client("logs")
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
            text = "".join(e["message"] for e in events)
            if needle in text:
                return text
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} never reached the log group of {name}")


def test_a_bash_extension_gets_each_invoke_and_the_shutdown(function_server, lam, made):
    layer = made.layer({"extensions/extension1.sh": (BASH_EXTENSION, 0o755)})
    name = made.function("def handler(event, context):\n    return {'ok': True}\n", [layer])

    resp, body, tail = _invoke(lam, name)
    rid = resp["ResponseMetadata"]["RequestId"]
    assert body == {"ok": True} and "FunctionError" not in resp
    got = re.search(r"\[extension1\.sh\] Received event: (\{.*\})", tail)
    assert got, tail
    event = json.loads(got.group(1))
    assert event["eventType"] == "INVOKE" and event["requestId"] == rid
    assert event["invokedFunctionArn"].endswith(f":function:{name}") and event["deadlineMs"] > time.time() * 1000
    # the invocation ends when the extension called next again (after its 0.3 s of work): REPORT counts it
    duration = float(re.search(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms", tail).group(1))
    assert duration >= 290, tail

    resp, _, tail = _invoke(lam, name)               # warm: the same extension, the next event
    assert resp["ResponseMetadata"]["RequestId"] in tail and "Registered" not in tail

    # a configuration change retires the environment: the extension gets SHUTDOWN and its line is logged
    lam.update_function_configuration(FunctionName=name, Description="retire the environment")
    text = _log_text(function_server, name, "Received SHUTDOWN event")
    registered = json.loads(re.search(r"\[extension1\.sh\] Registered: (\{.*\})", text).group(1))
    assert registered == {"functionName": name, "functionVersion": "$LATEST", "handler": "app.handler"}
    shutdown = json.loads(re.search(r"Received SHUTDOWN event: (\{.*\})", text).group(1))
    assert shutdown["eventType"] == "SHUTDOWN" and shutdown["shutdownReason"] == "spindown"
    assert shutdown["deadlineMs"] > 0


def test_a_telemetry_subscriber_receives_platform_events_and_function_logs(function_server, lam, made):
    layer = made.layer({"extensions/telemetry-extension": (TELEMETRY_EXTENSION, 0o755)})
    name = made.function(READ_TELEMETRY, [layer])

    first, _, _ = _invoke(lam, name)
    first_id = first["ResponseMetadata"]["RequestId"]
    text = _log_text(function_server, name, "[telemetry-extension] registered")
    registered = json.loads(re.search(r"\[telemetry-extension\] registered: (\{.*\})", text).group(1))
    assert registered["functionName"] == name and registered["functionVersion"] == "$LATEST"
    assert registered["handler"] == "app.handler" and re.fullmatch(r"\d{12}", registered["accountId"])

    deadline = time.monotonic() + 10
    while True:                                      # the first invocation's events arrive by the next one
        _, events, _ = _invoke(lam, name)
        kinds = {(e["type"], (e["record"] or {}).get("requestId") if isinstance(e["record"], dict) else None)
                 for e in events}
        if ("platform.report", first_id) in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    types = [e["type"] for e in events]
    assert "platform.initStart" in types and "platform.initReport" in types
    assert "platform.telemetrySubscription" in types and "platform.extension" in types
    for kind in ("platform.start", "platform.runtimeDone", "platform.report"):
        assert (kind, first_id) in kinds, (kind, types)
    report = next(e["record"] for e in events if e["type"] == "platform.report" and e["record"]["requestId"] == first_id)
    assert report["status"] == "success" and report["metrics"]["memorySizeMB"] == 128
    assert report["metrics"]["durationMs"] > 0 and "initDurationMs" in report["metrics"]
    done = next(e["record"] for e in events if e["type"] == "platform.runtimeDone" and e["record"]["requestId"] == first_id)
    assert done["status"] == "success" and done["metrics"]["producedBytes"] > 0
    lines = [e["record"] for e in events if e["type"] == "function"]
    assert any(f"hello-from-function {first_id}" in line for line in lines), lines
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in events)

    lam.delete_function(FunctionName=name)           # deleted: SHUTDOWN reaches it, its goodbye is logged
    _log_text(function_server, name, "[telemetry-extension] SHUTDOWN spindown")


def test_an_extension_init_error_fails_the_invocation_with_its_type(lam, made):
    layer = made.layer({"extensions/failing": (INIT_ERROR_EXTENSION, 0o755)})
    name = made.function("def handler(event, context):\n    return 1\n", [layer])
    t0 = time.monotonic()
    resp, body, _ = _invoke(lam, name)
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Extension.ConfigInvalid" and body["errorMessage"] == "no API key configured"
    assert time.monotonic() - t0 < 5                 # at once, not at the 10 s init limit


def test_an_internal_extension_follows_the_invocations(lam, made):
    name = made.function(INTERNAL_EXTENSION, [])
    first, body, _ = _invoke(lam, name)
    assert body["refused"] == [[403, "ShutdownEventNotSupportedForInternalExtension"]]
    _, body, _ = _invoke(lam, name)
    assert first["ResponseMetadata"]["RequestId"] in body["seen"]


def test_an_extension_that_exits_during_init_fails_the_invocation(lam, made):
    layer = made.layer({"extensions/crashing": (CRASHING_EXTENSION, 0o755)})
    name = made.function("def handler(event, context):\n    return 1\n", [layer])
    resp, body, _ = _invoke(lam, name)
    assert resp["FunctionError"] == "Unhandled" and body["errorType"] == "Extension.Crash"
    assert "crashing" in body["errorMessage"] and "exit status 3" in body["errorMessage"]


def test_a_logs_api_subscriber_receives_the_function_lines(lam, made):
    """The older Logs API (PUT /2020-08-15/logs, no schemaVersion), as log-shipping layers still call it."""
    logs_extension = TELEMETRY_EXTENSION.replace(
        'call("PUT", "/2022-07-01/telemetry", {\n    "schemaVersion": "2022-12-13", "destination"',
        'call("PUT", "/2020-08-15/logs", {\n    "destination"')
    assert "/2020-08-15/logs" in logs_extension
    layer = made.layer({"extensions/logs-extension": (logs_extension, 0o755)})
    name = made.function(READ_TELEMETRY, [layer])
    first, _, _ = _invoke(lam, name)
    first_id = first["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 10
    while True:
        _, events, _ = _invoke(lam, name)
        lines = [e["record"] for e in events if e["type"] == "function"]
        reported = any(e["type"] == "platform.report" and e["record"]["requestId"] == first_id for e in events)
        if (reported and any(first_id in line for line in lines)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(f"hello-from-function {first_id}" in line for line in lines), events
    assert reported, events
