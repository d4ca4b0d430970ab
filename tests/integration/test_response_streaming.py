"""Response streaming end to end: boto3's invoke_with_response_stream (botocore decodes the event stream:
the outside check of the framing) and RESPONSE_STREAM function URLs (chunked HTTP) against a real
`lambdalet serve`, with functions written as for AWS: a Node.js handler wrapped in
awslambda.streamifyResponse (and HttpResponseStream.from for the URL), a `provided` bootstrap that
streams with curl and reports an error in the trailers, and a Python (buffered) function.

"Streamed" is shown by time: each function writes, sleeps 1 s, writes; the first bytes must reach the
client well before the end.
"""
from __future__ import annotations

import base64
import json
import shutil
import ssl
import time
from urllib.parse import urlsplit

import pytest

from .e2e_support import delete_quietly, expect_error
from .url_support import SniConnection, URL_RE, make_public
from .functions_support import FUNCTIONS, PY_ZIP, host_runs, new_function, zip_dir

NODE = pytest.mark.skipif(not host_runs("nodejs22.x"), reason="no Node.js 22 on this host (`make install`)")
CURL = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="no curl/bash")


@pytest.fixture(scope="module")
def node_fn(lam):
    if not host_runs("nodejs22.x"):
        pytest.skip("no Node.js 22 on this host")
    name = new_function(lam, zip_bytes=zip_dir(FUNCTIONS / "node_streaming"), runtime="nodejs22.x",
                  handler="index.handler", Timeout=20, prefix="stream")
    yield name
    delete_quietly(lam, name)


@pytest.fixture
def fns(lam):
    made: list[str] = []

    def make(**kw) -> str:
        made.append(new_function(lam, prefix="stream", **kw))
        return made[-1]
    yield make
    for name in made:
        delete_quietly(lam, name)


def read_stream(resp) -> tuple[list[tuple[float, str, dict]], float]:
    """[(seconds since the call, event name, event)] as botocore decodes them, and the call's start."""
    t0 = resp.pop("_t0")
    events = []
    for ev in resp["EventStream"]:
        (kind, body), = ev.items()
        events.append((time.monotonic() - t0, kind, body))
    return events, t0


def stream_invoke(lam, name: str, event=None, **kw):
    t0 = time.monotonic()
    resp = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    resp["_t0"] = t0
    events, _ = read_stream(resp)
    payload = b"".join(e["Payload"] for _, k, e in events if k == "PayloadChunk")
    assert [k for _, k, _ in events][-1] == "InvokeComplete", events
    assert all(k == "PayloadChunk" for _, k, _ in events[:-1]), events
    return resp, events, payload


# ---------------------------------------------------------------------------------------------- Node.js

