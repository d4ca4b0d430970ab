"""audit/lookup.py: CloudTrail LookupEvents (subset) over the trail, through the awsJson protocol."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from lambdalet.api.json_protocol import JsonProtocol
from lambdalet.api.protocol import WireRequest, load_service_model
from lambdalet.audit import AuditRecorder, CloudTrailService
from lambdalet.audit.lookup import InvalidLookupAttributesException, InvalidMaxResultsException, \
    InvalidNextTokenException, InvalidTimeRangeException
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import InvalidSignatureException
from lambdalet.store.db import Database, make_engine

ALICE = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")
BOB = Caller("222222222222", "arn:aws:iam::222222222222:user/bob", "LKIABOB", "AIDABOB")
OPERATOR = "000000000000"
T0 = 1_700_000_000.0


def ctx(caller):
    return RequestContext(caller, "us-east-1", "req", "https://x")


@pytest.fixture
def svc(tmp_path):
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    db = Database(make_engine("sqlite://"))
    audit_events.metadata.create_all(db.engine, tables=[audit_events, audit_digests])
    rec = AuditRecorder(db, keyring, tmp_path / "audit", data_events=True).start()

    def call(caller, op, params, t, error=None, key=None):
        rec.submit(service="lambda", operation=op, ctx=ctx(caller) if caller else None, params=params, result={},
                   error=error, access_key_id=key or (caller.access_key_id if caller else None), event_time=t)

    call(ALICE, "CreateFunction", {"FunctionName": "a1", "Environment": {"Variables": {"K": "secret"}}}, T0)
    call(ALICE, "GetFunction", {"FunctionName": "a1"}, T0 + 10)
    call(ALICE, "Invoke", {"FunctionName": "a1", "Payload": b"{}"}, T0 + 20)      # data event: never looked up
    for i in range(5):
        call(ALICE, "TagResource", {"Resource": f"arn:aws:lambda:us-east-1:111111111111:function:a{i}",
                                    "Tags": {"k": "v"}}, T0 + 30 + i)
    call(BOB, "CreateFunction", {"FunctionName": "b1"}, T0 + 40)
    call(None, "ListFunctions", None, T0 + 50, InvalidSignatureException("bad"), key="LKIAUNKNOWN")
    service = CloudTrailService(db, keyring, rec, unattributed_account=OPERATOR)
    yield service
    rec.close()
    db.close()


def names(out):
    return [e["EventName"] for e in out["Events"]]


def test_account_sees_its_management_events_newest_first(svc):
    out = svc.lookup_events(ctx(ALICE), {})
    assert names(out) == ["TagResource20170331"] * 5 + ["GetFunction20150331v2", "CreateFunction20150331"]
    create = out["Events"][-1]
    assert create["Username"] == "alice" and create["AccessKeyId"] == "LKIAALICE" and create["ReadOnly"] == "false"
    assert create["EventSource"] == "lambda.amazonaws.com"
    assert create["EventTime"] == dt.datetime.fromtimestamp(T0, dt.timezone.utc)
    assert create["Resources"] == [{"ResourceType": "AWS::Lambda::Function",
                                    "ResourceName": "arn:aws:lambda:us-east-1:111111111111:function:a1"}]
    record = json.loads(create["CloudTrailEvent"])
    assert list(record)[:3] == ["eventVersion", "userIdentity", "eventTime"]
    assert record["requestParameters"]["environment"]["variables"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert names(svc.lookup_events(ctx(BOB), {})) == ["CreateFunction20150331"]


def test_unattributed_refusals_go_to_the_operator(svc):
    op = Caller(OPERATOR, f"arn:aws:iam::{OPERATOR}:user/admin", "LKIAOP", "AIDAOP")
    out = svc.lookup_events(ctx(op), {})
    assert names(out) == ["ListFunctions20150331"]
    assert json.loads(out["Events"][0]["CloudTrailEvent"])["errorCode"] == "InvalidSignatureException"


@pytest.mark.parametrize("key,value,expected", [
    ("EventName", "CreateFunction", ["CreateFunction20150331"]),
    ("EventName", "CreateFunction20150331", ["CreateFunction20150331"]),
    ("ReadOnly", "true", ["GetFunction20150331v2"]),
    ("Username", "alice", ["TagResource20170331"] * 5 + ["GetFunction20150331v2", "CreateFunction20150331"]),
    ("ResourceName", "a1", ["TagResource20170331", "GetFunction20150331v2", "CreateFunction20150331"]),
    ("EventSource", "sqs.amazonaws.com", []),
    ("AccessKeyId", "LKIABOB", []),          # Bob's events are not Alice's
])
def test_lookup_attributes(svc, key, value, expected):
    out = svc.lookup_events(ctx(ALICE), {"LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]})
    assert names(out) == expected


def test_event_id_and_time_range(svc):
    first = svc.lookup_events(ctx(ALICE), {})["Events"][-1]
    out = svc.lookup_events(ctx(ALICE), {"LookupAttributes": [{"AttributeKey": "EventId",
                                                               "AttributeValue": first["EventId"]}]})
    assert [e["EventId"] for e in out["Events"]] == [first["EventId"]]
    utc = dt.timezone.utc
    out = svc.lookup_events(ctx(ALICE), {"StartTime": dt.datetime.fromtimestamp(T0 + 5, utc),
                                         "EndTime": dt.datetime.fromtimestamp(T0 + 31, utc)})
    assert names(out) == ["TagResource20170331"] * 2 + ["GetFunction20150331v2"]


def test_pagination(svc):
    seen, token = [], None
    for _ in range(10):
        params = {"MaxResults": 3, **({"NextToken": token} if token else {})}
        out = svc.lookup_events(ctx(ALICE), params)
        seen += [e["EventId"] for e in out["Events"]]
        token = out.get("NextToken")
        if not token:
            break
    assert len(seen) == 7 == len(set(seen))
    with pytest.raises(InvalidNextTokenException):
        svc.lookup_events(ctx(BOB), {"MaxResults": 3, "NextToken": svc.lookup_events(ctx(ALICE), {"MaxResults": 3})
                                     ["NextToken"]})
    with pytest.raises(InvalidNextTokenException):
        svc.lookup_events(ctx(ALICE), {"NextToken": "garbage"})


def test_errors(svc):
    with pytest.raises(InvalidLookupAttributesException):
        svc.lookup_events(ctx(ALICE), {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"}] * 2})
    with pytest.raises(InvalidMaxResultsException):
        svc.lookup_events(ctx(ALICE), {"MaxResults": 51})
    utc = dt.timezone.utc
    with pytest.raises(InvalidTimeRangeException):
        svc.lookup_events(ctx(ALICE), {"StartTime": dt.datetime.fromtimestamp(T0 + 5, utc),
                                       "EndTime": dt.datetime.fromtimestamp(T0, utc)})
    assert svc.lookup_events(ctx(ALICE), {"EventCategory": "insight"}) == {"Events": []}


def test_through_the_awsjson_protocol(svc):
    proto = JsonProtocol(load_service_model("cloudtrail"))
    body = json.dumps({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "CreateFunction"}],
                       "StartTime": T0 - 1}).encode()
    wire = WireRequest("POST", "/", [], {"x-amz-target": proto.target_prefix + ".LookupEvents"}, body)
    op, labels = proto.match(wire)
    assert op.name == "LookupEvents"
    resp = proto.serialize(op, svc.lookup_events(ctx(ALICE), proto.parse(op, wire, labels)))
    doc = json.loads(resp.body)
    assert resp.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert doc["Events"][0]["EventName"] == "CreateFunction20150331"
    assert doc["Events"][0]["EventTime"] == T0
    err = proto.serialize_error(InvalidMaxResultsException("MaxResults must be between 1 and 50."))
    assert json.loads(err.body)["__type"].endswith("#InvalidMaxResultsException")
