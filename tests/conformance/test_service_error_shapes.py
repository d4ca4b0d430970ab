"""The other services lambdalet serves answer errors in AWS's shapes: code, HTTP status and message,
as boto3 parses them from each protocol (awsJson: SQS, KMS, Logs, CloudTrail; awsQuery: IAM, STS).

Expectations are AWS's documented answers (each service's API reference) for a resource that does
not exist or a request that is malformed; run against the real server.
"""
from __future__ import annotations

import uuid

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

NO_RETRY = Config(retries={"max_attempts": 0})


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    r = err.value.response
    return {"code": r["Error"]["Code"], "status": r["ResponseMetadata"]["HTTPStatusCode"],
            "message": r["Error"].get("Message", ""), "type": r["Error"].get("Type")}


def _missing(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_iam_missing_role(server):
    name = _missing("norole")
    got = _error(lambda: server.client("iam", config=NO_RETRY).get_role(RoleName=name))
    assert got == {"code": "NoSuchEntity", "status": 404, "type": "Sender",
                   "message": f"The role with name {name} cannot be found."}


def test_iam_missing_user(server):
    name = _missing("nouser")
    got = _error(lambda: server.client("iam", config=NO_RETRY).get_user(UserName=name))
    assert got == {"code": "NoSuchEntity", "status": 404, "type": "Sender",
                   "message": f"The user with name {name} cannot be found."}


def test_sqs_missing_queue(server):
    got = _error(lambda: server.client("sqs", config=NO_RETRY).get_queue_url(QueueName=_missing("noqueue")))
    assert got["status"] == 400
    assert got["code"] in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
    assert got["message"] == "The specified queue does not exist."


def test_kms_missing_key(server):
    key_id = str(uuid.uuid4())
    got = _error(lambda: server.client("kms", config=NO_RETRY).describe_key(KeyId=key_id))
    assert got["code"] == "NotFoundException" and got["status"] == 400
    assert got["message"] == f"Key 'arn:aws:kms:{server.region}:{server.account_id}:key/{key_id}' does not exist"


def test_logs_missing_group(server):
    got = _error(lambda: server.client("logs", config=NO_RETRY).describe_log_streams(
        logGroupName=f"/aws/lambda/{_missing('nogroup')}"))
    assert got["code"] == "ResourceNotFoundException" and got["status"] == 400
    assert got["message"] == "The specified log group does not exist."


def test_sts_assume_missing_role(server):
    arn = f"arn:aws:iam::{server.account_id}:role/{_missing('norole')}"
    got = _error(lambda: server.client("sts", config=NO_RETRY).assume_role(RoleArn=arn, RoleSessionName="corpus"))
    assert got["code"] == "AccessDenied" and got["status"] == 403 and got["type"] == "Sender"


def test_scheduler_missing_schedule(server):
    name = _missing("nosched")
    got = _error(lambda: server.client("scheduler", config=NO_RETRY).get_schedule(Name=name))
    assert got["code"] == "ResourceNotFoundException" and got["status"] == 404
    assert got["message"] == f"Schedule {name} does not exist."


def test_organizations_outside_an_organization(server):
    """The server's default account belongs to no organization: AWS answers AWSOrganizationsNotInUseException."""
    got = _error(lambda: server.client("organizations", config=NO_RETRY).describe_account(AccountId="999999999999"))
    assert got["code"] == "AWSOrganizationsNotInUseException" and got["status"] == 400
    assert got["message"] == "Your account is not a member of an organization."


def test_cloudtrail_lookup_with_two_attributes(server):
    """CloudTrail LookupEvents takes one lookup attribute (AWS's API reference:
    InvalidLookupAttributesException, 400)."""
    attrs = [{"AttributeKey": "EventName", "AttributeValue": "Invoke"},
             {"AttributeKey": "Username", "AttributeValue": "admin"}]
    got = _error(lambda: server.client("cloudtrail", config=NO_RETRY).lookup_events(LookupAttributes=attrs))
    assert got["code"] == "InvalidLookupAttributesException" and got["status"] == 400   # AWS's text: unrecorded


def test_cloudtrail_time_range_reversed(server):
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    got = _error(lambda: server.client("cloudtrail", config=NO_RETRY).lookup_events(
        StartTime=now, EndTime=now - dt.timedelta(hours=1)))
    assert got["code"] == "InvalidTimeRangeException" and got["status"] == 400
