"""The Extensions API's and the Telemetry API's handlers inside the environment (runtime/extensions.py,
runtime/telemetry.py, runtime/init_extensions.py), without a sandbox: AWS's error types and status
codes, the phases' bookkeeping (READY / INVOKE_DONE / SHUTDOWN_DONE) and delivery to a real listener.
The end-to-end proof is tests/integration/test_extensions.py."""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lambdalet.runtime import bridge, extensions, init_extensions, telemetry

INFO = {"functionName": "f", "functionVersion": "$LATEST", "handler": "app.handler"}


def _registry(cond=None, on_change=lambda: None) -> extensions.Extensions:
    return extensions.Extensions(cond or threading.Condition(), INFO, "123456789012", on_change)


def _register(exts, name, events=("INVOKE",), **headers):
    return exts.register({"lambda-extension-name": name, **headers}, json.dumps({"events": list(events)}).encode())


def _error(call) -> tuple[int, str]:
    with pytest.raises(extensions.ApiError) as e:
        call()
    assert json.loads(e.value.body())["errorType"] == e.value.error_type
    return e.value.status, e.value.error_type


def test_register_answers_as_aws_does():
    exts = _registry()
    exts.expected[4242] = "ext1.sh"                       # a launched /opt/extensions executable
    ext, body, headers = _register(exts, "ext1.sh", ("INVOKE", "SHUTDOWN"))
    assert json.loads(body) == INFO and headers == [("Lambda-Extension-Identifier", ext.id)]
    assert ext.external and ext.events == {"INVOKE", "SHUTDOWN"} and exts.active
    _, body, _ = _register(exts, "internal", **{"lambda-extension-accept-feature": "accountId"})
    assert json.loads(body)["accountId"] == "123456789012"
    assert exts.summary() == {"names": ["ext1.sh", "internal"], "shutdown": True}


@pytest.mark.parametrize("name, body, expected", [
    ("", b'{"events": ["INVOKE"]}', "Extension.InvalidExtensionName"),
    ("x" * 300, b'{"events": ["INVOKE"]}', "Extension.InvalidExtensionName"),
    ("a", b"not json", "InvalidRequestFormat"),
    ("a", b'{"events": "INVOKE"}', "InvalidRequestFormat"),
    ("a", b'{"events": ["BOOT"]}', "Extension.InvalidEventType"),
    ("a", b'{"events": ["SHUTDOWN"]}', "ShutdownEventNotSupportedForInternalExtension"),
])
def test_register_refusals(name, body, expected):
    exts = _registry()
    assert _error(lambda: exts.register({"lambda-extension-name": name}, body)) == (403, expected)
    assert not exts.by_id and not exts.active


def test_register_twice_too_many_and_after_init():
    exts = _registry()
    _register(exts, "a")
    assert _error(lambda: _register(exts, "a")) == (403, "Extension.AlreadyRegistered")
    for i in range(extensions.MAX_EXTENSIONS - 1):
        _register(exts, f"e{i}")
    assert _error(lambda: _register(exts, "one-more")) == (403, "Extension.TooManyExtensions")
    exts.open = False
    assert _error(lambda: _register(exts, "late")) == (403, "Extension.RegistrationServiceOff")


def test_lookup_needs_a_known_identifier():
    exts = _registry()
    assert _error(lambda: exts.lookup({})) == (403, "Extension.MissingExtensionIdentifier")
    assert _error(lambda: exts.lookup({"lambda-extension-identifier": "nope"})) == (403, "Extension.InvalidExtensionIdentifier")


