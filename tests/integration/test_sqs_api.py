"""The SQS API end to end: a real `lambdalet serve`, boto3's sqs client (awsJson1_0 over TLS, SigV4).

Needs the server to bind the "sqs" service (server/run.py):
    "sqs": ServiceBinding(JsonProtocol(load_service_model("sqs")), platform.queue_service)
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError


def _name(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def sqs(server):
    return server.client("sqs")


@pytest.fixture
def queue(sqs):
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    yield url
    try:
        sqs.delete_queue(QueueUrl=url)
    except ClientError:
        pass


def _receive(sqs, url, **kw):
    return sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
                               **kw).get("Messages", [])


def test_create_list_get_url_delete(sqs, server):
    name = _name("life")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"}, tags={"team": "a"})["QueueUrl"]
    assert url.endswith(f"/{server.account_id}/{name}")
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert sqs.list_queues(QueueNamePrefix=name)["QueueUrls"] == [url]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == f"arn:aws:sqs:{server.region}:{server.account_id}:{name}"
    assert attrs["VisibilityTimeout"] == "45" and attrs["ApproximateNumberOfMessages"] == "0"
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a"}
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "46"})
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as ei:
        sqs.get_queue_url(QueueName=name)
    assert ei.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=name)


def test_list_queues_pages(sqs):
    prefix = _name("page")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)]
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2})
    seen = [u for page in pages for u in page.get("QueueUrls", [])]
    assert seen == urls
    for u in urls:
        sqs.delete_queue(QueueUrl=u)


def test_send_receive_delete_round_trip(sqs, queue):
    attrs = {"kind": {"DataType": "String", "StringValue": "test"},
             "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"}}
    sent = sqs.send_message(QueueUrl=queue, MessageBody="hello sqs", MessageAttributes=attrs)
    [m] = _receive(sqs, queue, WaitTimeSeconds=2)
    assert m["MessageId"] == sent["MessageId"] and m["Body"] == "hello sqs"
    assert m["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert m["MessageAttributes"] == attrs and m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in m["Attributes"] and "ApproximateFirstReceiveTimestamp" in m["Attributes"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert _receive(sqs, queue) == []
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_visibility_timeout_expiry_redelivers(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="redeliver me")
    [m1] = _receive(sqs, queue, VisibilityTimeout=1)
    assert _receive(sqs, queue) == []
    [m2] = _receive(sqs, queue, WaitTimeSeconds=5)
    assert m2["MessageId"] == m1["MessageId"]
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"
    assert m2["ReceiptHandle"] != m1["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m2["ReceiptHandle"], VisibilityTimeout=0)
    [m3] = _receive(sqs, queue)
    assert m3["Attributes"]["ApproximateReceiveCount"] == "3"


def test_long_polling_returns_early_when_a_message_arrives(sqs, queue):
    timer = threading.Timer(1.0, lambda: sqs.send_message(QueueUrl=queue, MessageBody="arrived"))
    timer.start()
    t0 = time.monotonic()
    got = _receive(sqs, queue, WaitTimeSeconds=15)
    elapsed = time.monotonic() - t0
    timer.join()
    assert [m["Body"] for m in got] == ["arrived"]
    assert 0.8 < elapsed < 5, elapsed


def test_long_polling_waits_when_empty(sqs, queue):
    t0 = time.monotonic()
    assert _receive(sqs, queue, WaitTimeSeconds=2) == []
    assert time.monotonic() - t0 >= 1.9


def test_redrive_to_dead_letter_queue(sqs, server):
    dlq_url = sqs.create_queue(QueueName=_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src_url = sqs.create_queue(QueueName=_name("src"), Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    sent = sqs.send_message(QueueUrl=src_url, MessageBody="poison")
    for n in ("1", "2"):
        [m] = _receive(sqs, src_url, VisibilityTimeout=0)
        assert m["Attributes"]["ApproximateReceiveCount"] == n
    assert _receive(sqs, src_url) == []
    [d] = _receive(sqs, dlq_url, WaitTimeSeconds=2)
    assert d["MessageId"] == sent["MessageId"] and d["Body"] == "poison"
    assert d["Attributes"]["DeadLetterQueueSourceArn"].endswith(":" + src_url.rsplit("/", 1)[1])
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)["queueUrls"] == [src_url]
    with pytest.raises(ClientError) as ei:
        sqs.set_queue_attributes(QueueUrl=src_url, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn + "-missing", "maxReceiveCount": 2})})
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    for u in (src_url, dlq_url):
        sqs.delete_queue(QueueUrl=u)


def test_batch_operations_partial_failure(sqs, queue):
    res = sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "good1", "MessageBody": "one"},
        {"Id": "bad", "MessageBody": "nul \x00 char"},
        {"Id": "good2", "MessageBody": "two", "DelaySeconds": 0}])
    assert sorted(s["Id"] for s in res["Successful"]) == ["good1", "good2"]
    assert all({"MessageId", "MD5OfMessageBody"} <= set(s) for s in res["Successful"])
    [f] = res["Failed"]
    assert f["Id"] == "bad" and f["SenderFault"] is True and f["Code"] == "InvalidMessageContents" and f["Message"]
    got = _receive(sqs, queue, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    while len(got) < 2:
        more = _receive(sqs, queue, MaxNumberOfMessages=10, WaitTimeSeconds=2)
        assert more, got
        got += more
    res = sqs.delete_message_batch(QueueUrl=queue, Entries=[
        {"Id": "d1", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "d2", "ReceiptHandle": "not-a-receipt-handle"}])
    assert res["Successful"] == [{"Id": "d1"}]
    assert res["Failed"][0]["Id"] == "d2" and res["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    res = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "c1", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0}])
    assert res["Successful"] == [{"Id": "c1"}] and not res.get("Failed")
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=queue, Entries=[])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": f"e{i}", "ReceiptHandle": "r"} for i in range(11)])
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "x", "MessageBody": "a"}, {"Id": "x", "MessageBody": "b"}])
    with pytest.raises(sqs.exceptions.InvalidBatchEntryId):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "no spaces", "MessageBody": "a"}])


def test_purge(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": f"m{i}", "MessageBody": str(i)} for i in range(5)])
    sqs.purge_queue(QueueUrl=queue)
    assert _receive(sqs, queue, WaitTimeSeconds=1) == []
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        sqs.purge_queue(QueueUrl=queue)


def test_errors_and_validation(sqs, queue):
    with pytest.raises(ClientError) as ei:
        sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=11)
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as ei:
        sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=21)
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="forged")
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["NoSuchAttribute"])
    with pytest.raises(ClientError) as ei:
        sqs.send_message(QueueUrl=queue, MessageBody="x" * (262_144 + 1))
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as ei:        # a FIFO name without FifoQueue=true (test_sqs_fifo.py: FIFO)
        sqs.create_queue(QueueName="fifo-without-attribute.fifo")
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=queue + "-missing", MessageBody="x")


def test_message_bodies_are_not_stored_in_plain_text(sqs, queue, server):
    marker = "SQS-PLAINTEXT-MARKER-" + os.urandom(8).hex()
    sqs.send_message(QueueUrl=queue, MessageBody=f"body {marker}",
                     MessageAttributes={"a": {"DataType": "String", "StringValue": f"attr {marker}"}})
    hits = [p for p in server.data_dir.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
    assert hits == []
    [m] = _receive(sqs, queue, WaitTimeSeconds=2)
    assert marker in m["Body"]


def test_messages_survive_sigkill(lambdalet_server_factory):
    srv = lambdalet_server_factory()
    sqs = srv.client("sqs")
    url = sqs.create_queue(QueueName="durable")["QueueUrl"]
    sent = set()
    for i in range(5):
        res = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"m{j}", "MessageBody": f"msg {i}-{j}"}
                                                            for j in range(10)])
        sent |= {s["MessageId"] for s in res["Successful"]}
    for i in range(10):
        sent.add(sqs.send_message(QueueUrl=url, MessageBody=f"single {i}")["MessageId"])
    assert len(sent) == 60
    srv.stop(sig=signal.SIGKILL)
    assert srv.proc.returncode == -signal.SIGKILL
    srv.start()
    sqs = srv.client("sqs")
    url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    got = set()
    for _ in range(100):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not batch:
            break
        got |= {m["MessageId"] for m in batch}
    assert got == sent
