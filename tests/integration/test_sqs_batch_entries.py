"""SendMessageBatch with an entry whose message attribute lacks its value: that entry fails with a
sender fault (InvalidParameterValue, as SendMessage answers it), the others are sent. Real server,
boto3's sqs client."""
from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def sqs_queue(server):
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=f"batch-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


@pytest.mark.parametrize("attribute", [{"DataType": "Binary"}, {"DataType": "String"}])
def test_an_attribute_without_its_value_fails_only_its_entry(sqs_queue, attribute):
    sqs, url = sqs_queue
    with pytest.raises(sqs.exceptions.ClientError) as single:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes={"a": attribute})
    assert single.value.response["Error"]["Code"] == "InvalidParameterValue"
    res = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "good", "MessageBody": "one"},
        {"Id": "bad", "MessageBody": "two", "MessageAttributes": {"a": attribute}}])
    assert [s["Id"] for s in res["Successful"]] == ["good"]
    [failed] = res["Failed"]
    assert failed["Id"] == "bad" and failed["SenderFault"] is True and failed["Code"] == "InvalidParameterValue"
