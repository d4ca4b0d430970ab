"""Recursive loop detection (Get/PutFunctionRecursionConfig), as AWS documents it ("Lambda recursive loop
detection"), through a real server with boto3:

- the setting: Terminate by default, Allow once put, only on a function (not a version or alias);
- a function that invokes itself asynchronously with the runtime's boto3 (which passes the invocation's
  trace header on, as AWS's SDKs do) is stopped after 16 invocations of the chain: the 17th event goes to
  the on-failure destination; set to Allow, the same chain runs to its own end;
- the same through a queue: a function fed by an event source mapping that sends to its own queue (SQS keeps
  the sender's trace header as AWSTraceHeader) is not invoked with the 17th message, which the queue's
  redrive policy moves to its dead-letter queue;
- a synchronous Invoke whose X-Amzn-Trace-Id says the chain already invoked the function 16 times is
  answered RecursiveInvocationException (400), unless the function is set to Allow.
"""
from __future__ import annotations

import hashlib
import json
import time

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, make_zip, unique
from .tenancy_support import BASIC_EXECUTION, LAMBDA_TRUST, SQS_QUEUE_EXECUTION, allow, make_role
from .functions_support import python_sdk

SELF_INVOKER = """\
import json, boto3

lam = boto3.client("lambda")

def handler(event, context):
    depth = event["depth"]
    if depth < event["stop"]:
        lam.invoke(FunctionName=context.function_name, InvocationType="Event",
                   Payload=json.dumps({"depth": depth + 1, "stop": event["stop"]}))
    return {"depth": depth}
"""


@pytest.fixture
def made(lam, srv):
    names: list[str] = []
    queues: list[str] = []
    yield names, queues
    for name in names:
        delete_quietly(lam, name)
    sqs = srv.client("sqs")
    for url in queues:
        try:
            sqs.delete_queue(QueueUrl=url)
        except ClientError:
            pass


def _create(lam, made, code="def handler(e, c):\n    return e\n", role=ROLE) -> str:
    name = unique("recur")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role, Timeout=30,
                        Code={"ZipFile": make_zip({"app.py": code})})
    made[0].append(name)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _queue(srv, made) -> tuple[str, str]:
    sqs = srv.client("sqs")
    url = sqs.create_queue(QueueName=unique("recur-q"))["QueueUrl"]
    made[1].append(url)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _drain(sqs, url: str, until, timeout: float = 60.0) -> list[dict]:
    """Every record received until `until(records)` holds and the queue stays quiet for 2 s."""
    out: list[dict] = []
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if got:
            quiet_since = None
        elif until(out):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 2:
                break
    return out


def test_the_setting(lam, made, srv):
    name = _create(lam, made)
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    assert lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=srv.function_arn(name))["RecursiveLoop"] == "Allow"
    with pytest.raises(ClientError) as info:
        lam.get_function_recursion_config(FunctionName=name + ":1")      # the model's UnqualifiedFunctionName
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as info:
        lam.put_function_recursion_config(FunctionName=unique("missing"), RecursiveLoop="Allow")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Sometimes")
    assert info.value.response["Error"]["Code"] == "ValidationException"


def _with_trace(client, header: str):
    def add(request, **_):
        request.headers["X-Amzn-Trace-Id"] = header
    client.meta.events.register("before-sign.lambda.Invoke", add)
    return client


def test_a_synchronous_invoke_past_16_is_refused(lam, made, srv):
    name = _create(lam, made)
    h = hashlib.sha256(srv.function_arn(name).encode()).hexdigest()[:8]
    root = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    fifteen = _with_trace(srv.client(), f"{root};Lineage={h}:15")
    assert fifteen.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200      # the 16th: runs
    sixteen = _with_trace(srv.client(), f"{root};Lineage={h}:16")
    with pytest.raises(ClientError) as info:
        sixteen.invoke(FunctionName=name, Payload=b"{}")                              # the 17th: stopped
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("RecursiveInvocationException", 400)
    lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    assert sixteen.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


@python_sdk
@pytest.mark.parametrize("setting", ["Terminate", "Allow"])
def test_an_async_loop_through_the_sdk(lam, made, srv, setting):
    iam, sqs = srv.client("iam"), srv.client("sqs")
    role = make_role(iam, LAMBDA_TRUST, allow(["lambda:InvokeFunction", "sqs:SendMessage"]), managed=(BASIC_EXECUTION,))
    name = _create(lam, made, SELF_INVOKER, role=role)
    ok_url, ok_arn = _queue(srv, made)
    fail_url, fail_arn = _queue(srv, made)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={
        "OnSuccess": {"Destination": ok_arn}, "OnFailure": {"Destination": fail_arn}})
    if setting == "Allow":
        lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    stop = 20
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"depth": 1, "stop": stop}).encode())
    if setting == "Terminate":
        failed = _drain(sqs, fail_url, lambda recs: len(recs) >= 1)
        assert [r["requestPayload"]["depth"] for r in failed] == [17], failed
        assert failed[0]["requestContext"]["condition"] == "RecursiveInvocationDetected"
        done = _drain(sqs, ok_url, lambda recs: len(recs) >= 16, timeout=10)
        assert sorted(r["responsePayload"]["depth"] for r in done) == list(range(1, 17))
    else:
        done = _drain(sqs, ok_url, lambda recs: len(recs) >= stop)
        assert sorted(r["responsePayload"]["depth"] for r in done) == list(range(1, stop + 1))
        assert not _drain(sqs, fail_url, lambda recs: True, timeout=3)


SQS_LOOPER = """\
import json, os, boto3

sqs = boto3.client("sqs")

def handler(event, context):
    for record in event["Records"]:
        depth = json.loads(record["body"])["depth"]
        sqs.send_message(QueueUrl=os.environ["SEEN"], MessageBody=json.dumps({"depth": depth}))
        sqs.send_message(QueueUrl=os.environ["LOOP"], MessageBody=json.dumps({"depth": depth + 1}))
"""


@python_sdk
def test_a_loop_through_a_queue_is_stopped(lam, made, srv):
    iam, sqs = srv.client("iam"), srv.client("sqs")
    dlq_url, dlq_arn = _queue(srv, made)
    seen_url, _ = _queue(srv, made)
    loop_url = sqs.create_queue(QueueName=unique("recur-loop"), Attributes={
        "VisibilityTimeout": "5",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})["QueueUrl"]
    made[1].append(loop_url)
    loop_arn = sqs.get_queue_attributes(QueueUrl=loop_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = make_role(iam, LAMBDA_TRUST, allow(["sqs:SendMessage"]), managed=(SQS_QUEUE_EXECUTION,))
    name = unique("recur")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role, Timeout=5,
                        Code={"ZipFile": make_zip({"app.py": SQS_LOOPER})},
                        Environment={"Variables": {"SEEN": seen_url, "LOOP": loop_url}})
    made[0].append(name)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    mapping = lam.create_event_source_mapping(EventSourceArn=loop_arn, FunctionName=name, BatchSize=1)["UUID"]
    try:
        sqs.send_message(QueueUrl=loop_url, MessageBody=json.dumps({"depth": 1}))
        dead = _drain(sqs, dlq_url, lambda recs: len(recs) >= 1, timeout=90)
        assert dead == [{"depth": 17}], dead
        seen = _drain(sqs, seen_url, lambda recs: len(recs) >= 16, timeout=10)
        assert sorted(r["depth"] for r in seen) == list(range(1, 17))
    finally:
        lam.delete_event_source_mapping(UUID=mapping)