def test_events_reach_only_their_subscribers_and_readiness_follows_next():
    cond = threading.Condition()
    changes = []
    exts = _registry(cond, lambda: changes.append(exts.all_ready("INVOKE")))
    exts.expected[1] = "both"
    both, _, _ = _register(exts, "both", ("INVOKE", "SHUTDOWN"))
    invoke_only, _, _ = _register(exts, "invoke-only")
    got: dict[str, list] = {"both": [], "invoke-only": []}

    def loop(ext):
        while (event := exts.next_event(ext, lambda: False)) is not None:
            got[ext.name].append(event)
            if event["eventType"] == "SHUTDOWN":
                return

    threads = [threading.Thread(target=loop, args=(e,), daemon=True) for e in (both, invoke_only)]
    for t in threads:
        t.start()
    _wait(lambda: exts.all_ready())
    with cond:
        exts.deliver_invoke({"request_id": "r1", "deadline_ms": 99, "invoked_function_arn": "arn", "trace_id": "Root=1"})
        assert not exts.all_ready("INVOKE")           # delivered: not ready until each calls next again
    _wait(lambda: exts.all_ready("INVOKE"))
    assert got["both"] == got["invoke-only"] == [{"eventType": "INVOKE", "deadlineMs": 99, "requestId": "r1",
                                                 "invokedFunctionArn": "arn",
                                                 "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1"}}]
    exts.deliver_shutdown("spindown", 1234)
    threads[0].join(2)
    assert got["both"][-1] == {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 1234}
    assert len(got["invoke-only"]) == 1 and changes


def test_an_extension_that_exits_during_init_fails_it_and_later_only_resets():
    exts = _registry()
    exts.expected[7] = "crashy"
    ext, _, _ = _register(exts, "crashy")
    assert not exts.exited(8, "exit status 1")         # not one of ours
    assert exts.exited(7, "exit status 2")
    assert exts.failure == ("Extension.Crash", "extension crashy exited: exit status 2")
    assert ext.gone and exts.all_ready() and exts.any_gone()
    late = _registry()
    late.expected[9] = "x"
    _register(late, "x")
    late.open = False
    late.exited(9, "exit status 0")
    assert late.failure is None and late.any_gone()


class _FakeInit:
    """What init_extensions reads of init's _State."""

    def __init__(self):
        self.cond = threading.Condition()
        self.sent: list[tuple[int, dict]] = []
        self.telemetry = telemetry.Telemetry()
        self.timings: dict = {}
        self.ready_sent = self.runtime_ready = self.runtime_waiting = self.invoking = self.shutting = False
        self.init_failed = False
        self.ext_log_fd = -1
        self.ext_log_lock = threading.Lock()
        self.t_spawn = time.monotonic()
        self.exts = extensions.Extensions(self.cond, INFO, "", lambda: init_extensions.phase_check(self))

    def send(self, kind, header=None, body=b""):
        self.sent.append((kind, header or {}))


def test_phases_wait_for_the_runtime_and_every_extension():
    st = _FakeInit()
    st.exts.expected[1] = "ext"
    ext, _, _ = _register(st.exts, "ext", ("INVOKE", "SHUTDOWN"))
    with st.cond:
        st.runtime_ready = True
        init_extensions.phase_check(st)
    assert st.sent == []                                # the extension has not called next yet
    threading.Thread(target=lambda: [st.exts.next_event(ext, lambda: False) for _ in range(3)], daemon=True).start()
    _wait(lambda: st.sent)
    kind, ready = st.sent[0]
    assert kind == bridge.READY and ready["extensions"] == {"names": ["ext"], "shutdown": True}
    assert not st.exts.open                             # registration closes with the init phase
    with st.cond:                                       # what init's relay and _next do around an invocation
        st.invoking, st.runtime_waiting = True, False
        st.exts.deliver_invoke({"request_id": "r", "deadline_ms": 1, "invoked_function_arn": "a"})
        st.runtime_waiting = True
        init_extensions.phase_check(st)
    _wait(lambda: len(st.sent) == 2)
    assert st.sent[1] == (bridge.INVOKE_DONE, {"telemetry": False, "reset": False})
    r, w = os.pipe()                                    # what the extension wrote on its way out ...
    os.set_blocking(r, False)
    st.ext_log_fd = r
    os.write(w, b"flushing, bye\n")
    init_extensions.shutdown(st, {"reason": "spindown", "deadline_ms": 5})
    _wait(lambda: len(st.sent) == 4)
    assert [k for k, _ in st.sent[2:]] == [bridge.LOG, bridge.SHUTDOWN_DONE]   # ... is sent before the end
    os.close(r)
    os.close(w)


