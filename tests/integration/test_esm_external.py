"""Event source mappings on an EXTERNAL SQS-compatible endpoint: a second lambdalet server (region
eu-west-1) plays the external SQS service. It is registered on the first server with
`lambdalet sources add-sqs-endpoint` (its CA bundle and admin credentials, sealed at rest); a queue on
the second server is mapped to a function on the first, which polls it with botocore's SQS client.

The function's rules (as in test_esm.py) make every platform mistake visible in the external DLQ:
  n % 10 == 3   always fails            -> must end in the DLQ (maxReceiveCount 3)
  n % 10 == 7   fails on its 1st receive -> must be delivered again and then deleted
  otherwise     succeeds at once        -> must be deleted exactly once (a 2nd delivery fails on purpose)
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from harness import run_lambdalet
from polling import eventually

from .e2e_support import WAIT, make_zip
from .sqs_support import drain_bodies, queue_counts
from .tenancy_support import mapping_role

N_MESSAGES = 200
EXTERNAL_REGION = "eu-west-1"

HANDLER = r'''
import hashlib
import json


def handler(event, context):
    failures = []
    for r in event["Records"]:
        if r["eventSource"] != "aws:sqs" or r["md5OfBody"] != hashlib.md5(r["body"].encode()).hexdigest() \
                or r["awsRegion"] != "eu-west-1" or r["messageAttributes"]["kind"]["stringValue"] != "ext":
            raise ValueError("not an SQS event: " + json.dumps(r)[:500])
        n = json.loads(r["body"])["n"]
        count = int(r["attributes"]["ApproximateReceiveCount"])
        allowed = 2 if n % 10 == 7 else 1
        if n % 10 == 3 or (n % 10 == 7 and count == 1) or (n % 10 != 3 and count > allowed):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
'''


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def test_external_sqs_endpoint_mapping(lambdalet_server_factory):
    home = lambdalet_server_factory()
    ext = lambdalet_server_factory("--region", EXTERNAL_REGION)
    lam = home.client("lambda")
    ext_sqs = ext.client("sqs")

    # ---- the external queue and its dead-letter queue, with 200 messages
    dlq_url = ext_sqs.create_queue(QueueName=_name("ext-dlq"))["QueueUrl"]
    dlq_arn = ext_sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = ext_sqs.create_queue(QueueName=_name("ext-src"), Attributes={
        "VisibilityTimeout": "2",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})["QueueUrl"]
    arn = ext_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert arn.startswith(f"arn:aws:sqs:{EXTERNAL_REGION}:")
    for start in range(0, N_MESSAGES, 10):
        resp = ext_sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"n": n}),
             "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "ext"}}}
            for n in range(start, start + 10)])
        assert not resp.get("Failed")

    fn = _name("esm-ext")
    lam.create_function(FunctionName=fn, Runtime="python3.11", Handler="app.handler", Timeout=2,
                        Role=mapping_role(home.client("iam")),
                        Code={"ZipFile": make_zip({"app.py": HANDLER})})
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig=WAIT)

    # ---- not configured yet: refused as before
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn)

    # ---- register the external endpoint (secret on stdin, never on the command line)
    res = run_lambdalet(home, "sources", "add-sqs-endpoint", "--name", "ext", "--account", "000000000000",
                     "--region", EXTERNAL_REGION, "--url", ext.url, "--ca-bundle", ext.ca,
                     "--access-key", ext.access_key, "--secret-key-stdin", input=ext.secret_key + "\n")
    assert res.returncode == 0, res.stderr
    listed = run_lambdalet(home, "sources", "list-sqs-endpoints")
    assert listed.returncode == 0 and ext.secret_key not in listed.stdout and ext.access_key not in listed.stdout
    assert json.loads(listed.stdout)[0]["url"] == ext.url

    time.sleep(1.5)                # the server re-reads the endpoint file within a second
    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    mapping = created["UUID"]
    try:
        assert created["EventSourceArn"] == arn and created["State"] == "Creating"
        poison = N_MESSAGES // 10
        eventually(lambda: queue_counts(ext_sqs, url) == (0, 0, 0) and queue_counts(ext_sqs, dlq_url)[0] == poison,
                   180, 1)
        src, dlq = queue_counts(ext_sqs, url), queue_counts(ext_sqs, dlq_url)
        assert src == (0, 0, 0), f"external queue not drained: {src}\n{home.log_text()}"
        assert dlq[0] == poison, f"external DLQ holds {dlq}, expected {poison}"
    finally:
        lam.delete_event_source_mapping(UUID=mapping)

    time.sleep(3)
    bodies = [json.loads(b)["n"] for b in drain_bodies(ext_sqs, dlq_url)]
    assert sorted(bodies) == [n for n in range(N_MESSAGES) if n % 10 == 3]

    # ---- the external endpoint's credentials are nowhere in plain text in the home data dir
    needles = [ext.secret_key.encode(), ext.access_key.encode()]
    for path in _files(home.data_dir):
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path} holds an external credential in plain text"

    # ---- removing the endpoint: new mappings of that queue are refused again
    assert run_lambdalet(home, "sources", "remove-sqs-endpoint", "ext").returncode == 0
    time.sleep(1.5)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn)
