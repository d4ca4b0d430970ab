"""Event source polling sources: the external SQS endpoint registry (rules, sealed credentials, live
reload) and ExternalSqsSource over a fake botocore client (message mapping, batch deletes, errors)."""
from __future__ import annotations

import base64
import os

import pytest
from botocore.exceptions import ClientError

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.events.esm_poller import sqs_record
from lambdalet.events.sources import (EventSources, ExternalSqsSource, InternalQueueSource, SqsEndpointRegistry)
from lambdalet.models.errors import AwsError

ARN = "arn:aws:sqs:us-east-1:111122223333:orders"


@pytest.fixture
def registry(tmp_path):
    return SqsEndpointRegistry(tmp_path, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), recheck_s=0)


def test_rules_and_precedence(registry):
    registry.add("acct", "https://a.example", account="111122223333", access_key="AK1", secret_key="S1")
    registry.add("acct-east", "https://b.example", account="111122223333", region="us-east-1",
                 access_key="AK2", secret_key="S2")
    registry.add("prefix", "https://c.example", arn_prefix="arn:aws:sqs:us-east-1:111122223333:ord",
                 access_key="AK3", secret_key="S3", allowed_accounts=["000000000000"])
    assert registry.lookup("arn:aws:sqs:eu-west-1:111122223333:x").name == "acct"
    assert registry.lookup("arn:aws:sqs:us-east-1:111122223333:x").name == "acct-east"
    assert registry.lookup(ARN).name == "prefix"
    assert registry.lookup(ARN, "000000000000").secret_key == "S3"
    assert registry.lookup(ARN, "444455556666") is None          # not an allowed account
    assert registry.lookup("arn:aws:sqs:us-east-1:999999999999:x") is None
    with pytest.raises(ValueError):
        registry.add("acct", "https://a.example", account="111122223333", access_key="A", secret_key="S")
    registry.add("acct", "https://z.example", account="111122223333", access_key="A", secret_key="S", replace=True)
    assert registry.lookup("arn:aws:sqs:eu-west-1:111122223333:x").url == "https://z.example"
    assert registry.remove("prefix") and not registry.remove("prefix")
    assert registry.lookup(ARN).name == "acct-east"


def test_bad_configurations_are_refused(registry):
    for kw in (dict(account="1234"), dict(account=None), dict(account="111122223333", arn_prefix="arn:aws:sqs:"),
               dict(arn_prefix="sqs:"), dict(account="111122223333", region="US EAST")):
        with pytest.raises(ValueError):
            registry.add("x", "https://a.example", access_key="AK", secret_key="S", **kw)
    with pytest.raises(ValueError):
        registry.add("x", "ftp://a.example", account="111122223333", access_key="AK", secret_key="S")
    with pytest.raises(ValueError):
        registry.add("x", "https://a.example", account="111122223333", access_key="AK", secret_key="S",
                     ca_bundle_pem=b"not a certificate")


def test_credentials_are_sealed_at_rest_and_bound_to_the_name(registry, tmp_path):
    registry.add("e1", "https://a.example", account="111122223333", access_key="AKIAEXAMPLEKEY0001",
                 secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET", ca_bundle_pem=b"-----BEGIN CERTIFICATE-----\nx\n")
    for p in tmp_path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"AKIAEXAMPLEKEY0001" not in data and b"wJalrXUtnFEMI" not in data
    assert (tmp_path / "sqs-endpoints.json").stat().st_mode & 0o077 == 0
    # a sealed blob moved to another endpoint's entry does not open (AAD names the endpoint)
    import json
    doc = json.loads((tmp_path / "sqs-endpoints.json").read_text())
    doc["endpoints"][0]["name"] = "renamed"
    (tmp_path / "sqs-endpoints.json").write_text(json.dumps(doc))
    fresh = SqsEndpointRegistry(tmp_path, registry.keyring, recheck_s=0)
    assert fresh.endpoints() == []            # unreadable: refused (logged), never half-loaded


class FakeSqs:
    def __init__(self):
        self.calls = []
        self.messages = []
        self.fail_batch_ids: set[str] = set()
        self.missing = False

    def get_queue_url(self, QueueName, QueueOwnerAWSAccountId):
        self.calls.append(("get_queue_url", QueueName, QueueOwnerAWSAccountId))
        if self.missing:
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "nope"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "GetQueueUrl")
        return {"QueueUrl": f"https://sqs.example/{QueueOwnerAWSAccountId}/{QueueName}"}

    def receive_message(self, **kw):
        self.calls.append(("receive_message", kw))
        out, self.messages = self.messages[:kw["MaxNumberOfMessages"]], self.messages[kw["MaxNumberOfMessages"]:]
        return {"Messages": out}

    def delete_message_batch(self, QueueUrl, Entries):
        self.calls.append(("delete_message_batch", [e["ReceiptHandle"] for e in Entries]))
        failed = [{"Id": e["Id"], "Code": "X", "SenderFault": False} for e in Entries
                  if e["ReceiptHandle"] in self.fail_batch_ids]
        return {"Successful": [], "Failed": failed}

    def delete_message(self, QueueUrl, ReceiptHandle):
        self.calls.append(("delete_message", ReceiptHandle))

    def change_message_visibility(self, QueueUrl, ReceiptHandle, VisibilityTimeout):
        self.calls.append(("change_message_visibility", ReceiptHandle, VisibilityTimeout))

    def get_queue_attributes(self, QueueUrl, AttributeNames):
        return {"Attributes": {"VisibilityTimeout": "45"}}