@NODE
def test_node_stream_arrives_before_the_function_ends(lam, node_fn):
    resp, events, payload = stream_invoke(lam, node_fn, {"sleepMs": 1000}, LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseStreamContentType"] == "text/plain", resp
    assert payload == b"first,second"
    first = next(t for t, k, _ in events if k == "PayloadChunk")
    end = events[-1][0]
    assert end - first >= 0.8, f"first chunk at {first:.3f}s, end at {end:.3f}s: not streamed"
    complete = events[-1][2]
    assert "ErrorCode" not in complete, complete
    assert "streaming for" in base64.b64decode(complete["LogResult"]).decode()


@NODE
def test_node_stream_error_after_first_chunk(lam, node_fn):
    _, events, payload = stream_invoke(lam, node_fn, {"sleepMs": 10, "fail": "stream broke"})
    assert payload == b"first,"
    complete = events[-1][2]
    assert complete["ErrorCode"] == "Error", complete
    details = json.loads(complete["ErrorDetails"])
    assert details["errorMessage"] == "stream broke" and details["errorType"] == "Error", details


@NODE
def test_node_streaming_function_through_buffered_invoke(lam, node_fn):
    # Invoke (not streaming) of a streaming function: the whole response, buffered, as AWS answers it
    resp = lam.invoke(FunctionName=node_fn, Payload=json.dumps({"sleepMs": 10}).encode())
    assert "FunctionError" not in resp and resp["Payload"].read() == b"first,second"


@NODE
def test_node_stream_beyond_6_mb_is_paced(lam, node_fn):
    # AWS: the first 6 MB uncapped, then at most 2 MBps: 6 MB + 4 MB takes >= ~2 s past the burst
    size = 10 * 1024 * 1024
    t0 = time.monotonic()
    _, events, payload = stream_invoke(lam, node_fn, {"sleepMs": 0, "bytes": size})
    took = time.monotonic() - t0
    assert len(payload) >= size and "ErrorCode" not in events[-1][2], events[-1]
    assert took >= 1.8, f"{len(payload)} bytes in {took:.2f}s: the bandwidth cap did not apply"
    # the same function through Invoke: over the 6 MB buffered limit
    resp = lam.invoke(FunctionName=node_fn, Payload=json.dumps({"sleepMs": 0, "bytes": 7 * 1024 * 1024}).encode())
    doc = json.loads(resp["Payload"].read())
    assert resp.get("FunctionError") == "Unhandled" and doc["errorType"] == "Function.ResponseSizeTooLarge", doc


@NODE
def test_node_stream_crash_timeout_and_early_error(lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "node_streaming"), runtime="nodejs22.x", handler="index.trouble",
               Timeout=2)
    _, events, payload = stream_invoke(lam, name, {"crash": True})
    assert payload == b"partial" and events[-1][2]["ErrorCode"] == "Runtime.ExitError", events
    assert "exit status 3" in json.loads(events[-1][2]["ErrorDetails"])["errorMessage"]
    _, events, payload = stream_invoke(lam, name, {"sleepMs": 5000})
    assert payload == b"partial" and events[-1][2]["ErrorCode"] == "Sandbox.Timedout", events
    _, events, payload = stream_invoke(lam, name, {"early": True})
    assert payload == b"" and events[-1][2]["ErrorCode"] == "TypeError", events
    _, events, payload = stream_invoke(lam, name, {})
    assert payload == b"partialdone" and "ErrorCode" not in events[-1][2]
    resp = lam.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")
    assert resp["StatusCode"] == 204 and list(resp["EventStream"]) == []


@NODE
def test_client_leaving_mid_stream_leaves_the_function_usable(lam, node_fn):
    resp = lam.invoke_with_response_stream(FunctionName=node_fn, Payload=json.dumps({"sleepMs": 1500}).encode())
    first = next(iter(resp["EventStream"]))
    assert first["PayloadChunk"]["Payload"] == b"first,"
    resp["EventStream"]._raw_stream.close()          # the client goes away while the function still runs
    time.sleep(2)
    _, events, payload = stream_invoke(lam, node_fn, {"sleepMs": 10})
    assert payload == b"first,second" and "ErrorCode" not in events[-1][2], events


# ---------------------------------------------------------------------------------------------- provided + curl

@CURL
def test_provided_bootstrap_streams_with_curl_and_reports_errors_in_trailers(lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "provided_streaming"), runtime="provided.al2023", handler="unused",
               Timeout=10)
    resp, events, payload = stream_invoke(lam, name, {"k": "v"})
    assert payload == b"tick,tock" and resp["ResponseStreamContentType"] == "text/csv", (payload, resp)
    first = next(t for t, k, _ in events if k == "PayloadChunk")
    assert events[-1][0] - first >= 0.8, events
    assert "ErrorCode" not in events[-1][2]
    _, events, payload = stream_invoke(lam, name, {"fail": True})
    assert payload == b"partial"
    complete = events[-1][2]
    assert complete["ErrorCode"] == "FireError", complete
    assert json.loads(complete["ErrorDetails"]) == {"errorMessage": "disk on fire", "errorType": "FireError"}
    # the environment is still usable after a streamed error
    _, _, payload = stream_invoke(lam, name, {"again": 1})
    assert payload == b"tick,tock"


# ---------------------------------------------------------------------------------------------- Python (buffered)

