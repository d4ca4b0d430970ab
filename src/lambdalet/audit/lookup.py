"""CloudTrail's LookupEvents (subset) over the audit trail: management events of the caller's
account, newest first, at most one lookup attribute, StartTime/EndTime, MaxResults (1-50) and
NextToken. EventCategory "insight" answers no events (lambdalet has no Insights).

lambdalet extension: EventName also matches the unversioned operation name, so both
`CreateFunction20150331` (CloudTrail's name) and `CreateFunction` find Lambda's CreateFunction.

Refused requests whose claimed access key is unknown belong to no account; they are shown to the
`unattributed_account` (the platform operator's, by default none).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

import sqlalchemy as sa

from lambdalet.audit import chain, records
from lambdalet.audit.tables import audit_events
from lambdalet.crypto.errors import CryptoError, InvalidToken
from lambdalet.crypto.tokens import make_token, read_token
from lambdalet.models.errors import AwsError

log = logging.getLogger("lambdalet.audit")

MAX_RESULTS = 50
TOKEN_TTL_S = 24 * 3600


def _error(code: str) -> type[AwsError]:
    return type(code, (AwsError,), {"code": code, "status": 400, "sender_fault": True})


InvalidLookupAttributesException = _error("InvalidLookupAttributesException")
InvalidTimeRangeException = _error("InvalidTimeRangeException")
InvalidMaxResultsException = _error("InvalidMaxResultsException")
InvalidNextTokenException = _error("InvalidNextTokenException")
InvalidEventCategoryException = _error("InvalidEventCategoryException")

_KEYS = {"EventId": "event_id", "EventName": "event_name", "ReadOnly": "read_only", "Username": "username",
         "ResourceType": "resource_type", "ResourceName": "resource_name", "EventSource": "event_source",
         "AccessKeyId": "access_key_id"}
_ORDER = ["eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
          "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "requestID", "eventID",
          "readOnly", "resources", "eventType", "managementEvent", "recipientAccountId", "eventCategory"]


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def ordered(record: dict) -> dict:
    """The record with CloudTrail's customary key order (the stored form is sorted)."""
    out = {k: record[k] for k in _ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


class CloudTrailService:
    def __init__(self, db, keyring, recorder=None, *, unattributed_account: str | None = None):
        self.db = db
        self.keyring = keyring
        self.recorder = recorder
        self.unattributed_account = unattributed_account
        self._token_key = keyring.derive_key("audit-lookup-token")

    def lookup_events(self, ctx, params: dict) -> dict:
        attrs = params.get("LookupAttributes") or []
        if len(attrs) > 1:
            raise InvalidLookupAttributesException("You cannot specify more than one lookup attribute.")
        category = params.get("EventCategory")
        if category is not None and category != "insight":
            raise InvalidEventCategoryException(f"Invalid event category: {category}")
        max_results = params.get("MaxResults", MAX_RESULTS)
        if not 1 <= max_results <= MAX_RESULTS:
            raise InvalidMaxResultsException("MaxResults must be between 1 and 50.")
        start, end = params.get("StartTime"), params.get("EndTime")
        start_s = _epoch(start) if start is not None else None
        end_s = _epoch(end) if end is not None else None
        if start_s is not None and end_s is not None and start_s > end_s:
            raise InvalidTimeRangeException("Start time must be earlier than end time.")

        t = audit_events
        filt = json.dumps({"a": attrs, "s": start_s, "e": end_s, "c": category}, sort_keys=True, default=str)
        fhash = hashlib.sha256(filt.encode()).hexdigest()[:32]
        before = None
        if params.get("NextToken"):
            try:
                tok = read_token(self._token_key, params["NextToken"])
            except InvalidToken:
                raise InvalidNextTokenException("Invalid NextToken.") from None
            if tok.get("a") != ctx.account_id or tok.get("f") != fhash:
                raise InvalidNextTokenException("NextToken does not match the request's parameters.")
            before = int(tok["s"])
        if category == "insight":
            return {"Events": []}

        conds = [t.c.category == "Management"]
        if self.unattributed_account and ctx.account_id == self.unattributed_account:
            conds.append(sa.or_(t.c.account_id == ctx.account_id, t.c.account_id == ""))
        else:
            conds.append(t.c.account_id == ctx.account_id)
        if start_s is not None:
            conds.append(t.c.event_time >= int(start_s))
        if end_s is not None:
            conds.append(t.c.event_time <= end_s)
        if before is not None:
            conds.append(t.c.seq < before)
        for attr in attrs:
            conds.append(self._attribute(ctx, attr["AttributeKey"], attr["AttributeValue"]))

        if self.recorder is not None:
            self.recorder.flush(timeout=2.0)     # read your own writes (CloudTrail itself lags minutes)
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.c.seq, t.c.event_id, t.c.body_sealed).where(*conds)
                                .order_by(t.c.seq.desc()).limit(max_results + 1)).all()
        events = []
        for row in rows[:max_results]:
            try:
                record = json.loads(chain.open_event(self.keyring, row.event_id, row.body_sealed))["event"]
            except (CryptoError, ValueError, KeyError):
                log.warning("audit event %s does not open (damaged trail: run `lambdalet audit verify`)", row.seq)
                continue
            events.append(self._event(record))
        out: dict[str, Any] = {"Events": events}
        if len(rows) > max_results:
            out["NextToken"] = make_token(self._token_key, {"a": ctx.account_id, "f": fhash,
                                                            "s": rows[max_results - 1].seq}, TOKEN_TTL_S)
        return out

    def _attribute(self, ctx, key: str, value: str):
        t = audit_events
        if key not in _KEYS:
            raise InvalidLookupAttributesException(f"Invalid lookup attribute key: {key}")
        if key == "ReadOnly":
            if value not in ("true", "false"):
                raise InvalidLookupAttributesException("ReadOnly must be true or false.")
            return t.c.read_only == (value == "true")
        if key == "EventName":
            names = {value}
            if records.base_event_name(value) == value:
                names.add(records.event_name("lambda", value))
            return t.c.event_name.in_(sorted(names))
        if key == "ResourceName" and not value.startswith("arn:"):
            return sa.or_(t.c.resource_name == value,
                          t.c.resource_name == f"arn:aws:lambda:{ctx.region}:{ctx.account_id}:function:{value}")
        return getattr(t.c, _KEYS[key]) == value

    @staticmethod
    def _event(record: dict) -> dict:
        identity = record.get("userIdentity") or {}
        ev: dict[str, Any] = {
            "EventId": record.get("eventID", ""),
            "EventName": record.get("eventName", ""),
            "ReadOnly": "true" if record.get("readOnly") else "false",
            "EventTime": dt.datetime.fromtimestamp(records.parse_time(record["eventTime"]), dt.timezone.utc),
            "EventSource": record.get("eventSource", ""),
            "CloudTrailEvent": json.dumps(ordered(record), separators=(",", ":")),
        }
        if identity.get("accessKeyId"):
            ev["AccessKeyId"] = identity["accessKeyId"]
        username = records.lookup_username(identity)
        if username:
            ev["Username"] = username
        resources = [{"ResourceType": r.get("type", ""), "ResourceName": r.get("ARN", "")}
                     for r in record.get("resources") or []]
        if resources:
            ev["Resources"] = resources
        return ev