def _source(registry, fake):
    registry.add("e", "https://sqs.example", account="111122223333", access_key="AK", secret_key="S")
    return ExternalSqsSource(registry, ARN, "000000000000", client_factory=lambda ep, region: fake)


def test_external_source_maps_messages_to_the_lambda_record_shape(registry):
    fake = FakeSqs()
    fake.messages = [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "hello",
                      "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000",
                                     "SenderId": "AIDA", "ApproximateFirstReceiveTimestamp": "1700000001000"},
                      "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"},
                                            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}}]
    src = _source(registry, fake)
    got = src.claim(ARN, 10, 60, 2.4)
    assert fake.calls[1][1] == {"QueueUrl": "https://sqs.example/111122223333/orders", "MaxNumberOfMessages": 10,
                                "VisibilityTimeout": 60, "WaitTimeSeconds": 2, "AttributeNames": ["All"],
                                "MessageAttributeNames": ["All"]}
    rec = sqs_record(got[0], "us-east-1")
    assert rec["messageId"] == "m1" and rec["receiptHandle"] == "r1" and rec["body"] == "hello"
    assert rec["attributes"]["ApproximateReceiveCount"] == "2" and rec["eventSourceARN"] == ARN
    assert rec["messageAttributes"]["k"]["stringValue"] == "v"
    assert rec["messageAttributes"]["b"]["binaryValue"] == base64.b64encode(b"\x00\x01").decode()
    assert "md5OfMessageAttributes" in rec
    assert src.visibility_timeout(ARN) == 45
    with pytest.raises(ValueError):
        src.claim("arn:aws:sqs:us-east-1:111122223333:other", 1, 1, 0)


def test_external_source_batches_deletes_and_retries_failed_entries(registry):
    fake = FakeSqs()
    fake.fail_batch_ids = {"r3"}
    src = _source(registry, fake)
    src.ack_many([f"r{i}" for i in range(23)])
    batches = [c[1] for c in fake.calls if c[0] == "delete_message_batch"]
    assert [len(b) for b in batches] == [10, 10, 3]
    assert ("delete_message", "r3") in fake.calls
    src.nack("r9", 0)
    assert ("change_message_visibility", "r9", 0) in fake.calls


def test_external_source_errors_are_aws_errors_and_removal_is_not_a_fallback(registry):
    fake = FakeSqs()
    fake.missing = True
    src = _source(registry, fake)
    with pytest.raises(AwsError) as ei:
        src.claim(ARN, 1, 1, 0)
    assert ei.value.code == "AWS.SimpleQueueService.NonExistentQueue"
    registry.remove("e")
    with pytest.raises(AwsError):
        src.claim(ARN, 1, 1, 0)


def test_router_picks_external_only_for_matching_arns(registry):
    internal = InternalQueueSource(queues=None)
    sources = EventSources(internal, registry)
    assert sources.for_arn(ARN, "000000000000") is internal
    registry.add("e", "https://sqs.example", account="111122223333", access_key="AK", secret_key="S")
    ext = sources.for_arn(ARN, "000000000000")
    assert isinstance(ext, ExternalSqsSource) and sources.for_arn(ARN, "000000000000") is ext
    assert sources.for_arn("arn:aws:sqs:us-east-1:000000000000:mine", "000000000000") is internal
