"""QueueService against a real (temporary, migrated) SQLite database and a real keyring."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest
import sqlalchemy as sa

from lambdalet.crypto import DecryptionError
from lambdalet.queues import errors as E
from lambdalet.queues.service import md5_of_attributes
from lambdalet.queues.storage import durable_write
from lambdalet.queues.tables import sqs_messages

from .queues_support import ACCOUNT, make_ctx, new_queue, receive


# ---------------------------------------------------------------- queues

def test_create_get_list_delete(svc, ctx):
    url = new_queue(svc, ctx, "alpha")
    assert url == f"https://127.0.0.1:9000/{ACCOUNT}/alpha"
    assert new_queue(svc, ctx, "alpha") == url                       # same attributes: idempotent
    assert svc.get_queue_url(ctx, {"QueueName": "alpha"})["QueueUrl"] == url
    new_queue(svc, ctx, "beta")
    assert svc.list_queues(ctx, {})["QueueUrls"] == [url, url.replace("alpha", "beta")]
    assert svc.list_queues(ctx, {"QueueNamePrefix": "be"})["QueueUrls"] == [url.replace("alpha", "beta")]
    svc.delete_queue(ctx, {"QueueUrl": url})
    with pytest.raises(E.QueueDoesNotExist) as ei:
        svc.get_queue_url(ctx, {"QueueName": "alpha"})
    assert ei.value.query_code == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(E.QueueDoesNotExist):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x"})


def test_queues_belong_to_an_account_and_region(svc, ctx):
    url = new_queue(svc, ctx, "mine")
    other = make_ctx("111111111111")
    assert svc.list_queues(other, {}) == {}
    with pytest.raises(E.QueueDoesNotExist):
        svc.send_message(other, {"QueueUrl": url, "MessageBody": "x"})
    with pytest.raises(E.QueueDoesNotExist):
        svc.get_queue_url(make_ctx(region="eu-west-1"), {"QueueName": "mine"})
    with pytest.raises(E.QueueDoesNotExist):
        svc.get_queue_url(ctx, {"QueueName": "mine", "QueueOwnerAWSAccountId": "111111111111"})


def test_list_queues_paging(svc, ctx):
    for i in range(7):
        new_queue(svc, ctx, f"p{i}")
    seen, token = [], None
    while True:
        page = svc.list_queues(ctx, {"MaxResults": 3, **({"NextToken": token} if token else {})})
        seen += page["QueueUrls"]
        token = page.get("NextToken")
        if not token:
            break
    assert [u.rsplit("/", 1)[1] for u in seen] == [f"p{i}" for i in range(7)]
    with pytest.raises(E.InvalidParameterValue):
        svc.list_queues(ctx, {"NextToken": "forged"})
    with pytest.raises(E.InvalidParameterValue):
        svc.list_queues(ctx, {"MaxResults": 0})


def test_queue_name_and_attribute_validation(svc, ctx):
    for bad in ("", "a" * 81, "has space", "dot.name"):
        with pytest.raises(E.InvalidParameterValue):
            svc.create_queue(ctx, {"QueueName": bad})
    # a .fifo name without FifoQueue=true, and FifoQueue=true without .fifo: SQS's two answers
    with pytest.raises(E.InvalidParameterValue, match="^Can only include alphanumeric"):
        svc.create_queue(ctx, {"QueueName": "q.fifo"})
    with pytest.raises(E.InvalidParameterValue, match="^The name of a FIFO queue"):
        svc.create_queue(ctx, {"QueueName": "q", "Attributes": {"FifoQueue": "true"}})
    with pytest.raises(E.InvalidAttributeName):
        svc.create_queue(ctx, {"QueueName": "q", "Attributes": {"ContentBasedDeduplication": "true"}})
    with pytest.raises(E.InvalidAttributeName):
        svc.create_queue(ctx, {"QueueName": "q", "Attributes": {"Bogus": "1"}})
    with pytest.raises(E.InvalidAttributeName):
        svc.create_queue(ctx, {"QueueName": "q", "Attributes": {"QueueArn": "x"}})
    for name, value in [("VisibilityTimeout", "43201"), ("DelaySeconds", "-1"), ("MaximumMessageSize", "1023"),
                        ("MessageRetentionPeriod", "59"), ("ReceiveMessageWaitTimeSeconds", "21"),
                        ("VisibilityTimeout", "abc")]:
        with pytest.raises(E.InvalidAttributeValue):
            svc.create_queue(ctx, {"QueueName": "q", "Attributes": {name: value}})


def test_create_existing_with_different_attributes(svc, ctx):
    url = new_queue(svc, ctx, "same", VisibilityTimeout=30)
    assert new_queue(svc, ctx, "same") == url
    assert new_queue(svc, ctx, "same", VisibilityTimeout=30) == url
    with pytest.raises(E.QueueNameExists) as ei:
        new_queue(svc, ctx, "same", VisibilityTimeout=31)
    assert ei.value.query_code == "QueueAlreadyExists"


def test_get_and_set_attributes(svc, ctx):
    url = new_queue(svc, ctx, "attrs", DelaySeconds=5)
    got = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]
    assert got["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:attrs"
    assert got["DelaySeconds"] == "5" and got["VisibilityTimeout"] == "30"
    assert got["ApproximateNumberOfMessages"] == "0"
    assert int(got["CreatedTimestamp"]) <= time.time()
    svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"VisibilityTimeout": "60"}})
    got = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["VisibilityTimeout"]})
    assert got == {"Attributes": {"VisibilityTimeout": "60"}}
    assert svc.get_queue_attributes(ctx, {"QueueUrl": url}) == {}
    with pytest.raises(E.InvalidAttributeName):
        svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["Nope"]})
    with pytest.raises(E.InvalidAttributeName):
        svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"ApproximateNumberOfMessages": "1"}})


def test_tags(svc, ctx):
    url = svc.create_queue(ctx, {"QueueName": "tagged", "tags": {"a": "1"}})["QueueUrl"]
    svc.tag_queue(ctx, {"QueueUrl": url, "Tags": {"b": "2"}})
    assert svc.list_queue_tags(ctx, {"QueueUrl": url}) == {"Tags": {"a": "1", "b": "2"}}
    svc.untag_queue(ctx, {"QueueUrl": url, "TagKeys": ["a", "b"]})
    assert svc.list_queue_tags(ctx, {"QueueUrl": url}) == {}


# ---------------------------------------------------------------- messages

def test_send_receive_delete_round_trip(svc, ctx):
    url = new_queue(svc, ctx)
    attrs = {"SellerName": {"DataType": "String", "StringValue": "Example Store"},
             "bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}
    sent = svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "héllo", "MessageAttributes": attrs})
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    [m] = receive(svc, ctx, url)
    assert m["Body"] == "héllo" and m["MessageId"] == sent["MessageId"]
    assert m["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert m["MessageAttributes"] == attrs and m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    a = m["Attributes"]
    assert a["ApproximateReceiveCount"] == "1" and a["SenderId"] == "AIDATEST"
    assert abs(int(a["SentTimestamp"]) / 1000 - time.time()) < 5
    assert int(a["ApproximateFirstReceiveTimestamp"]) >= int(a["SentTimestamp"])
    assert receive(svc, ctx, url) == []                                   # in flight
    counts = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"
    svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})   # again: no error
    counts = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_md5_of_attributes_matches_published_values():
    assert md5_of_attributes({"SellerName": {"DataType": "String", "StringValue": "Example Store"}}) == \
        "cd28f3b68aeee4b2eac9c66f2f694b58"
    assert md5_of_attributes({"timestamp": {"DataType": "Number", "StringValue": "1493147359900"}}) == \
        "235c5c510d26fb653d073faed50ae77c"


def test_attribute_selection(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x", "MessageAttributes": {
        "foo.a": {"DataType": "String", "StringValue": "1"}, "bar": {"DataType": "Number", "StringValue": "2"}}})
    [m] = svc.receive_message(ctx, {"QueueUrl": url, "MessageAttributeNames": ["foo.*"],
                                    "AttributeNames": ["ApproximateReceiveCount"]})["Messages"]
    assert set(m["MessageAttributes"]) == {"foo.a"}
    assert m["Attributes"] == {"ApproximateReceiveCount": "1"}
    svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0})
    [m] = svc.receive_message(ctx, {"QueueUrl": url})["Messages"]
    assert "MessageAttributes" not in m and "Attributes" not in m


def test_visibility_timeout_expiry_redelivers(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "again"})
    [m1] = receive(svc, ctx, url, VisibilityTimeout=1)
    assert receive(svc, ctx, url) == []
    time.sleep(1.1)
    [m2] = receive(svc, ctx, url, VisibilityTimeout=30)
    assert m2["MessageId"] == m1["MessageId"] and m2["Attributes"]["ApproximateReceiveCount"] == "2"
    assert m2["Attributes"]["ApproximateFirstReceiveTimestamp"] == m1["Attributes"]["ApproximateFirstReceiveTimestamp"]
    assert m2["ReceiptHandle"] != m1["ReceiptHandle"]
    # The stale handle no longer deletes (it belongs to an earlier delivery) and cannot change visibility.
    svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": m1["ReceiptHandle"]})
    with pytest.raises(E.MessageNotInflight):
        svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": m1["ReceiptHandle"],
                                            "VisibilityTimeout": 0})
    counts = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessagesNotVisible"]})
    assert counts["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": m2["ReceiptHandle"]})
    assert svc._counts(svc._get(ACCOUNT, "us-east-1", "q"))["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_change_visibility_and_errors(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "v"})
    [m] = receive(svc, ctx, url, VisibilityTimeout=60)
    svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0})
    [m2] = receive(svc, ctx, url)
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"
    with pytest.raises(E.InvalidParameterValue):
        svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": m2["ReceiptHandle"],
                                            "VisibilityTimeout": 43201})
    with pytest.raises(E.ReceiptHandleIsInvalid):
        svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": "garbage"})
    forged = m2["ReceiptHandle"][:-4] + ("AAAA" if not m2["ReceiptHandle"].endswith("AAAA") else "BBBB")
    with pytest.raises(E.ReceiptHandleIsInvalid):
        svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": forged})
    other = new_queue(svc, ctx, "other")
    with pytest.raises(E.ReceiptHandleIsInvalid):          # a handle is bound to its queue
        svc.delete_message(ctx, {"QueueUrl": other, "ReceiptHandle": m2["ReceiptHandle"]})


def test_receive_parameter_validation(svc, ctx):
    url = new_queue(svc, ctx)
    for kw in ({"MaxNumberOfMessages": 0}, {"MaxNumberOfMessages": 11}, {"WaitTimeSeconds": 21},
               {"WaitTimeSeconds": -1}, {"VisibilityTimeout": 43201}):
        with pytest.raises(E.InvalidParameterValue):
            svc.receive_message(ctx, {"QueueUrl": url, **kw})


def test_max_number_of_messages(svc, ctx):
    url = new_queue(svc, ctx)
    for i in range(15):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": f"m{i}"})
    got = receive(svc, ctx, url, MaxNumberOfMessages=10)
    assert len(got) == 10 and len({m["MessageId"] for m in got}) == 10
    assert len(receive(svc, ctx, url, MaxNumberOfMessages=10)) == 5


def test_visibility_zero_does_not_duplicate_within_one_receive(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "once"})
    got = receive(svc, ctx, url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert len(got) == 1


def test_message_validation(svc, ctx):
    url = new_queue(svc, ctx, MaximumMessageSize=1024)
    with pytest.raises(E.InvalidMessageContents):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "bad\x00char"})
    with pytest.raises(E.MissingParameter):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": ""})
    with pytest.raises(E.InvalidParameterValue, match="shorter than 1024"):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x" * 1025})
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x" * 1024})
    with pytest.raises(E.InvalidParameterValue):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 901})
    for attrs in ({"AWS.x": {"DataType": "String", "StringValue": "v"}},
                  {"n": {"DataType": "Number", "StringValue": "abc"}},
                  {"n": {"DataType": "Float", "StringValue": "1"}},
                  {"n": {"DataType": "String"}},
                  {"n": {"DataType": "Binary", "StringValue": "x"}},
                  {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}):
        with pytest.raises(E.InvalidParameterValue):
            svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x", "MessageAttributes": attrs})
    with pytest.raises(E.InvalidParameterValue):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x", "MessageDeduplicationId": "d"})


def test_full_size_message_and_limit(svc, ctx):
    url = new_queue(svc, ctx)
    body = "é" * (262_144 // 2)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": body})
    with pytest.raises(E.InvalidParameterValue):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": body + "x"})
    [m] = receive(svc, ctx, url)
    assert m["Body"] == body


def test_delay_seconds(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "later", "DelaySeconds": 1})
    counts = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessagesDelayed"]})
    assert counts["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert receive(svc, ctx, url) == []
    t0 = time.monotonic()
    got = receive(svc, ctx, url, WaitTimeSeconds=5)
    assert got and got[0]["Body"] == "later" and time.monotonic() - t0 < 2.5


def test_long_poll_returns_early_when_a_message_arrives(svc, ctx):
    url = new_queue(svc, ctx)
    threading.Timer(0.5, lambda: svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "wake"})).start()
    t0 = time.monotonic()
    got = receive(svc, ctx, url, WaitTimeSeconds=10)
    elapsed = time.monotonic() - t0
    assert [m["Body"] for m in got] == ["wake"]
    assert 0.4 < elapsed < 2.0


def test_long_poll_waits_full_time_when_empty(svc, ctx):
    url = new_queue(svc, ctx, ReceiveMessageWaitTimeSeconds=1)
    t0 = time.monotonic()
    assert receive(svc, ctx, url) == []            # the queue's default wait applies
    assert 0.9 < time.monotonic() - t0 < 2.5


def test_long_poll_does_not_burn_cpu(svc, ctx):
    url = new_queue(svc, ctx)
    # The long poll runs (and waits) in this thread: its CPU is this thread's, whatever threads other
    # tests of this process left behind are doing meanwhile (process_time counted those too).
    c0 = time.thread_time()
    receive(svc, ctx, url, WaitTimeSeconds=2)
    assert time.thread_time() - c0 < 0.3


def test_redrive_to_dead_letter_queue(svc, ctx):
    dlq = new_queue(svc, ctx, "dlq")
    dlq_arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq"
    src = new_queue(svc, ctx, "src")
    svc.set_queue_attributes(ctx, {"QueueUrl": src, "Attributes": {
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})}})
    rp = json.loads(svc.get_queue_attributes(ctx, {"QueueUrl": src, "AttributeNames": ["RedrivePolicy"]})
                    ["Attributes"]["RedrivePolicy"])
    assert rp == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    sent = svc.send_message(ctx, {"QueueUrl": src, "MessageBody": "poison",
                                  "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}})
    for i in (1, 2):
        [m] = receive(svc, ctx, src, VisibilityTimeout=0)
        assert m["Attributes"]["ApproximateReceiveCount"] == str(i)
    assert receive(svc, ctx, src) == []           # third receive: moved instead of delivered
    [d] = receive(svc, ctx, dlq)
    assert d["MessageId"] == sent["MessageId"] and d["Body"] == "poison"
    assert d["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    assert d["Attributes"]["DeadLetterQueueSourceArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:src"
    assert svc.list_dead_letter_source_queues(ctx, {"QueueUrl": dlq})["queueUrls"] == [src]


def test_redrive_policy_validation(svc, ctx):
    url = new_queue(svc, ctx, "src")
    arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}"
    for policy in ("not json", json.dumps({"deadLetterTargetArn": f"{arn}:missing", "maxReceiveCount": 3}),
                   json.dumps({"deadLetterTargetArn": f"{arn}:src", "maxReceiveCount": 0}),
                   json.dumps({"deadLetterTargetArn": f"{arn}:src", "maxReceiveCount": 3}),
                   json.dumps({"maxReceiveCount": 3})):
        with pytest.raises(E.InvalidParameterValue):
            svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"RedrivePolicy": policy}})
    new_queue(svc, ctx, "d")
    svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": f"{arn}:d", "maxReceiveCount": 3})}})
    svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"RedrivePolicy": ""}})
    got = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]
    assert "RedrivePolicy" not in got


def test_batches(svc, ctx):
    url = new_queue(svc, ctx)
    res = svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "bad\x01"},
        {"Id": "c", "MessageBody": "three", "DelaySeconds": 1000}, {"Id": "d", "MessageBody": "four"}]})
    assert [s["Id"] for s in res["Successful"]] == ["a", "d"]
    failed = {f["Id"]: f for f in res["Failed"]}
    assert failed["b"]["Code"] == "InvalidMessageContents" and failed["b"]["SenderFault"] is True
    assert failed["c"]["Code"] == "InvalidParameterValue"
    got = receive(svc, ctx, url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in got) == ["four", "one"]
    res = svc.delete_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"]}, {"Id": "y", "ReceiptHandle": "nope"}]})
    assert res["Successful"] == [{"Id": "x"}]
    assert res["Failed"][0]["Id"] == "y" and res["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    res = svc.change_message_visibility_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": "z", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "w", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0}]})
    assert res["Successful"] == [{"Id": "z"}]
    assert res["Failed"][0]["Id"] == "w"          # deleted: not available any more

    with pytest.raises(E.EmptyBatchRequest):
        svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": []})
    with pytest.raises(E.TooManyEntriesInBatchRequest):
        svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
            {"Id": f"i{i}", "MessageBody": "x"} for i in range(11)]})
    with pytest.raises(E.BatchEntryIdsNotDistinct):
        svc.delete_message_batch(ctx, {"QueueUrl": url, "Entries": [
            {"Id": "a", "ReceiptHandle": "r"}, {"Id": "a", "ReceiptHandle": "r"}]})
    with pytest.raises(E.InvalidBatchEntryId):
        svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [{"Id": "bad id!", "MessageBody": "x"}]})
    with pytest.raises(E.BatchRequestTooLong):
        svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
            {"Id": f"i{i}", "MessageBody": "x" * 30_000} for i in range(10)]})


def test_purge(svc, ctx):
    url = new_queue(svc, ctx)
    for i in range(3):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": str(i)})
    svc.purge_queue(ctx, {"QueueUrl": url})
    assert receive(svc, ctx, url) == []
    with pytest.raises(E.PurgeQueueInProgress):
        svc.purge_queue(ctx, {"QueueUrl": url})
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "after"})
    assert [m["Body"] for m in receive(svc, ctx, url)] == ["after"]


def test_retention_expires_messages(svc, ctx):
    url = new_queue(svc, ctx, MessageRetentionPeriod=60)
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "old"})
    with svc.db.begin() as conn:
        conn.execute(sa.update(sqs_messages).values(sent_at=time.time() - 61))
    assert receive(svc, ctx, url) == []
    with svc.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sqs_messages)).scalar() == 0


# ---------------------------------------------------------------- at rest

def test_bodies_and_attributes_are_sealed_at_rest(queue_env, ctx):
    svc, data = queue_env
    url = new_queue(svc, ctx)
    marker = "MARKER-" + os.urandom(8).hex()
    svc.send_message(ctx, {"QueueUrl": url, "MessageBody": f"secret {marker}", "MessageAttributes": {
        "attr": {"DataType": "String", "StringValue": marker + "-attr"}}})
    svc.enqueue(ACCOUNT, "q", f"internal {marker}".encode())
    for p in data.rglob("*"):
        if p.is_file():
            assert marker.encode() not in p.read_bytes(), p
    with svc.db.read() as conn:
        row = conn.execute(sa.select(sqs_messages)).first()
    # The envelope is bound to its queue and message: moving it to another row does not decrypt.
    with pytest.raises(DecryptionError):
        svc.keyring.open(row.body_sealed, b"lambdalet/sqs/v1|other|" + row.id.encode() + b"|body")


def test_durable_write_uses_synchronous_full_then_restores(svc):
    with durable_write(svc.db) as conn:
        raw = conn.connection.driver_connection
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
    with svc.db.engine.connect() as conn:
        levels = {conn.connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0]}
    assert levels == {1}                                                  # NORMAL again


# ---------------------------------------------------------------- internal API

def test_internal_enqueue_claim_ack_nack(svc, ctx):
    arn = svc.ensure_queue(ACCOUNT, "internal-async", {"VisibilityTimeout": "60"})
    assert arn == svc.ensure_queue(ACCOUNT, "internal-async")
    mid = svc.enqueue(ACCOUNT, "internal-async", b"\x00\xffpayload",
                      {"fn": {"DataType": "String", "StringValue": "f1"}})
    [m] = svc.claim(arn, 10, 30)
    assert m.message_id == mid and m.body == b"\x00\xffpayload" and m.receive_count == 1
    assert m.attributes == {"fn": {"DataType": "String", "StringValue": "f1"}}
    assert svc.claim(arn, 10, 30) == []
    svc.nack(m.receipt, 0)
    [m2] = svc.claim(arn, 10, 30)
    assert m2.receive_count == 2
    assert svc.ack(m.receipt) is False           # stale receipt: not deleted
    assert svc.ack(m2.receipt) is True
    assert svc.claim(arn, 10, 30) == []
    # nack with a delay: hidden until then
    svc.enqueue(ACCOUNT, "internal-async", b"retry")
    [m3] = svc.claim(arn, 1, 30)
    svc.nack(m3.receipt, 1)
    assert svc.claim(arn, 1, 30) == []
    assert [x.body for x in svc.claim(arn, 1, 30, wait_s=3)] == [b"retry"]
    with pytest.raises(E.ReceiptHandleIsInvalid):
        svc.ack("forged")


def test_internal_enqueue_batch_and_claim_are_not_bound_by_the_api_batch_of_10(svc, ctx):
    arn = svc.ensure_queue(ACCOUNT, "internal-many", {"MaximumMessageSize": "1024"})
    results = svc.enqueue_batch(arn, [(f"m{i}".encode(), 0) for i in range(40)] + [(b"x" * 2000, 0), ("late", 5)])
    assert all(isinstance(r, str) for r in results[:40]) and isinstance(results[40], E.SqsError)
    assert isinstance(results[41], str)
    got = svc.claim(arn, 100, 30)
    assert sorted(m.body for m in got) == sorted(f"m{i}".encode() for i in range(40)), "the delayed one waits"
    assert {m.receive_count for m in got} == {1}
    url = new_queue(svc, ctx, "q-api")
    svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [{"Id": f"i{i}", "MessageBody": "b"} for i in range(10)]})
    svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [{"Id": f"i{i}", "MessageBody": "b"} for i in range(10)]})
    assert len(receive(svc, ctx, url, MaxNumberOfMessages=10)) == 10      # the SQS API keeps its limit
    with pytest.raises(E.SqsError):
        receive(svc, ctx, url, MaxNumberOfMessages=11)


def test_internal_settle_acks_and_nacks_many_in_one_call(svc):
    arn = svc.ensure_queue(ACCOUNT, "internal-settle")
    svc.enqueue_batch(arn, [(f"m{i}".encode(), 0) for i in range(6)])
    ms = svc.claim(arn, 100, 60)
    by_body = {m.body: m for m in ms}
    acks = [by_body[b"m0"].receipt, by_body[b"m1"].receipt, "forged"]
    nacks = [(by_body[b"m2"].receipt, 0), (by_body[b"m3"].receipt, 600)]
    assert svc.settle(acks, nacks) == 2
    again = svc.claim(arn, 100, 60)
    assert [m.body for m in again] == [b"m2"] and again[0].receive_count == 2, "m3 hidden, m4/m5 still claimed"
    assert svc.settle([by_body[b"m2"].receipt]) == 0, "a stale receipt deletes nothing"
    assert svc.settle([again[0].receipt, by_body[b"m4"].receipt]) == 2
    assert svc.settle() == 0


def test_internal_queue_lookups_follow_set_attributes_and_delete(svc, ctx):
    url = new_queue(svc, ctx, "cached")
    arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:cached"
    assert isinstance(svc.enqueue_batch(arn, [(b"x" * 2000, 0)])[0], str)
    svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"MaximumMessageSize": "1024"}})
    assert isinstance(svc.enqueue_batch(arn, [(b"x" * 2000, 0)])[0], E.SqsError)
    svc.delete_queue(ctx, {"QueueUrl": url})
    with pytest.raises(E.QueueDoesNotExist):
        svc.enqueue_batch(arn, [(b"y", 0)])


def test_internal_claim_waits_for_enqueue(svc):
    arn = svc.ensure_queue(ACCOUNT, "waiting")
    threading.Timer(0.3, lambda: svc.enqueue(ACCOUNT, "waiting", b"x")).start()
    t0 = time.monotonic()
    got = svc.claim(arn, 1, 30, wait_s=5)
    assert got and time.monotonic() - t0 < 2


def test_concurrent_receivers_never_share_a_message(svc, ctx):
    url = new_queue(svc, ctx)
    svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [{"Id": f"i{i}", "MessageBody": str(i)}
                                                              for i in range(10)]})
    for _ in range(4):
        svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [{"Id": f"i{i}", "MessageBody": "more"}
                                                                  for i in range(10)]})
    seen: list[str] = []
    lock = threading.Lock()

    def worker():
        while True:
            got = receive(svc, ctx, url, MaxNumberOfMessages=3)
            if not got:
                return
            with lock:
                seen.extend(m["MessageId"] for m in got)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 50 and len(set(seen)) == 50


def test_every_sqs_operation_has_a_method(svc, ctx):
    from lambdalet.api.app import snake_case
    from lambdalet.api.protocol import load_service_model
    for op in load_service_model("sqs").operation_names:
        assert callable(getattr(svc, snake_case(op), None)), op
    with pytest.raises(E.UnsupportedOperation):
        svc.start_message_move_task(ctx, {})   # AddPermission is implemented (queues/policy.py)