def test_init_error_from_an_extension_keeps_its_type_and_message():
    doc = json.loads(init_extensions._error_doc("Extension.ConfigInvalid", b'{"errorMessage": "no key", "stackTrace": []}'))
    assert doc == {"errorType": "Extension.ConfigInvalid", "errorMessage": "no key"}
    assert json.loads(init_extensions._error_doc("Extension.X", b"garbage")) == {"errorType": "Extension.X",
                                                                                 "errorMessage": "Extension.X"}


GOOD = {"schemaVersion": "2022-12-13", "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/t"},
        "types": ["platform", "function"], "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}}


def test_subscription_parsing():
    dest, types, buffering = telemetry.parse_subscription(json.dumps(GOOD).encode())
    assert dest == ("127.0.0.1", 4243, "/t") and types == ["platform", "function"]
    assert buffering == {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
    _, _, defaults = telemetry.parse_subscription(json.dumps({**GOOD, "buffering": None}).encode())
    assert defaults == {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 1000}


def test_the_older_logs_api_subscribes_the_same_way():
    logs = {k: v for k, v in GOOD.items() if k != "schemaVersion"}
    assert telemetry.parse_subscription(json.dumps(logs).encode(), logs_api=True)[1] == ["platform", "function"]
    assert telemetry.parse_subscription(json.dumps({**logs, "schemaVersion": "2021-03-18"}).encode(), logs_api=True)
    with pytest.raises(telemetry.ValidationError):
        telemetry.parse_subscription(json.dumps(logs).encode())          # the Telemetry API requires it
    with pytest.raises(telemetry.ValidationError):
        telemetry.parse_subscription(json.dumps({**logs, "schemaVersion": "2022-12-13"}).encode(), logs_api=True)


@pytest.mark.parametrize("change", [
    {"schemaVersion": "2020-01-01"},
    {"destination": {"protocol": "TCP", "URI": "http://sandbox.localdomain:1"}},
    {"destination": {"protocol": "HTTP", "URI": "http://169.254.169.254/latest"}},   # only the sandbox itself
    {"destination": {"protocol": "HTTP", "URI": "https://sandbox.localdomain:1"}},
    {"types": []}, {"types": ["platform", "kernel"]},
    {"buffering": {"maxItems": 5}}, {"buffering": {"timeoutMs": 60_000}}, {"buffering": {"maxBytes": True}},
])
def test_subscription_refusals(change):
    with pytest.raises(telemetry.ValidationError):
        telemetry.parse_subscription(json.dumps({**GOOD, **change}).encode())


def test_events_are_delivered_in_batches_to_the_listener():
    received: list[list] = []

    class Listener(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tel = telemetry.Telemetry()
        tel.emit("platform.initStart", {"phase": "init"})          # before the subscription: replayed
        sub = {**GOOD, "destination": {"protocol": "HTTP", "URI": f"http://localhost:{server.server_port}/"}}
        tel.subscribe("ext", json.dumps(sub).encode())
        tel.end_init()
        tel.subscribe("ext", json.dumps(sub).encode())        # again: its settings replaced, one subscriber
        assert len(tel.subscribers) == 1 and tel.wants_function and not tel.wants_extension
        tel.lines("function", b"hello ")
        tel.lines("function", b"world\n{\"level\": \"INFO\", \"message\": \"m\"}\n")
        tel.lines("extension", b"not subscribed\n")
        _wait(lambda: sum(len(b) for b in received) >= 5)
        events = [e for batch in received for e in batch]
        assert [e["type"] for e in events] == ["platform.initStart", "platform.telemetrySubscription",
                                               "platform.telemetrySubscription", "function", "function"]
        assert events[3]["record"] == "hello world" and events[4]["record"] == {"level": "INFO", "message": "m"}
        assert events[1]["record"] == {"name": "ext", "state": "Subscribed", "types": ["platform", "function"]}
    finally:
        server.shutdown()


def _wait(cond, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)
