"""FIFO queues (queues/fifo.py through QueueService) against a real migrated SQLite database and keyring."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from lambdalet.config import Settings
from lambdalet.crypto import FileKeyMaterialStore, Keyring
from lambdalet.events.esm_poller import fifo_unprocessed, sqs_record
from lambdalet.queues import QueueService
from lambdalet.queues import errors as E
from lambdalet.queues import fifo, records
from lambdalet.queues.tables import sqs_fifo_dedup, sqs_messages
from lambdalet.store.db import open_database

from .queues_support import make_ctx

ACCOUNT = "000000000000"


class Clock:
    def __init__(self, monkeypatch):
        import time
        self.t = time.time()
        monkeypatch.setattr(records, "now", lambda: self.t)   # the queues' one clock

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def env(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    master = os.urandom(32)
    opened = []

    def open_service() -> QueueService:
        db = open_database(f"sqlite:///{data / 'state.db'}")
        opened.append(db)
        return QueueService(db, Keyring.open(master, FileKeyMaterialStore(data / "keys")), Settings(data_dir=data))
    yield open_service
    for db in opened:
        db.close()


@pytest.fixture
def svc(env):
    return env()


@pytest.fixture
def ctx():
    return make_ctx()


def fifo_queue(svc, ctx, name="q.fifo", **attrs) -> str:
    attributes = {"FifoQueue": "true", **{k: str(v) for k, v in attrs.items()}}
    return svc.create_queue(ctx, {"QueueName": name, "Attributes": attributes})["QueueUrl"]


def send(svc, ctx, url, body, group="g", dedup=None, **kw):
    params = {"QueueUrl": url, "MessageBody": body, "MessageGroupId": group, **kw}
    if dedup is not False:
        params["MessageDeduplicationId"] = dedup or body
    return svc.send_message(ctx, params)


def receive(svc, ctx, url, n=10, **kw):
    return svc.receive_message(ctx, {"QueueUrl": url, "MaxNumberOfMessages": n,
                                     "MessageSystemAttributeNames": ["All"], **kw}).get("Messages", [])


def bodies(messages) -> list[str]:
    return [m["Body"] for m in messages]


def delete(svc, ctx, url, messages) -> None:
    for m in messages:
        svc.delete_message(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})


# ---------------------------------------------------------------- queues and attributes

def test_create_reports_fifo_attributes_and_is_idempotent(svc, ctx):
    url = fifo_queue(svc, ctx, ContentBasedDeduplication="true")
    assert url.endswith(f"/{ACCOUNT}/q.fifo")
    attrs = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]
    assert {k: attrs[k] for k in fifo.ATTRIBUTES} == {
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "DeduplicationScope": "queue",
        "FifoThroughputLimit": "perQueue"}
    assert fifo_queue(svc, ctx, ContentBasedDeduplication="true") == url
    with pytest.raises(E.QueueNameExists):
        fifo_queue(svc, ctx, ContentBasedDeduplication="false")
    svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {
        "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"}})
    got = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["DeduplicationScope",
                                                                            "FifoThroughputLimit"]})
    assert got["Attributes"] == {"DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"}
    standard = svc.create_queue(ctx, {"QueueName": "plain"})["QueueUrl"]
    assert "FifoQueue" not in svc.get_queue_attributes(ctx, {"QueueUrl": standard,
                                                             "AttributeNames": ["All"]})["Attributes"]


def test_queue_type_errors_as_sqs_answers(svc, ctx):
    with pytest.raises(E.InvalidParameterValue) as ei:
        svc.create_queue(ctx, {"QueueName": "a.fifo"})
    assert ei.value.message == fifo.NAME_MESSAGE
    with pytest.raises(E.InvalidParameterValue) as ei:
        svc.create_queue(ctx, {"QueueName": "a", "Attributes": {"FifoQueue": "true"}})
    assert ei.value.message == fifo.FIFO_NAME_MESSAGE
    with pytest.raises(E.InvalidParameterValue):
        svc.create_queue(ctx, {"QueueName": "x" * 76 + ".fifo", "Attributes": {"FifoQueue": "true"}})
    with pytest.raises(E.InvalidAttributeName, match="Unknown Attribute ContentBasedDeduplication"):
        svc.create_queue(ctx, {"QueueName": "a", "Attributes": {"ContentBasedDeduplication": "true"}})
    with pytest.raises(E.InvalidAttributeValue):
        fifo_queue(svc, ctx, DeduplicationScope="everywhere")
    with pytest.raises(E.InvalidAttributeValue):
        svc.create_queue(ctx, {"QueueName": "a", "Attributes": {"FifoQueue": "maybe"}})
    url = fifo_queue(svc, ctx)
    with pytest.raises(E.InvalidAttributeValue, match="Modifying queue type is not supported"):
        svc.set_queue_attributes(ctx, {"QueueUrl": url, "Attributes": {"FifoQueue": "false"}})
    standard = svc.create_queue(ctx, {"QueueName": "plain", "Attributes": {"FifoQueue": "false"}})["QueueUrl"]
    with pytest.raises(E.InvalidAttributeValue, match="Modifying queue type is not supported"):
        svc.set_queue_attributes(ctx, {"QueueUrl": standard, "Attributes": {"FifoQueue": "true"}})
    with pytest.raises(E.InvalidAttributeName):
        svc.set_queue_attributes(ctx, {"QueueUrl": standard, "Attributes": {"DeduplicationScope": "queue"}})


def test_redrive_target_must_be_the_same_type(svc, ctx):
    fifo_dlq = fifo_queue(svc, ctx, "dlq.fifo")
    std_dlq = svc.create_queue(ctx, {"QueueName": "dlq"})["QueueUrl"]
    arn = {u: svc.get_queue_attributes(ctx, {"QueueUrl": u, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
           for u in (fifo_dlq, std_dlq)}
    policy = lambda u: json.dumps({"deadLetterTargetArn": arn[u], "maxReceiveCount": 2})  # noqa: E731
    with pytest.raises(E.InvalidParameterValue, match="same type of queue"):
        fifo_queue(svc, ctx, "src.fifo", RedrivePolicy=policy(std_dlq))
    with pytest.raises(E.InvalidParameterValue, match="same type of queue"):
        svc.create_queue(ctx, {"QueueName": "src", "Attributes": {"RedrivePolicy": policy(fifo_dlq)}})
    fifo_queue(svc, ctx, "src.fifo", RedrivePolicy=policy(fifo_dlq))


# ---------------------------------------------------------------- sending

def test_send_errors(svc, ctx):
    url = fifo_queue(svc, ctx)
    with pytest.raises(E.MissingParameter, match="MessageGroupId"):
        svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x", "MessageDeduplicationId": "d"})
    with pytest.raises(E.InvalidParameterValue, match="ContentBasedDeduplication"):
        send(svc, ctx, url, "x", dedup=False)
    with pytest.raises(E.InvalidParameterValue, match="DelaySeconds"):
        send(svc, ctx, url, "x", DelaySeconds=5)
    with pytest.raises(E.InvalidParameterValue, match="MessageGroupId"):
        send(svc, ctx, url, "x", group="has space")
    with pytest.raises(E.InvalidParameterValue, match="MessageDeduplicationId"):
        send(svc, ctx, url, "x", dedup="d" * 129)
    standard = svc.create_queue(ctx, {"QueueName": "plain"})["QueueUrl"]
    with pytest.raises(E.InvalidParameterValue, match="not valid for this queue type"):
        svc.send_message(ctx, {"QueueUrl": standard, "MessageBody": "x", "MessageDeduplicationId": "d"})
    out = svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": "ok", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "a"},
        {"Id": "nogroup", "MessageBody": "b", "MessageDeduplicationId": "b"}]})
    assert [s["Id"] for s in out["Successful"]] == ["ok"]
    assert out["Failed"] == [{"Id": "nogroup", "SenderFault": True, "Code": "MissingParameter",
                              "Message": "The request must contain the parameter MessageGroupId."}]


def test_sequence_numbers_increase_and_have_20_digits(svc, ctx):
    url = fifo_queue(svc, ctx)
    seqs = [send(svc, ctx, url, f"m{i}", group=f"g{i % 3}")["SequenceNumber"] for i in range(5)]
    batch = svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"b{i}", "MessageGroupId": "g", "MessageDeduplicationId": f"b{i}"}
        for i in range(3)]})
    seqs += [s["SequenceNumber"] for s in batch["Successful"]]
    assert all(len(s) >= 20 and s.isdigit() for s in seqs)
    assert [int(s) for s in seqs] == sorted(int(s) for s in seqs) and len(set(seqs)) == 8
    [m] = receive(svc, ctx, url, 1)
    assert m["Attributes"]["SequenceNumber"] == seqs[0]
    assert m["Attributes"]["MessageGroupId"] == "g0" and m["Attributes"]["MessageDeduplicationId"] == "m0"


def test_duplicates_are_accepted_not_enqueued_and_answer_the_original(svc, ctx):
    url = fifo_queue(svc, ctx)
    first = send(svc, ctx, url, "one", dedup="d1")
    again = send(svc, ctx, url, "something else", dedup="d1")
    assert again["MessageId"] == first["MessageId"] and again["SequenceNumber"] == first["SequenceNumber"]
    batch = svc.send_message_batch(ctx, {"QueueUrl": url, "Entries": [
        {"Id": "a", "MessageBody": "two", "MessageGroupId": "g", "MessageDeduplicationId": "d2"},
        {"Id": "b", "MessageBody": "two again", "MessageGroupId": "other", "MessageDeduplicationId": "d2"}]})
    ids = {s["Id"]: s["MessageId"] for s in batch["Successful"]}
    assert ids["a"] == ids["b"]                     # a repeat inside one batch, across groups (scope: queue)
    assert bodies(receive(svc, ctx, url)) == ["one", "two"]


def test_content_based_deduplication_hashes_the_body(svc, ctx):
    url = fifo_queue(svc, ctx, ContentBasedDeduplication="true")
    a = send(svc, ctx, url, "same body", dedup=False)
    b = send(svc, ctx, url, "same body", group="another", dedup=False)
    c = send(svc, ctx, url, "other body", dedup=False)
    assert a["MessageId"] == b["MessageId"] != c["MessageId"]
    got = receive(svc, ctx, url)
    assert bodies(got) == ["same body", "other body"]
    assert got[0]["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same body").hexdigest()
    explicit = send(svc, ctx, url, "same body", dedup="explicit-wins")
    assert explicit["MessageId"] != a["MessageId"]


def test_deduplication_scope_message_group(svc, ctx):
    url = fifo_queue(svc, ctx, DeduplicationScope="messageGroup", FifoThroughputLimit="perMessageGroupId")
    a = send(svc, ctx, url, "x", group="g1", dedup="d")
    b = send(svc, ctx, url, "x", group="g2", dedup="d")
    c = send(svc, ctx, url, "x", group="g1", dedup="d")
    assert a["MessageId"] != b["MessageId"] and c["MessageId"] == a["MessageId"]


def test_dedup_window_survives_restart_ends_after_5_minutes_and_is_purged(env, ctx, monkeypatch):
    clock = Clock(monkeypatch)
    svc = env()
    url = fifo_queue(svc, ctx)
    first = send(svc, ctx, url, "once", dedup="d")
    delete(svc, ctx, url, receive(svc, ctx, url))                 # deleted: still a duplicate within the window
    restarted = env()
    assert send(restarted, ctx, url, "once", dedup="d")["MessageId"] == first["MessageId"]
    assert receive(restarted, ctx, url) == []
    clock.advance(fifo.DEDUP_WINDOW_S + 1)
    later = send(restarted, ctx, url, "once", dedup="d")
    assert later["MessageId"] != first["MessageId"]
    with restarted.db.read() as conn:
        rows = conn.execute(sa.select(sqs_fifo_dedup.c.message_id)).scalars().all()
    assert rows == [later["MessageId"]]                              # the expired entry is gone
    assert bodies(receive(restarted, ctx, url)) == ["once"]


def test_ids_are_not_stored_in_plain_text(svc, ctx):
    url = fifo_queue(svc, ctx)
    send(svc, ctx, url, "body", group="secret-group-id", dedup="secret-dedup-id")
    with svc.db.read() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(sqs_messages))]
        rows += [tuple(r) for r in conn.execute(sa.select(sqs_fifo_dedup))]
    text = repr(rows)
    assert "secret-group-id" not in text and "secret-dedup-id" not in text


# ---------------------------------------------------------------- receiving

def test_group_order_and_lock_while_in_flight(svc, ctx):
    url = fifo_queue(svc, ctx)
    for i in range(4):
        send(svc, ctx, url, f"a{i}", group="A")
    for i in range(3):
        send(svc, ctx, url, f"b{i}", group="B")
    send(svc, ctx, url, "a4", group="A")
    first = receive(svc, ctx, url, 2)
    assert bodies(first) == ["a0", "a1"]                        # several of one group, in order
    second = receive(svc, ctx, url, 10)
    assert bodies(second) == ["b0", "b1", "b2"]                 # A is locked while a0/a1 are in flight
    assert receive(svc, ctx, url, 10) == []
    delete(svc, ctx, url, first[:1])
    assert receive(svc, ctx, url, 10) == []                     # a1 still in flight: A stays locked
    delete(svc, ctx, url, first[1:])
    assert bodies(receive(svc, ctx, url, 10)) == ["a2", "a3", "a4"]


def test_a_receive_fills_from_one_group_then_the_next(svc, ctx):
    url = fifo_queue(svc, ctx)
    for i in range(3):
        send(svc, ctx, url, f"a{i}", group="A")
        send(svc, ctx, url, f"b{i}", group="B")
    assert bodies(receive(svc, ctx, url, 4)) == ["a0", "a1", "a2", "b0"]


def test_visibility_expiry_releases_the_group_in_order(svc, ctx, monkeypatch):
    clock = Clock(monkeypatch)
    url = fifo_queue(svc, ctx, VisibilityTimeout=30)
    for i in range(3):
        send(svc, ctx, url, f"m{i}")
    assert bodies(receive(svc, ctx, url, 1)) == ["m0"]
    assert receive(svc, ctx, url) == []
    clock.advance(31)
    again = receive(svc, ctx, url)
    assert bodies(again) == ["m0", "m1", "m2"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2", "1", "1"]
    # ChangeMessageVisibility to 0 gives the group back at once
    svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": again[0]["ReceiptHandle"],
                                        "VisibilityTimeout": 0})
    assert receive(svc, ctx, url) == []                         # m1, m2 still in flight
    for m in again[1:]:
        svc.change_message_visibility(ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"],
                                            "VisibilityTimeout": 0})
    assert bodies(receive(svc, ctx, url)) == ["m0", "m1", "m2"]


def test_redrive_keeps_the_group_in_a_fifo_dlq(svc, ctx, monkeypatch):
    clock = Clock(monkeypatch)
    dlq = fifo_queue(svc, ctx, "dlq.fifo")
    dlq_arn = svc.get_queue_attributes(ctx, {"QueueUrl": dlq, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    src = fifo_queue(svc, ctx, "src.fifo", VisibilityTimeout=10,
                     RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}))
    send(svc, ctx, src, "poison", group="G")
    send(svc, ctx, src, "next", group="G")
    assert bodies(receive(svc, ctx, src, 1)) == ["poison"]
    clock.advance(11)
    got = receive(svc, ctx, src)                 # poison moved on this receive; the group goes on
    assert bodies(got) == ["next"]
    [moved] = receive(svc, ctx, dlq)
    assert moved["Body"] == "poison" and moved["Attributes"]["MessageGroupId"] == "G"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"].endswith(":src.fifo")
    assert len(moved["Attributes"]["SequenceNumber"]) >= 20


def test_receive_request_attempt_id_is_accepted_and_checked(svc, ctx):
    url = fifo_queue(svc, ctx)
    send(svc, ctx, url, "m")
    assert bodies(receive(svc, ctx, url, ReceiveRequestAttemptId="attempt-1")) == ["m"]
    with pytest.raises(E.InvalidParameterValue):
        receive(svc, ctx, url, ReceiveRequestAttemptId="x" * 129)


def test_internal_claim_and_settle_keep_order(svc, ctx):
    url = fifo_queue(svc, ctx)
    arn = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    for g in "AB":
        for i in range(15):
            send(svc, ctx, url, f"{g}{i}", group=g)
    seen: dict[str, list[int]] = {"A": [], "B": []}
    while True:
        batch = svc.claim(arn, 10, 30)
        if not batch:
            break
        for m in batch:
            seen[m.system_attributes["MessageGroupId"]].append(int(m.body[1:]))
        svc.settle(acks=[m.receipt for m in batch])
    assert seen == {"A": list(range(15)), "B": list(range(15))}


def test_standard_messages_stay_out_of_the_fifo_columns(svc, ctx):
    url = svc.create_queue(ctx, {"QueueName": "plain"})["QueueUrl"]
    out = svc.send_message(ctx, {"QueueUrl": url, "MessageBody": "x"})
    assert "SequenceNumber" not in out
    with svc.db.read() as conn:
        row = conn.execute(sa.select(sqs_messages.c.group_key, sqs_messages.c.sequence)).one()
    assert tuple(row) == (None, None)


# ---------------------------------------------------------------- event source mapping helpers

def test_fifo_record_attributes_and_unprocessed_items(svc, ctx):
    url = fifo_queue(svc, ctx)
    arn = svc.get_queue_attributes(ctx, {"QueueUrl": url, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    for i, g in enumerate("AABAB"):
        send(svc, ctx, url, f"m{i}", group=g)
    msgs = svc.claim(arn, 10, 30)
    records = [sqs_record(m, "us-east-1") for m in msgs]
    assert [r["body"] for r in records] == ["m0", "m1", "m3", "m2", "m4"]
    assert {"SequenceNumber", "MessageGroupId", "MessageDeduplicationId"} <= set(records[0]["attributes"])
    ids = {r["body"]: r["messageId"] for r in records}
    # m0 (group A) fails: m1 and m3 (later in A) are unprocessed; group B is unaffected
    assert fifo_unprocessed(records, {ids["m0"]}) == {ids["m0"], ids["m1"], ids["m3"]}
    assert fifo_unprocessed(records, {ids["m4"]}) == {ids["m4"]}
