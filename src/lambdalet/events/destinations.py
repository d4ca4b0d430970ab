"""Where an event's outcome goes: OnSuccess / OnFailure destinations (AWS's invocation record) and
the function's DeadLetterConfig (the original event, with RequestID / ErrorCode / ErrorMessage
attributes). Targets: a queue of lambdalet's queue service (SendMessage, durable) or a function
(an Event invoke of it, durable). Each send has committed before the caller acknowledges the event.

A destination that cannot take the record (deleted, another account, too large) is reported in the
server log and the event is acknowledged: retrying would not make it deliverable.

Authority: as in AWS, records are sent with the function's execution role (the version that was
invoked): sqs:SendMessage on a queue, lambda:InvokeFunction on a function, decided by
events/authority.py at delivery time. A role that may not (permission removed, role deleted) gets the
record dropped and logged, never delivered with the platform's own authority.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from typing import Callable

from lambdalet.events.invoke_config import LAMBDA_ARN, SQS_ARN
from lambdalet.events.messages import EventMessage
from lambdalet.models.errors import AwsError
from lambdalet.observe import metrics

log = logging.getLogger("lambdalet.events")

SUCCESS = "Success"
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
ERROR_MESSAGE_MAX = 1024


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{int(epoch * 1000) % 1000:03d}Z"


def _json_or_text(raw: bytes | str | None):
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def invocation_record(msg: EventMessage, payload: bytes, condition: str, invoke_count: int, *,
                      executed_version: str | None = None, function_error: str | None = None,
                      response: bytes | str | None = None, now: float | None = None) -> dict:
    """AWS's destination record (version 1.0)."""
    record: dict = {
        "version": "1.0",
        "timestamp": _iso(now or time.time()),
        "requestContext": {"requestId": msg.request_id, "functionArn": msg.qualified_arn,
                           "condition": condition, "approximateInvokeCount": invoke_count},
        "requestPayload": _json_or_text(payload),
    }
    if executed_version is not None:
        ctx = {"statusCode": 200, "executedVersion": executed_version}
        if function_error:
            ctx["functionError"] = function_error
        record["responseContext"] = ctx
        record["responsePayload"] = _json_or_text(response)
    return record


def error_message_of(response: bytes | str | None, fallback: str) -> str:
    doc = _json_or_text(response)
    if isinstance(doc, dict) and doc.get("errorMessage"):
        text = str(doc["errorMessage"])
    elif doc not in (None, ""):
        text = doc if isinstance(doc, str) else json.dumps(doc)
    else:
        text = fallback
    return text[:ERROR_MESSAGE_MAX] or fallback


class Destinations:
    def __init__(self, queues, enqueue_event, role_of: Callable[[EventMessage], str] | None = None, *,
                 authority=None):
        self.queues = queues
        self.enqueue_event = enqueue_event          # AsyncInvocations.enqueue
        self.role_of = role_of                      # msg -> the invoked version's execution role ARN
        self.authority = authority                  # events/authority.RoleAuthority: sends as that role

    def send_record(self, msg: EventMessage, arn: str, record: dict, role: str | None = None) -> bool:
        return self._send(msg, arn, json.dumps(record, separators=(",", ":")), None, "destination", role)

    def send_dead_letter(self, msg: EventMessage, arn: str, payload: bytes, error_code: int, error_message: str,
                         role: str | None = None) -> bool:
        attrs = {"RequestID": {"DataType": "String", "StringValue": msg.request_id},
                 "ErrorCode": {"DataType": "Number", "StringValue": str(error_code)},
                 "ErrorMessage": {"DataType": "String", "StringValue": error_message[:ERROR_MESSAGE_MAX] or "error"}}
        return self._send(msg, arn, payload.decode("utf-8", "replace"), attrs, "dead-letter queue", role)

    def _authorize(self, msg: EventMessage, arn: str, action: str, role: str | None) -> None:
        """PermissionError unless the function's execution role may perform `action` on `arn`."""
        if self.authority is None:
            return
        if role is None:
            try:
                role = self.role_of(msg) if self.role_of is not None else ""
            except AwsError:
                role = ""          # the function is gone: nobody's authority remains to send with
        decision = self.authority.role_may(role or "", action, arn, session_name=msg.function_name,
                                           region=msg.region)
        if not decision.allowed:
            raise PermissionError(f"the function's execution role {role or '(none)'} may not {action} on {arn}")

    def _send(self, msg: EventMessage, arn: str, body: str, attrs: dict | None, what: str,
              role: str | None = None) -> bool:
        try:
            m = SQS_ARN.match(arn)
            if m:
                region, account, name = m.groups()
                if account != msg.account_id:
                    raise PermissionError("the queue belongs to another account")
                self._authorize(msg, arn, "sqs:SendMessage", role)
                self.queues.enqueue(account, name, body.encode(), attrs, region=region,
                                    sender_id=f"lambda:{msg.function_name}")
                return True
            m = LAMBDA_ARN.match(arn)
            if m:
                region, account, name, qualifier = m.groups()
                if account != msg.account_id or region != msg.region:
                    raise PermissionError("the function belongs to another account or region")
                self._authorize(msg, arn, "lambda:InvokeFunction", role)
                self.enqueue_event(EventMessage(account, region, name, qualifier, str(uuid.uuid4()), time.time(),
                                                payload=body))
                return True
            raise ValueError("lambdalet delivers only to SQS queue and Lambda function ARNs")
        except (AwsError, PermissionError, ValueError) as e:
            if isinstance(e, AwsError) and e.status >= 500:
                raise                      # a platform fault: the poller retries the whole outcome later
            log.error("event %s of %s: could not deliver to the %s %s: %s", msg.request_id, msg.qualified_arn,
                      what, arn, getattr(e, "message", None) or e)
            (metrics.DEAD_LETTER_ERRORS if what == "dead-letter queue" else metrics.DESTINATION_FAILURES).labels(
                msg.account_id, msg.function_name).inc()
            return False
