"""audit/records.py: CloudTrail fields, the management/data rule, identities and redaction."""
from __future__ import annotations

import datetime as dt
import json

from lambdalet.audit import records
from lambdalet.models.context import Caller
from lambdalet.models.errors import InvalidSignatureException, ResourceNotFoundException

ALICE = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")
T0 = 1_700_000_000.25

FIELDS = {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
          "userAgent", "requestParameters", "responseElements", "requestID", "eventID", "readOnly", "eventType",
          "managementEvent", "recipientAccountId", "eventCategory"}


def build(**kw):
    base = dict(service="lambda", operation="CreateFunction", caller=ALICE, params={}, result=None, error=None,
                source_ip="10.0.0.1", user_agent="Boto3/1.34", access_key_id=ALICE.access_key_id,
                request_id="req-1", region="eu-west-1", event_time=T0)
    base.update(kw)
    return records.build_record(**base)


def test_create_function_record_has_cloudtrail_fields_and_redacts_secrets():
    params = {"FunctionName": "f", "Runtime": "python3.11", "Role": "arn:aws:iam::111111111111:role/r",
              "Handler": "app.handler", "Code": {"ZipFile": b"PK\x03\x04 secret code"},
              "Environment": {"Variables": {"DB_PASSWORD": "hunter2"}}, "KMSKeyArn": "arn:aws:kms:k",
              "Tags": {"Team": "A"}}
    result = {"FunctionName": "f", "FunctionArn": "arn:aws:lambda:eu-west-1:111111111111:function:f",
              "Environment": {"Variables": {"DB_PASSWORD": "hunter2"}}, "CodeSize": 10}
    r = build(params=params, result=result)
    assert FIELDS <= set(r)
    assert r["eventName"] == "CreateFunction20150331"
    assert r["eventSource"] == "lambda.amazonaws.com"
    assert r["eventTime"] == "2023-11-14T22:13:20Z"
    assert r["eventCategory"] == "Management" and r["managementEvent"] is True and r["readOnly"] is False
    assert r["userIdentity"] == {"type": "IAMUser", "principalId": "AIDAALICE", "arn": ALICE.principal_arn,
                                 "accountId": "111111111111", "accessKeyId": "LKIAALICE", "userName": "alice"}
    rp = r["requestParameters"]
    assert rp["functionName"] == "f" and rp["kMSKeyArn"] == "arn:aws:kms:k"
    assert rp["code"] == {}                                        # ZipFile omitted
    assert rp["environment"] == {"variables": records.HIDDEN}       # names and values are sensitive
    assert rp["tags"] == {"Team": "A"}                              # map keys kept as given
    assert r["responseElements"]["environment"] == {"variables": records.HIDDEN}
    assert r["responseElements"]["functionArn"].endswith(":function:f")
    assert r["resources"] == [{"type": "AWS::Lambda::Function",
                               "ARN": "arn:aws:lambda:eu-west-1:111111111111:function:f", "accountId": "111111111111"}]
    text = json.dumps(r)
    assert "hunter2" not in text and "DB_PASSWORD" not in text and "secret code" not in text
    assert "errorCode" not in r


def test_versioned_event_names():
    assert records.event_name("lambda", "UpdateFunctionCode") == "UpdateFunctionCode20150331v2"
    assert records.event_name("lambda", "TagResource") == "TagResource20170331"
    assert records.event_name("lambda", "Invoke") == "Invoke"
    assert records.event_name("sqs", "CreateQueue") == "CreateQueue"
    assert records.base_event_name("UpdateFunctionCode20150331v2") == "UpdateFunctionCode"
    assert records.base_event_name("CreateQueue") == "CreateQueue"


def test_data_event_rule():
    assert records.is_data_event("lambda", "Invoke") and records.is_data_event("lambda", "InvokeAsync")
    assert not records.is_data_event("lambda", "CreateFunction")
    assert records.is_data_event("sqs", "SendMessage") and not records.is_data_event("sqs", "CreateQueue")
    r = build(operation="Invoke", params={"FunctionName": "f", "Payload": b'{"card": "4111"}'},
              result={"StatusCode": 200, "Payload": b"{}"})
    assert r["eventCategory"] == "Data" and r["managementEvent"] is False
    assert "payload" not in r["requestParameters"] and "4111" not in json.dumps(r)


