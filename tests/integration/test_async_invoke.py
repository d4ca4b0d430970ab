"""Asynchronous invocation end to end: Invoke with InvocationType=Event and InvokeAsync against a real
`lambdalet serve --async-retry-scale 0.01` (AWS's ~1 min / 2 min retry backoff becomes ~1 s / 2 s,
MaximumEventAgeInSeconds=60 becomes 0.6 s), destinations and DLQs observed through the SQS API.

The crash test sends 2,000 Event invokes from many threads, kills the server with SIGKILL in the
middle of the burst, restarts it, and checks that every event answered 202 reached the destination
queue (at-least-once: duplicates allowed and counted, loss not).
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .tenancy_support import destinations_role
from .e2e_support import WAIT, delete_quietly, expect_error, make_zip, unique

IS_ROOT = os.geteuid() == 0
SCALE_ARGS = ("--async-retry-scale", "0.01")

APP = """
import json, time
def handler(event, context):
    if isinstance(event, dict):
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("fail"):
            raise RuntimeError("failing on purpose: " + str(event["fail"]))
    return {"got": event, "rid": context.aws_request_id, "fn": context.function_name}
"""
ZIP = make_zip({"app.py": APP})


def _server_args() -> tuple[str, ...]:
    return SCALE_ARGS if IS_ROOT else SCALE_ARGS + ("--sandbox", "process")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from harness import own_server
    yield from own_server(tmp_path_factory, *_server_args(), prefix="lambdalet-async")


@pytest.fixture(scope="module")
def sqs(srv):
    return srv.client("sqs")


@pytest.fixture(scope="module")
def role(srv):
    """The functions' execution role: destinations and dead-letter queues are written with its authority."""
    return destinations_role(srv.client("iam"))


@pytest.fixture
def fns(lam, role):
    made: list[str] = []

    def make(**kw) -> str:
        name = unique("async")
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                            Code={"ZipFile": ZIP}, **kw)
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_quietly(lam, name)


@pytest.fixture
def queues(sqs, srv):
    made: list[str] = []

    def make() -> tuple[str, str]:
        name = unique("dest")
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        made.append(url)
        return url, f"arn:aws:sqs:{srv.region}:{srv.account_id}:{name}"

    yield make
    for url in made:
        try:
            sqs.delete_queue(QueueUrl=url)
        except ClientError:
            pass


def event(lam, name: str, payload, **kw) -> str:
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload).encode(), **kw)
    assert resp["StatusCode"] == 202, resp
    return resp["ResponseMetadata"]["RequestId"]


