"""SQS FIFO queues end to end: a real `lambdalet serve`, boto3's `sqs`, `lambda` and `logs` clients only.

The event source mapping tests observe the order in which the function processed each group's
messages through its own log lines (read back with the Logs API): the function prints one line per
record with a nanosecond timestamp, and a group's next batch can only start after its previous one
was deleted, so sorting by that timestamp gives the processing order.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, make_zip
from .tenancy_support import mapping_role

IS_ROOT = os.geteuid() == 0


def _name(prefix: str = "fifo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sqs(srv):
    return srv.client("sqs")


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client("lambda")


@pytest.fixture(scope="module")
def reader_role(srv):
    """A mapping needs an execution role that may read the queue (AWS checks it at creation)."""
    return mapping_role(srv.client("iam"))


def _fifo(sqs, name: str | None = None, **attrs) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=(name or _name()) + ".fifo",
                           Attributes={"FifoQueue": "true", **{k: str(v) for k, v in attrs.items()}})["QueueUrl"]
    return url, _arn(sqs, url)


def _arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _receive(sqs, url: str, n: int = 10, **kw) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, MessageSystemAttributeNames=["All"],
                               **kw).get("Messages", [])


def _delete(sqs, url: str, messages: list[dict]) -> None:
    if messages:
        out = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(messages)])
        assert not out.get("Failed")


def _bodies(messages: list[dict]) -> list[str]:
    return [m["Body"] for m in messages]


def _code(ei) -> str:
    return ei.value.response["Error"]["Code"]


# ---------------------------------------------------------------- queues

def test_create_attributes_and_errors(sqs):
    base = _name()
    url = sqs.create_queue(QueueName=base + ".fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
    assert url.endswith(base + ".fifo")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "true"
    assert attrs["DeduplicationScope"] == "messageGroup" and attrs["FifoThroughputLimit"] == "perMessageGroupId"
    assert attrs["QueueArn"].endswith(base + ".fifo")
    assert sqs.get_queue_url(QueueName=base + ".fifo")["QueueUrl"] == url

    with pytest.raises(ClientError) as ei:                     # .fifo name, no FifoQueue attribute
        sqs.create_queue(QueueName=_name() + ".fifo")
    assert _code(ei) == "InvalidParameterValue"
    assert ei.value.response["Error"]["Message"].startswith("Can only include alphanumeric characters")
    with pytest.raises(ClientError) as ei:                     # FifoQueue=true, no .fifo suffix
        sqs.create_queue(QueueName=_name(), Attributes={"FifoQueue": "true"})
    assert _code(ei) == "InvalidParameterValue"
    assert "must end with .fifo suffix" in ei.value.response["Error"]["Message"]
    with pytest.raises(sqs.exceptions.InvalidAttributeName):   # FIFO attributes on a standard queue
        sqs.create_queue(QueueName=_name(), Attributes={"ContentBasedDeduplication": "true"})
    with pytest.raises(ClientError) as ei:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "false"})
    assert _code(ei) == "InvalidAttributeValue"

    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert _code(ei) == "MissingParameter"
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", DelaySeconds=3)
    assert _code(ei) == "InvalidParameterValue"
    plain, _ = _fifo(sqs)
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=plain, MessageBody="x", MessageGroupId="g")
    assert _code(ei) == "InvalidParameterValue" and "ContentBasedDeduplication" in ei.value.response["Error"]["Message"]
    for u in (url, plain):
        sqs.delete_queue(QueueUrl=u)


def test_redrive_to_a_fifo_dlq_keeps_the_group(sqs):
    std_dlq = sqs.create_queue(QueueName=_name("std-dlq"))["QueueUrl"]
    with pytest.raises(ClientError) as ei:
        _fifo(sqs, RedrivePolicy=json.dumps({"deadLetterTargetArn": _arn(sqs, std_dlq), "maxReceiveCount": 1}))
    assert _code(ei) == "InvalidParameterValue" and "same type" in ei.value.response["Error"]["Message"]
    dlq, dlq_arn = _fifo(sqs, _name("dlq"))
    src, _ = _fifo(sqs, VisibilityTimeout=1,
                   RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}))
    sqs.send_message(QueueUrl=src, MessageBody="poison", MessageGroupId="G", MessageDeduplicationId="p")
    sqs.send_message(QueueUrl=src, MessageBody="next", MessageGroupId="G", MessageDeduplicationId="n")
    assert _bodies(_receive(sqs, src, 1)) == ["poison"]
    time.sleep(1.3)
    got = _receive(sqs, src)
    assert _bodies(got) == ["next"]                          # poison moved to the DLQ; the group goes on
    [moved] = _receive(sqs, dlq)
    assert moved["Body"] == "poison" and moved["Attributes"]["MessageGroupId"] == "G"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == _arn(sqs, src)
    for u in (src, dlq, std_dlq):
        sqs.delete_queue(QueueUrl=u)


# ---------------------------------------------------------------- sending: deduplication

def test_deduplication_explicit_and_content_based(sqs):
    url, _ = _fifo(sqs)
    first = sqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g", MessageDeduplicationId="d1")
    assert len(first["SequenceNumber"]) >= 20 and first["SequenceNumber"].isdigit()
    dup = sqs.send_message(QueueUrl=url, MessageBody="b", MessageGroupId="g", MessageDeduplicationId="d1")
    assert dup["MessageId"] == first["MessageId"]
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "MessageBody": "c", "MessageGroupId": "g", "MessageDeduplicationId": "d2"},
        {"Id": "y", "MessageBody": "c", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}])
    by_id = {s["Id"]: s for s in batch["Successful"]}
    assert by_id["y"]["MessageId"] == first["MessageId"]
    assert int(by_id["x"]["SequenceNumber"]) > int(first["SequenceNumber"])
    assert _bodies(_receive(sqs, url)) == ["a", "c"]

    cbd, _ = _fifo(sqs, ContentBasedDeduplication="true")
    one = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="g")
    two = sqs.send_message(QueueUrl=cbd, MessageBody="same", MessageGroupId="h")
    assert one["MessageId"] == two["MessageId"]
    [m] = _receive(sqs, cbd)
    assert m["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same").hexdigest()
    for u in (url, cbd):
        sqs.delete_queue(QueueUrl=u)


def test_deduplication_window_survives_a_restart(lambdalet_server_factory):
    srv = lambdalet_server_factory()
    sqs = srv.client("sqs")
    url, _ = _fifo(sqs, "restart")
    first = sqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g", MessageDeduplicationId="d")
    srv.restart()
    sqs = srv.client("sqs")
    again = sqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g", MessageDeduplicationId="d")
    assert again["MessageId"] == first["MessageId"]
    assert again["SequenceNumber"] == first["SequenceNumber"]
    assert _bodies(_receive(sqs, url)) == ["once"]
    later = sqs.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g", MessageDeduplicationId="d2")
    assert int(later["SequenceNumber"]) > int(first["SequenceNumber"])   # the counter survived too


# ---------------------------------------------------------------- receiving: order and group locks

def test_group_order_lock_and_two_groups_interleaved(sqs):
    url, _ = _fifo(sqs, VisibilityTimeout=30)
    for i in range(6):                               # sent interleaved: a0 b0 a1 b1 ...
        for g in "ab":
            sqs.send_message(QueueUrl=url, MessageBody=f"{g}{i}", MessageGroupId=g, MessageDeduplicationId=f"{g}{i}")
    first = _receive(sqs, url, 4)
    assert _bodies(first) == ["a0", "a1", "a2", "a3"]           # one group first, in order
    assert [m["Attributes"]["MessageGroupId"] for m in first] == ["a"] * 4
    seqs = [int(m["Attributes"]["SequenceNumber"]) for m in first]
    assert seqs == sorted(seqs)
    second = _receive(sqs, url, 10)
    assert _bodies(second) == [f"b{i}" for i in range(6)]       # a is locked: a4, a5 wait
    assert _receive(sqs, url, 10) == []
    _delete(sqs, url, first[:3])
    assert _receive(sqs, url, 10) == []                         # a3 still in flight
    _delete(sqs, url, first[3:])
    assert _bodies(_receive(sqs, url, 10)) == ["a4", "a5"]
    sqs.delete_queue(QueueUrl=url)


def test_visibility_expiry_releases_the_group(sqs):
    url, _ = _fifo(sqs, VisibilityTimeout=1)
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"m{i}")
    assert _bodies(_receive(sqs, url, 1)) == ["m0"]
    assert _receive(sqs, url) == []
    again = _receive(sqs, url, 10, WaitTimeSeconds=3)            # long poll: wakes when m0 is visible again
    assert _bodies(again) == ["m0", "m1", "m2"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2", "1", "1"]
    assert _receive(sqs, url, 10, ReceiveRequestAttemptId="attempt-1") == []
    sqs.delete_queue(QueueUrl=url)


def test_a_delete_wakes_a_long_poll_on_the_group(sqs):
    url, _ = _fifo(sqs, VisibilityTimeout=60)
    for i in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"m{i}")
    first = _receive(sqs, url, 1)
    import threading
    got: list = []
    t = threading.Thread(target=lambda: got.extend(_receive(sqs, url, 1, WaitTimeSeconds=10)))
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    _delete(sqs, url, first)
    t.join(12)
    assert _bodies(got) == ["m1"] and time.monotonic() - started < 5
    sqs.delete_queue(QueueUrl=url)


# ---------------------------------------------------------------- Lambda: event source mappings, destinations

ORDER_HANDLER = r'''
import json
import time


def handler(event, context):
    failures = []
    for r in event["Records"]:
        a = r["attributes"]
        body = json.loads(r["body"])
        fail = body["n"] == FAIL_AT and a["ApproximateReceiveCount"] == "1"
        print("FIFOREC " + json.dumps({"g": a["MessageGroupId"], "n": body["n"], "t": time.time_ns(),
                                       "rc": int(a["ApproximateReceiveCount"]), "seq": a["SequenceNumber"],
                                       "ok": not fail}))
        if fail:
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
'''


def _function(lam, role: str, fail_at: int = -1) -> str:
    name = _name("fifo-fn")
    code = ORDER_HANDLER.replace("FAIL_AT", str(fail_at))
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role, Timeout=1,
                        Code={"ZipFile": make_zip({"app.py": code})})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def _send_groups(sqs, url: str, groups: list[str], per_group: int) -> None:
    entries = [(g, n) for n in range(per_group) for g in groups]       # interleaved across groups
    for start in range(0, len(entries), 10):
        out = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"g": g, "n": n}), "MessageGroupId": g,
             "MessageDeduplicationId": f"{g}-{n}"} for i, (g, n) in enumerate(entries[start:start + 10])])
        assert not out.get("Failed")


def _records(srv, fn: str, expect: int, timeout: float = 120) -> list[dict]:
    logs = srv.client("logs")
    deadline = time.monotonic() + timeout
    records: list[dict] = []
    while time.monotonic() < deadline:
        try:
            events = [e for page in logs.get_paginator("filter_log_events").paginate(
                logGroupName=f"/aws/lambda/{fn}", filterPattern="FIFOREC") for e in page["events"]]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        records = [json.loads(e["message"].split("FIFOREC ", 1)[1]) for e in events if "FIFOREC " in e["message"]]
        if len(records) >= expect:
            break
        time.sleep(1)
    return sorted(records, key=lambda r: r["t"])


def _wait_empty(sqs, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if a["ApproximateNumberOfMessages"] == a["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
        time.sleep(0.5)
    pytest.fail(f"queue not drained: {a}")


def test_esm_processes_each_group_in_order(srv, lam, sqs, reader_role):
    groups, per_group = ["g1", "g2", "g3", "g4"], 50
    fn = _function(lam, reader_role)
    url, arn = _fifo(sqs, VisibilityTimeout=5)
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                        MaximumBatchingWindowInSeconds=1)
    assert ei.value.response["Error"]["Message"] == "Batching window is not supported for FIFO queues"
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=11)
    _send_groups(sqs, url, groups, per_group)
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]
    try:
        _wait_empty(sqs, url)
        records = _records(srv, fn, len(groups) * per_group)
    finally:
        lam.delete_event_source_mapping(UUID=mapping)
    assert len(records) == len(groups) * per_group
    for g in groups:
        mine = [r for r in records if r["g"] == g]
        assert [r["n"] for r in mine] == list(range(per_group)), g
        assert [int(r["seq"]) for r in mine] == sorted(int(r["seq"]) for r in mine)
    lam.delete_function(FunctionName=fn)
    sqs.delete_queue(QueueUrl=url)


def test_esm_partial_batch_failure_keeps_order(srv, lam, sqs, reader_role):
    """The function fails n == 7 on its first receive and reports only that item: the records after it
    in its group (8, 9) must not be deleted, but come back after 7, in order."""
    groups, per_group = ["x", "y"], 20
    fn = _function(lam, reader_role, fail_at=7)
    url, arn = _fifo(sqs, VisibilityTimeout=1)
    _send_groups(sqs, url, groups, per_group)
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]
    try:
        _wait_empty(sqs, url)
        records = _records(srv, fn, len(groups) * (per_group + 3))
    finally:
        lam.delete_event_source_mapping(UUID=mapping)
    for g in groups:
        mine = [r for r in records if r["g"] == g]
        last_success: dict[int, int] = {}
        for i, r in enumerate(mine):
            if r["ok"]:
                last_success[r["n"]] = i
        order = sorted(last_success, key=last_success.get)
        assert order == list(range(per_group)), (g, [(r["n"], r["rc"], r["ok"]) for r in mine])
        assert {r["n"] for r in mine if r["rc"] == 2} == {7, 8, 9}, g     # 8 and 9 were handed back too
    lam.delete_function(FunctionName=fn)
    sqs.delete_queue(QueueUrl=url)


def test_fifo_queues_are_not_async_destinations_or_dlqs(lam, sqs):
    url, arn = _fifo(sqs)
    fn = _name("fifo-dest")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(FunctionName=fn, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})},
                            DeadLetterConfig={"TargetArn": arn})
    lam.create_function(FunctionName=fn, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as ei:
        lam.put_function_event_invoke_config(FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": arn}})
    assert "FIFO" in ei.value.response["Error"]["Message"]
    lam.delete_function(FunctionName=fn)
    sqs.delete_queue(QueueUrl=url)
