"""Issue 11 leftovers, through a real server with boto3:

- tags on event source mapping ARNs (TaggableResource in botocore's model): CreateEventSourceMapping's
  Tags, TagResource / ListTags / UntagResource with the mapping's ARN, ResourceNotFoundException for a
  mapping that does not exist or was deleted;
- an Event invocation over 1 MB (AWS's current limit for asynchronous invocations) is refused as AWS
  answers it: 413 RequestEntityTooLargeException, "<n> byte payload is too large for the Event
  invocation type (limit 1048576 bytes)"; one of exactly 1 MB is accepted.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, make_zip, unique
from .tenancy_support import mapping_role

EVENT_LIMIT = 1_048_576


@pytest.fixture(scope="module")
def fn(lam, srv):
    name = unique("tagesm")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                        Role=mapping_role(srv.client("iam")),
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return None\n"})})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    yield name
    delete_quietly(lam, name)


def _code(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call()
    r = info.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def test_tags_on_an_event_source_mapping(lam, srv, fn):
    sqs = srv.client("sqs")
    url = sqs.create_queue(QueueName=unique("tagesm-q"))["QueueUrl"]
    try:
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        m = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=fn, Enabled=False,
                                            Tags={"team": "blue", "env": "test"})
        arn = m["EventSourceMappingArn"]
        assert "Tags" not in m                              # not a member of EventSourceMappingConfiguration
        assert lam.list_tags(Resource=arn)["Tags"] == {"team": "blue", "env": "test"}
        lam.tag_resource(Resource=arn, Tags={"team": "green", "cost": "42"})
        assert lam.list_tags(Resource=arn)["Tags"] == {"team": "green", "env": "test", "cost": "42"}
        lam.untag_resource(Resource=arn, TagKeys=["env", "cost"])
        assert lam.list_tags(Resource=arn)["Tags"] == {"team": "green"}
        # The function's own tags are another resource's.
        assert lam.list_tags(Resource=srv.function_arn(fn))["Tags"] == {}

        missing = arn.rsplit(":", 1)[0] + ":" + str(uuid.uuid4())
        assert _code(lambda: lam.list_tags(Resource=missing))[:2] == ("ResourceNotFoundException", 404)
        assert _code(lambda: lam.tag_resource(Resource=missing, Tags={"a": "b"}))[:2] == \
            ("ResourceNotFoundException", 404)

        lam.delete_event_source_mapping(UUID=m["UUID"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                lam.get_event_source_mapping(UUID=m["UUID"])
            except ClientError:
                break
            time.sleep(0.2)
        assert _code(lambda: lam.list_tags(Resource=arn))[:2] == ("ResourceNotFoundException", 404)
    finally:
        sqs.delete_queue(QueueUrl=url)


def _json_of_size(n: int) -> bytes:
    body = json.dumps({"pad": ""}).encode()
    return json.dumps({"pad": "x" * (n - len(body))}).encode()


def test_event_payload_over_1_mb_is_refused_as_aws_does(lam):
    name = unique("evsize")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return None\n"})})
    try:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        too_big = _json_of_size(EVENT_LIMIT + 1)
        assert _code(lambda: lam.invoke(FunctionName=name, InvocationType="Event", Payload=too_big)) == (
            "RequestEntityTooLargeException", 413,
            f"{EVENT_LIMIT + 1} byte payload is too large for the Event invocation type (limit {EVENT_LIMIT} bytes)")
        fits = _json_of_size(EVENT_LIMIT)
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=fits)["StatusCode"] == 202
    finally:
        delete_quietly(lam, name)