def collect(sqs, url: str, n: int, timeout: float = 60, *, attrs: bool = False) -> list[dict]:
    """Receive (and delete) until n messages arrived or timeout; -> messages (Body parsed when JSON)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageAttributeNames=["All"] if attrs else []).get("Messages", [])
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            try:
                m["Json"] = json.loads(m["Body"])
            except ValueError:
                m["Json"] = None
            out.append(m)
    return out


# ------------------------------------------------------------------------------------------ delivery

def test_event_invoke_success_record_reaches_destination_queue(lam, sqs, fns, queues, srv):
    name = fns()
    ok_url, ok_arn = queues()
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": ok_arn}})
    rid = event(lam, name, {"hello": "async"})
    [msg] = collect(sqs, ok_url, 1)
    rec = msg["Json"]
    assert rec["version"] == "1.0" and rec["timestamp"].endswith("Z")
    assert rec["requestContext"] == {"requestId": rid, "functionArn": srv.function_arn(name, "$LATEST"),
                                     "condition": "Success", "approximateInvokeCount": 1}
    assert rec["requestPayload"] == {"hello": "async"}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"]["got"] == {"hello": "async"}
    assert rec["responsePayload"]["rid"] == rid, "the function must see the Event invoke's request id"
    assert not collect(sqs, ok_url, 1, timeout=2), "exactly one record expected"


def test_failing_function_is_retried_then_failure_record_and_dlq(lam, sqs, fns, queues, srv):
    dlq_url, dlq_arn = queues()
    fail_url, fail_arn = queues()
    name = fns(DeadLetterConfig={"TargetArn": dlq_arn})
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2,
                                         DestinationConfig={"OnFailure": {"Destination": fail_arn}})
    t0 = time.monotonic()
    rid = event(lam, name, {"fail": "always"})
    [msg] = collect(sqs, fail_url, 1, timeout=60)
    elapsed = time.monotonic() - t0
    rec = msg["Json"]
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3, rec["requestContext"]
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestPayload"] == {"fail": "always"}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorType"] == "RuntimeError"
    assert "failing on purpose" in rec["responsePayload"]["errorMessage"]
    # backoff between attempts: ~60 s then ~120 s, scaled by 0.01 (rounded up to whole seconds)
    assert elapsed >= 1.5, f"three attempts within {elapsed:.2f}s: no backoff between retries"
    [dl] = collect(sqs, dlq_url, 1, timeout=20, attrs=True)
    assert json.loads(dl["Body"]) == {"fail": "always"}, "the DLQ gets the original event"
    attrs = dl["MessageAttributes"]
    assert attrs["RequestID"] == {"StringValue": rid, "DataType": "String"}
    assert attrs["ErrorCode"]["DataType"] == "Number" and attrs["ErrorCode"]["StringValue"] == "200"
    assert "failing on purpose" in attrs["ErrorMessage"]["StringValue"]


def test_no_retries_when_maximum_retry_attempts_is_zero(lam, sqs, fns, queues):
    name = fns()
    fail_url, fail_arn = queues()
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": fail_arn}})
    event(lam, name, {"fail": 1})
    [msg] = collect(sqs, fail_url, 1)
    assert msg["Json"]["requestContext"]["approximateInvokeCount"] == 1


def test_throttled_events_are_retried_not_dropped(lam, sqs, fns, queues):
    name = fns()
    ok_url, ok_arn = queues()
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": ok_arn}})
    rids = {event(lam, name, {"sleep": 0.2, "i": i}) for i in range(8)}
    got = collect(sqs, ok_url, 8, timeout=90)
    assert {m["Json"]["requestContext"]["requestId"] for m in got} == rids


def test_event_age_exceeded_goes_to_failure_destination(lam, sqs, fns, queues):
    name = fns()
    fail_url, fail_arn = queues()
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)   # always throttled
    lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60,
                                         DestinationConfig={"OnFailure": {"Destination": fail_arn}})
    rid = event(lam, name, {"too": "old"})
    [msg] = collect(sqs, fail_url, 1, timeout=30)
    rec = msg["Json"]
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert rec["requestPayload"] == {"too": "old"}
    assert "responseContext" not in rec


def test_function_destination_is_an_event_invoke_of_that_function(lam, sqs, fns, queues, srv):
    first, second = fns(), fns()
    ok_url, ok_arn = queues()
    lam.put_function_event_invoke_config(
        FunctionName=first, DestinationConfig={"OnSuccess": {"Destination": srv.function_arn(second)}})
    lam.put_function_event_invoke_config(FunctionName=second, DestinationConfig={"OnSuccess": {"Destination": ok_arn}})
    rid = event(lam, first, {"chain": 1})
    [msg] = collect(sqs, ok_url, 1, timeout=60)
    rec = msg["Json"]
    assert rec["requestContext"]["functionArn"] == srv.function_arn(second, "$LATEST")
    inner = rec["requestPayload"]            # what `second` received: the record of `first`
    assert inner["requestContext"]["requestId"] == rid and inner["requestPayload"] == {"chain": 1}
    assert rec["responsePayload"]["fn"] == second


def test_qualified_event_invoke_uses_that_qualifiers_config(lam, sqs, fns, queues, srv):
    name = fns()
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    alias_url, alias_arn = queues()
    latest_url, latest_arn = queues()
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="live",
                                         DestinationConfig={"OnSuccess": {"Destination": alias_arn}})
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": latest_arn}})
    rid = event(lam, name, {"via": "alias"}, Qualifier="live")
    [msg] = collect(sqs, alias_url, 1)
    assert msg["Json"]["requestContext"]["requestId"] == rid
    assert msg["Json"]["requestContext"]["functionArn"] == srv.function_arn(name, "live")
    assert msg["Json"]["responseContext"]["executedVersion"] == "1"
    assert not collect(sqs, latest_url, 1, timeout=2)


def test_invoke_async_works_and_keeps_its_256k_limit(lam, sqs, fns, queues):
    name = fns()
    ok_url, ok_arn = queues()
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": ok_arn}})
    resp = lam.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"legacy": True}).encode())
    assert resp["Status"] == 202
    [msg] = collect(sqs, ok_url, 1)
    assert msg["Json"]["requestPayload"] == {"legacy": True}
    with expect_error("RequestTooLargeException", 413):
        lam.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"x": "a" * 262_144}).encode())


def test_event_payload_limit_is_1mb(lam, fns):
    name = fns()
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    # just under 1 MB is accepted (queued in the large-payload table), just over is refused
    body = json.dumps({"x": "a" * (1_048_576 - 20)}).encode()
    assert len(body) <= 1_048_576
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=body)["StatusCode"] == 202
    with expect_error("RequestEntityTooLargeException", 413):     # AWS's code for it (issue 11)
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"x": "a" * 1_048_576}).encode())


def test_event_invoke_of_missing_function_is_404(lam):
    with expect_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=unique("missing"), InvocationType="Event", Payload=b"{}")


# ------------------------------------------------------------------------------------------ config API

def test_event_invoke_config_crud_and_validation(lam, fns, queues, srv, role):
    raw = srv.client(config=Config(parameter_validation=False))     # the server validates, not botocore
    name = fns()
    _, q_arn = queues()
    lam.publish_version(FunctionName=name)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function_event_invoke_config(FunctionName=name)
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1,
                                               MaximumEventAgeInSeconds=3600)
    assert put["FunctionArn"] == srv.function_arn(name, "$LATEST")
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 3600
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumRetryAttempts"] == 1 and got["LastModified"]
    upd = lam.update_function_event_invoke_config(FunctionName=name,
                                                  DestinationConfig={"OnFailure": {"Destination": q_arn}})
    assert upd["MaximumRetryAttempts"] == 1 and upd["DestinationConfig"]["OnFailure"]["Destination"] == q_arn
    # Put replaces everything
    put2 = lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60)
    assert "MaximumRetryAttempts" not in put2 and put2["DestinationConfig"]["OnFailure"] == {}
    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=0)
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == sorted([srv.function_arn(name, "$LATEST"),
                                                               srv.function_arn(name, "1")])
    page = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=1)
    assert len(page["FunctionEventInvokeConfigs"]) == 1 and page["NextMarker"]
    rest = lam.list_function_event_invoke_configs(FunctionName=name, Marker=page["NextMarker"])
    assert len(rest["FunctionEventInvokeConfigs"]) == 1 and "NextMarker" not in rest
    # the model's ranges and patterns: AWS's ValidationException
    for bad in (dict(MaximumRetryAttempts=3), dict(MaximumEventAgeInSeconds=59),
                dict(MaximumEventAgeInSeconds=21601),
                dict(DestinationConfig={"OnSuccess": {"Destination": "not-an-arn"}})):
        with expect_error("ValidationException", 400) as err:
            raw.put_function_event_invoke_config(FunctionName=name, **bad)
        assert err.message.startswith("1 validation error detected: Value ")
    missing_queue = f"arn:aws:sqs:{srv.region}:{srv.account_id}:nope-{uuid.uuid4().hex[:8]}"
    for bad in (dict(DestinationConfig={"OnSuccess": {"Destination": missing_queue}}),
                dict(DestinationConfig={"OnFailure": {"Destination": srv.function_arn(unique("nofn"))}}),
                dict(DestinationConfig={"OnFailure": {"Destination": f"arn:aws:sqs:{srv.region}:111122223333:x"}}),
                {}):
        with expect_error("InvalidParameterValueException", 400):
            raw.put_function_event_invoke_config(FunctionName=name, **bad)
    with expect_error("ResourceNotFoundException", 404):
        lam.put_function_event_invoke_config(FunctionName=name, Qualifier="nope", MaximumRetryAttempts=1)
    with expect_error("ResourceNotFoundException", 404):
        lam.update_function_event_invoke_config(FunctionName=fns(), MaximumRetryAttempts=1)
    lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="1")
    with expect_error("ResourceNotFoundException", 404):
        lam.delete_function_event_invoke_config(FunctionName=name, Qualifier="1")
    # deleting the function deletes its configs: a new function of that name starts clean
    lam.delete_function(FunctionName=name)
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                        Code={"ZipFile": ZIP})
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function_event_invoke_config(FunctionName=name)


def test_internal_queues_are_not_listed(sqs, lam, fns):
    name = fns()
    event(lam, name, {"x": 1})
    urls = sqs.list_queues().get("QueueUrls", [])
    assert not [u for u in urls if "lambdalet-async" in u], urls


# ------------------------------------------------------------------------------------------ crash

N_CRASH = 2000


def test_kill_9_mid_burst_loses_no_acknowledged_event(tmp_path_factory):
    """2,000 Event invokes from 32 threads; SIGKILL the server when a random share of them has been
    acknowledged; restart; every acknowledged request id must reach the destination queue."""
    import harness
    srv = harness.LambdaletServer(tmp_path_factory.mktemp("lambdalet-crash"), _server_args())
    srv.start()
    try:
        lam, sqs = srv.client(), srv.client("sqs")
        name = unique("crash")
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                            Role=destinations_role(srv.client("iam")), Code={"ZipFile": ZIP})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        qname = unique("crashdest")
        sqs.create_queue(QueueName=qname)
        q_arn = f"arn:aws:sqs:{srv.region}:{srv.account_id}:{qname}"
        lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": q_arn}})

        acked: set[str] = set()
        errors = [0]
        lock = threading.Lock()
        kill_at = random.randint(300, 1700)
        killed = threading.Event()
        fast = srv.client(config=Config(connect_timeout=5, read_timeout=30, max_pool_connections=64))
        counter = iter(range(N_CRASH))

        def kill_now():
            kids = harness.descendants(srv.proc.pid)
            os.kill(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(10)
            time.sleep(0.2)
            for pid in harness.still_alive(kids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        def sender():
            while not killed.is_set():
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    resp = fast.invoke(FunctionName=name, InvocationType="Event",
                                       Payload=json.dumps({"i": i}).encode())
                except Exception:
                    with lock:
                        errors[0] += 1
                    continue
                if resp["StatusCode"] == 202:
                    with lock:
                        acked.add(resp["ResponseMetadata"]["RequestId"])
                        if len(acked) >= kill_at and not killed.is_set():
                            killed.set()
                            kill_now()

        with ThreadPoolExecutor(32) as pool:
            for f in [pool.submit(sender) for _ in range(32)]:
                f.result()
        assert killed.is_set(), "the burst finished before the kill"
        before_kill = len(acked)
        # restart on the same data dir (new port)
        for f in (srv._stdout, srv._stderr):
            f.close()
        srv.start()
        sqs = srv.client("sqs")
        url = sqs.get_queue_url(QueueName=qname)["QueueUrl"]
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 240
        while not acked <= set(seen) and time.monotonic() < deadline:
            for m in collect(sqs, url, 10_000, timeout=3):
                rid = m["Json"]["requestContext"]["requestId"]
                seen[rid] = seen.get(rid, 0) + 1
        missing = acked - set(seen)
        dups = sum(c - 1 for c in seen.values())
        print(f"\ncrash test: killed after {before_kill} acknowledged (target {kill_at}); "
              f"{len(seen)} distinct delivered, {dups} duplicates, {errors[0]} client errors, {len(missing)} missing")
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}\n{srv.log_text()}"
        assert dups <= 200, f"{dups} duplicate deliveries: more than the in-flight window explains"
    finally:
        srv.stop()