def test_buffered_python_function_is_one_chunk(lam, fns):
    name = fns(zip_bytes=PY_ZIP, Timeout=10)
    resp, events, payload = stream_invoke(lam, name, {"k": "v"})
    assert [k for _, k, _ in events] == ["PayloadChunk", "InvokeComplete"], events
    assert json.loads(payload)["event"] == {"k": "v"}, payload
    assert resp["ResponseStreamContentType"] == "application/json"
    assert events[-1][2] == {}, events
    _, events, payload = stream_invoke(lam, name, {"raise": "bad"})
    assert payload == b"" and events[-1][2]["ErrorCode"], events
    assert json.loads(events[-1][2]["ErrorDetails"])["errorMessage"] == "bad"


def test_errors_before_the_stream_are_aws_errors(lam):
    with expect_error("ResourceNotFoundException", 404):
        lam.invoke_with_response_stream(FunctionName="no-such-function-here")
    with expect_error("InvalidRequestContentException", 400):
        lam.invoke_with_response_stream(FunctionName="no-such-function-here", Payload=b"{not json")


# ---------------------------------------------------------------------------------------------- function URLs

def _stream_get(srv, function_url: str, path: str = "/"):
    """GET with http.client, reading the chunked body as it arrives: (status, headers, [(t, bytes)])."""
    m = URL_RE.fullmatch(function_url)
    ctx = ssl.create_default_context(cafile=str(srv.ca))
    conn = SniConnection(int(m["port"]), urlsplit(function_url).hostname, ctx)
    try:
        t0 = time.monotonic()
        conn.request("GET", path, headers={"Host": f"{m['id']}.lambda-url.{m['region']}.localhost:{m['port']}"})
        r = conn.getresponse()
        pieces = []
        while True:
            data = r.read1(65536)
            if not data:
                break
            pieces.append((time.monotonic() - t0, data))
        return r.status, r.headers, pieces
    finally:
        conn.close()


@NODE
def test_response_stream_url(srv, lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "node_streaming"), runtime="nodejs22.x", handler="index.url", Timeout=10)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
    assert cfg["InvokeMode"] == "RESPONSE_STREAM"
    assert lam.get_function_url_config(FunctionName=name)["InvokeMode"] == "RESPONSE_STREAM"
    make_public(lam, name)
    status, headers, pieces = _stream_get(srv, cfg["FunctionUrl"], "/some/path")
    assert status == 201, (status, pieces)
    assert headers["x-streamed"] == "yes" and headers["content-type"].startswith("text/plain"), headers
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers, headers
    assert "a=1" in headers.get_all("set-cookie"), headers
    assert b"".join(p for _, p in pieces) == b"hello /some/path world"
    assert pieces[-1][0] - pieces[0][0] >= 0.8, f"not streamed: {[(round(t, 3), p) for t, p in pieces]}"


@NODE
def test_response_stream_url_error_before_the_first_byte_is_502(srv, lam, fns):
    name = fns(zip_bytes=zip_dir(FUNCTIONS / "node_streaming"), runtime="nodejs22.x", handler="index.trouble",
               Timeout=10)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
    make_public(lam, name)
    status, _, pieces = _stream_get(srv, cfg["FunctionUrl"], "/")
    assert status == 200 and b"".join(p for _, p in pieces) == b"partialdone"   # no prelude: 200, the bytes as is
    status, _, pieces = _stream_get(srv, cfg["FunctionUrl"], "/?early=1")
    assert status == 502 and b"".join(p for _, p in pieces) == b"Internal Server Error", (status, pieces)


def test_response_stream_url_of_a_buffered_function(srv, lam, fns):
    # RESPONSE_STREAM does not map a buffered function's result: its payload is the body, as is
    name = fns(zip_bytes=PY_ZIP, Timeout=10)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
    make_public(lam, name)
    status, _, pieces = _stream_get(srv, cfg["FunctionUrl"], "/x")
    assert status == 200 and json.loads(b"".join(p for _, p in pieces))["event"]["rawPath"] == "/x"
    lam.update_function_url_config(FunctionName=name, InvokeMode="BUFFERED")
    assert lam.get_function_url_config(FunctionName=name)["InvokeMode"] == "BUFFERED"
