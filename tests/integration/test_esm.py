"""Event source mappings end to end: a real `lambdalet serve`, boto3's `lambda` and `sqs` clients only.

The function reports partial batch failures. Its rules make every mistake of the platform visible in
the dead-letter queue, so the test needs no side channel:
  n % 10 == 3   always fails            -> must end in the DLQ (maxReceiveCount 3)
  n % 10 == 7   fails on its 1st receive -> must be delivered again and then deleted
  otherwise     succeeds at once        -> must never be delivered again
A record delivered more often than its rule allows (a success not deleted, a partial failure taken
for a whole-batch failure) or an event not shaped like Lambda's SQS event is failed on purpose, and
so ends in the DLQ too. At the end the source queue must be empty and the DLQ must hold exactly the
n % 10 == 3 messages, each once.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from polling import eventually

from .e2e_support import WAIT, make_zip
from .sqs_support import drain_bodies, queue_counts
from .tenancy_support import mapping_role

IS_ROOT = os.geteuid() == 0
N_MESSAGES = 1000

HANDLER = r'''
import hashlib
import json

REQUIRED = ["messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
            "eventSource", "eventSourceARN", "awsRegion"]


def handler(event, context):
    failures = []
    for r in event["Records"]:
        if [k for k in REQUIRED if k not in r] or r["eventSource"] != "aws:sqs" \
                or r["md5OfBody"] != hashlib.md5(r["body"].encode()).hexdigest() \
                or r["messageAttributes"]["kind"]["stringValue"] != "test":
            raise ValueError("not an SQS event: " + json.dumps(r)[:500])
        n = json.loads(r["body"])["n"]
        count = int(r["attributes"]["ApproximateReceiveCount"])
        allowed = 2 if n % 10 == 7 else 1
        if n % 10 == 3 or (n % 10 == 7 and count == 1) or (n % 10 != 3 and count > allowed):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
'''


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client("lambda")


@pytest.fixture(scope="module")
def sqs(srv):
    return srv.client("sqs")


@pytest.fixture(scope="module")
def role(srv):
    """The execution role AWS asks of an SQS mapping (ReceiveMessage, DeleteMessage, GetQueueAttributes)."""
    return mapping_role(srv.client("iam"))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _function(lam, code: str, role: str, **kw) -> str:
    name = _name("esm")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                        Code={"ZipFile": make_zip({"app.py": code})}, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def test_esm_drains_1000_messages_exactly_with_partial_batch_failures(lam, sqs, srv, role):
    fn = _function(lam, HANDLER, role, Timeout=2)
    dlq_url = sqs.create_queue(QueueName=_name("esm-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=_name("esm-src"), Attributes={
        "VisibilityTimeout": "2",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for start in range(0, N_MESSAGES, 10):
        resp = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"n": n}),
             "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}}}
            for n in range(start, start + 10)])
        assert not resp.get("Failed")
    assert queue_counts(sqs, url)[0] == N_MESSAGES

    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    mapping = created["UUID"]
    try:
        assert created["State"] == "Creating"
        assert created["FunctionArn"] == srv.function_arn(fn) and created["EventSourceArn"] == arn
        got = lam.get_event_source_mapping(UUID=mapping)
        assert got["State"] == "Enabled" and got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert [m["UUID"] for m in lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]] \
            == [mapping]

        poison = N_MESSAGES // 10
        eventually(lambda: queue_counts(sqs, url) == (0, 0, 0) and queue_counts(sqs, dlq_url)[0] == poison, 240, 1)
        src, dlq = queue_counts(sqs, url), queue_counts(sqs, dlq_url)
        assert src == (0, 0, 0), f"source queue not drained: {src}"
        assert dlq[0] == poison, f"dead-letter queue holds {dlq}, expected {poison}"
    finally:
        out = lam.delete_event_source_mapping(UUID=mapping)
        assert out["State"] == "Deleting"

    time.sleep(3)           # nothing more arrives in the DLQ once the queue is empty
    bodies = drain_bodies(sqs, dlq_url)
    numbers = sorted(json.loads(b)["n"] for b in bodies)
    assert numbers == [n for n in range(N_MESSAGES) if n % 10 == 3]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            lam.get_event_source_mapping(UUID=mapping)
        except lam.exceptions.ResourceNotFoundException:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the deleted mapping is still there")
    lam.delete_function(FunctionName=fn)
    for u in (url, dlq_url):
        sqs.delete_queue(QueueUrl=u)


def test_esm_api_filters_and_update(lam, sqs, srv, role):
    fn = _function(lam, "def handler(event, context):\n    return None\n", role, Timeout=1)
    url = sqs.create_queue(QueueName=_name("esm-api"), Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=50)
    assert "Maximum batch window" in ei.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=_name("missing"))
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_event_source_mapping(EventSourceArn=arn + "-nope", FunctionName=fn)

    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=fn, Enabled=False, BatchSize=50, MaximumBatchingWindowInSeconds=1,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"keep": [True]}})}]},
        ScalingConfig={"MaximumConcurrency": 2})
    mapping = created["UUID"]
    try:
        with pytest.raises(lam.exceptions.ResourceConflictException):
            lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn)
        deadline = time.monotonic() + 10
        while lam.get_event_source_mapping(UUID=mapping)["State"] != "Disabled":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        got = lam.get_event_source_mapping(UUID=mapping)
        assert got["BatchSize"] == 50 and got["ScalingConfig"] == {"MaximumConcurrency": 2}
        assert got["FilterCriteria"]["Filters"][0]["Pattern"] == json.dumps({"body": {"keep": [True]}})
        assert got["LastModified"].year >= 2024

        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"keep": False}))
        sqs.send_message(QueueUrl=url, MessageBody="plain text")
        time.sleep(1.5)
        assert queue_counts(sqs, url)[0] == 2                 # disabled: nothing received
        updated = lam.update_event_source_mapping(UUID=mapping, Enabled=True)
        assert updated["State"] == "Enabling"
        deadline = time.monotonic() + 30
        while queue_counts(sqs, url) != (0, 0, 0):             # filtered out -> deleted without invoking
            assert time.monotonic() < deadline, queue_counts(sqs, url)
            time.sleep(0.5)
        assert lam.get_event_source_mapping(UUID=mapping)["State"] == "Enabled"
    finally:
        lam.delete_event_source_mapping(UUID=mapping)
    lam.delete_function(FunctionName=fn)
    sqs.delete_queue(QueueUrl=url)
