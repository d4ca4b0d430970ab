"""boto3 against the SQS binding served in-process: api/app.py (SigV4, routing) + JsonProtocol +
QueueService over real HTTP (plain, loopback). The same wiring server/run.py uses, minus TLS."""
from __future__ import annotations

import os
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdalet.api.app import ApiApp, ServiceBinding
from lambdalet.api.json_protocol import JsonProtocol
from lambdalet.api.protocol import load_service_model
from lambdalet.config import Settings
from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller
from lambdalet.queues import QueueService
from lambdalet.store.db import open_database
from inprocess import serving

ACCOUNT = "000000000000"
AKID, SECRET = "AKIDQUEUETEST0000001", "queue-test-secret-key-0123456789abcdefghij"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    data = tmp_path_factory.mktemp("sqs-api")
    db = open_database(f"sqlite:///{data / 'state.db'}")
    svc = QueueService(db, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), Settings(data_dir=data))
    caller = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/admin", AKID, "AIDAQUEUETEST")
    app = ApiApp({"sqs": ServiceBinding(JsonProtocol(load_service_model("sqs")), svc)},
                 lambda akid, token=None: (caller, SECRET) if akid == AKID else None)
    with serving(app.asgi) as url:
        yield url
    db.close()


@pytest.fixture(scope="module")
def sqs(endpoint):
    return boto3.session.Session().client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=AKID,
        aws_secret_access_key=SECRET, config=Config(retries={"total_max_attempts": 1}, read_timeout=60))


def _name(prefix="q"):
    return f"{prefix}-{os.urandom(4).hex()}"


def test_queue_lifecycle_and_typed_errors(sqs, endpoint):
    name = _name()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url == f"{endpoint}/{ACCOUNT}/{name}"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as ei:
        sqs.get_queue_url(QueueName=name)
    assert ei.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "10"})
    with pytest.raises(sqs.exceptions.QueueNameExists) as ei:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "11"})
    assert ei.value.response["Error"]["Code"] == "QueueAlreadyExists"
    with pytest.raises(ClientError) as ei:
        sqs.receive_message(QueueUrl=url.replace(name, name), MaxNumberOfMessages=11)
    assert ei.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"])


def test_round_trip_with_attributes(sqs):
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    attrs = {"s": {"DataType": "String", "StringValue": "v"}, "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
             "n": {"DataType": "Number", "StringValue": "42"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello ✓", MessageAttributes=attrs)
    [m] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"],
                              WaitTimeSeconds=1)["Messages"]
    assert m["Body"] == "hello ✓" and m["MessageId"] == sent["MessageId"]
    assert m["MessageAttributes"] == attrs
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="forged")
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_batch_partial_failure_shapes(sqs):
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    res = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "ok", "MessageBody": "x"},
                                                        {"Id": "bad", "MessageBody": "\x00"}])
    assert [s["Id"] for s in res["Successful"]] == ["ok"]
    assert res["Failed"] == [{"Id": "bad", "SenderFault": True, "Code": "InvalidMessageContents",
                              "Message": res["Failed"][0]["Message"]}]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as ei:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"i{i}", "MessageBody": "x"} for i in range(11)])
    assert ei.value.response["Error"]["Code"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}])


def test_long_poll_over_http_returns_early(sqs, endpoint):
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    threading.Timer(0.5, lambda: sqs.send_message(QueueUrl=url, MessageBody="wake")).start()
    t0 = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
    assert [m["Body"] for m in got] == ["wake"] and time.monotonic() - t0 < 3


def test_wrong_credentials_are_refused(endpoint):
    bad = boto3.session.Session().client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                                         aws_access_key_id=AKID, aws_secret_access_key="wrong",
                                         config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as ei:
        bad.list_queues()
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unimplemented_operation_is_a_client_error(sqs):
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    with pytest.raises(sqs.exceptions.UnsupportedOperation) as ei:   # AddPermission is implemented now
        sqs.start_message_move_task(SourceArn=sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