def test_read_only_calls_have_no_response_elements():
    r = build(operation="GetFunction", params={"FunctionName": "f"},
              result={"Code": {"Location": "https://x/_lambdalet/code?token=abc"}})
    assert r["readOnly"] is True and r["responseElements"] is None


def test_failed_call_records_error_not_response():
    r = build(operation="DeleteFunction", params={"FunctionName": "nope"},
              error=ResourceNotFoundException("Function not found: nope"))
    assert r["errorCode"] == "ResourceNotFoundException" and "nope" in r["errorMessage"]
    assert r["responseElements"] is None


def test_unexpected_exception_hides_internals():
    r = build(error=RuntimeError("/srv/secret/path exploded"))
    assert r["errorCode"] == "ServiceException" and "secret" not in r["errorMessage"]


def test_refused_call_knows_only_the_claimed_key():
    r = build(caller=None, params={"FunctionName": "f"}, error=InvalidSignatureException("bad signature"),
              access_key_id="LKIAGUESS", account_id="111111111111")
    assert r["userIdentity"] == {"type": "Unknown", "accessKeyId": "LKIAGUESS"}
    assert r["requestParameters"] is None and r["errorCode"] == "InvalidSignatureException"
    assert r["recipientAccountId"] == "111111111111"
    assert records.index_columns(r)["username"] == ""


def test_identities():
    root = records.user_identity(Caller("1" * 12, "arn:aws:iam::111111111111:root", "K", "111111111111"), None)
    assert root["type"] == "Root" and records.lookup_username(root) == "root"
    role = records.user_identity(Caller("1" * 12, "arn:aws:sts::111111111111:assumed-role/Deploy/ci-42", "ASIA1",
                                        "AROAXYZ"), None)
    assert role["type"] == "AssumedRole" and role["principalId"] == "AROAXYZ:ci-42"
    assert role["sessionContext"]["sessionIssuer"]["arn"] == "arn:aws:iam::111111111111:role/Deploy"
    assert records.lookup_username(role) == "ci-42"


def test_unmodelled_values_are_redacted_by_name_and_made_json_safe():
    r = build(service="iam", operation="CreateAccessKey", params={"UserName": "bob"},
              result={"AccessKey": {"AccessKeyId": "LKIA1", "SecretAccessKey": "s3cr3t",
                                    "CreateDate": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}})
    key = r["responseElements"]["accessKey"]          # IAM is in botocore's models: lowerCamelCase
    assert key["secretAccessKey"] == records.HIDDEN and key["createDate"] == "2024-01-01T00:00:00Z"
    assert r["eventSource"] == "iam.amazonaws.com"
    # No model at all (unknown service): the name rule alone still hides it; keys kept as given.
    r = build(service="nosuchservice", operation="MakeKey", params={"Nested": [{"SessionToken": "tok"}]},
              result={"Key": {"SecretAccessKey": "s3cr3t", "Blob": b"raw"}})
    assert r["requestParameters"] == {"Nested": [{"SessionToken": records.HIDDEN}]}
    assert r["responseElements"] == {"Key": {"SecretAccessKey": records.HIDDEN}}
    assert "s3cr3t" not in json.dumps(r) and "tok" not in json.dumps(r)


def test_index_columns_round_trip():
    r = build(params={"FunctionName": "f"})
    cols = records.index_columns(r)
    assert cols["event_name"] == "CreateFunction20150331" and cols["username"] == "alice"
    assert cols["event_time"] == 1_700_000_000.0 and cols["account_id"] == "111111111111"


def test_no_output_operations_have_no_response_elements():
    r = build(operation="DeleteFunction", params={"FunctionName": "f"}, result={"StatusCode": 204})
    assert r["responseElements"] is None
    r = build(operation="PutFunctionConcurrency", params={"FunctionName": "f", "ReservedConcurrentExecutions": 5},
              result={"ReservedConcurrentExecutions": 5, "NotInModel": "x"})
    assert r["responseElements"] == {"reservedConcurrentExecutions": 5}
