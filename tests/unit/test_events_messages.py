"""events/messages.py and destinations.py: the queued message round-trips; records have AWS's shape."""
from __future__ import annotations

import json

from lambdalet.events.destinations import error_message_of, invocation_record
from lambdalet.events.messages import EventMessage, last_error_of


def _msg(**kw) -> EventMessage:
    base = dict(account_id="123456789012", region="us-east-1", function_name="f", qualifier=None,
                request_id="rid-1", enqueued_at=1_700_000_000.5, payload='{"a": "\\u00e9"}')
    base.update(kw)
    return EventMessage(**base)


def test_round_trip_and_ascii_body():
    m = _msg(qualifier="live", client_context='{"custom":{}}', attempts=1,
             last_error={"fe": "Unhandled", "v": "3", "p": "{}"})
    body = m.encode()
    assert body.isascii()
    assert EventMessage.decode(body) == m
    assert EventMessage.decode(body).last_error == m.last_error
    assert m.qualified_arn == "arn:aws:lambda:us-east-1:123456789012:function:f:live"
    assert _msg().qualified_arn.endswith(":function:f:$LATEST")


def test_unknown_version_refused():
    doc = json.loads(_msg().encode())
    doc["v"] = 99
    try:
        EventMessage.decode(json.dumps(doc))
    except ValueError:
        return
    raise AssertionError("accepted an unknown message version")


def test_success_and_failure_records():
    m = _msg()
    rec = invocation_record(m, b'{"a":1}', "Success", 1, executed_version="$LATEST", response=b'{"ok":true}', now=0.25)
    assert rec == {"version": "1.0", "timestamp": "1970-01-01T00:00:00.250Z",
                   "requestContext": {"requestId": "rid-1", "functionArn": m.qualified_arn, "condition": "Success",
                                      "approximateInvokeCount": 1},
                   "requestPayload": {"a": 1},
                   "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
                   "responsePayload": {"ok": True}}
    fail = invocation_record(m, b"{}", "RetriesExhausted", 3, executed_version="2", function_error="Unhandled",
                             response=b'{"errorMessage":"x","errorType":"E"}')
    assert fail["responseContext"]["functionError"] == "Unhandled"
    aged = invocation_record(m, b"{}", "EventAgeExceeded", 0)
    assert "responseContext" not in aged and "responsePayload" not in aged


def test_error_message_and_last_error():
    assert error_message_of(b'{"errorMessage":"boom"}', "fb") == "boom"
    assert error_message_of(None, "fallback") == "fallback"
    assert len(error_message_of(json.dumps({"errorMessage": "x" * 5000}), "fb")) == 1024
    big = last_error_of("Unhandled", "1", b"y" * 200_000)
    assert len(big["p"]) < 5000 and json.loads(big["p"])["errorType"] == "Lambdalet.ResponseTruncated"
