"""The CloudWatch Logs API subset that `aws logs tail`, `aws logs get-log-events|filter-log-events|
describe-log-*` and boto3 (incl. the `describe_log_streams` / `filter_log_events` / `describe_log_groups`
paginators) use, over `LogStore`. Served as awsJson1_1 (targetPrefix Logs_20140328) by
`api.json_protocol.JsonProtocol`.

Implemented: DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents, CreateLogGroup,
DeleteLogGroup, PutRetentionPolicy, DeleteRetentionPolicy, CreateLogStream, DeleteLogStream.
Everything is per account (the caller's) and region (the SigV4 scope's). Input constraints of the
`logs` model (length, pattern, range, enum) are checked here and answered as AWS does
(InvalidParameterException "1 validation error detected: ...").

Tokens: DescribeLogGroups/DescribeLogStreams/FilterLogEvents' nextToken is opaque (base64url JSON of
a keyset position); GetLogEvents' are AWS-shaped `f/<56 digits>` / `b/<56 digits>` event ordinals,
and the token passed in comes back unchanged when there is nothing further that way.
"""
from __future__ import annotations

import base64
import functools
import json
import re
from typing import Any, Callable

from botocore.model import ServiceModel

from lambdalet.logs.errors import (
    GROUP_NOT_FOUND,
    STREAM_NOT_FOUND,
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from lambdalet.logs.patterns import compile_pattern
from lambdalet.logs.store import Event, Group, LogStore, Stream
from lambdalet.models.context import RequestContext

RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                  3288, 3653)
MAX_RESPONSE_BYTES = 1_048_576
_POS_TOKEN = re.compile(r"([fb])/(\d{1,56})")
_ARN = re.compile(r"arn:[a-z0-9-]+:logs:([a-z0-9-]*):(\d{12}):log-group:([^:]+)(?::\*)?")


@functools.lru_cache(maxsize=1)
def _model() -> ServiceModel:
    import botocore.session
    return botocore.session.get_session().get_service_model("logs")


def _validate(operation: str, params: dict) -> None:
    """The model's constraints on top-level members, with AWS's wording."""
    shape = _model().operation_model(operation).input_shape
    problems: list[str] = []
    for name, value in params.items():
        member = shape.members.get(name)
        if member is None or value is None:
            continue
        meta, t = member.metadata, member.type_name
        shown = value if not isinstance(value, list) else "[" + ", ".join(map(str, value)) + "]"
        prefix = f"Value '{shown}' at '{name}' failed to satisfy constraint: Member must"
        if t in ("string", "list", "map"):
            if "min" in meta and len(value) < meta["min"]:
                problems.append(f"{prefix} have length greater than or equal to {meta['min']}")
            if "max" in meta and len(value) > meta["max"]:
                problems.append(f"{prefix} have length less than or equal to {meta['max']}")
        if t == "string":
            if "pattern" in meta and not re.fullmatch(meta["pattern"], value, re.S):
                problems.append(f"{prefix} satisfy regular expression pattern: {meta['pattern']}")
            if member.enum and value not in member.enum:
                problems.append(f"{prefix} satisfy enum value set: [{', '.join(member.enum)}]")
        if t in ("integer", "long"):
            if "min" in meta and value < meta["min"]:
                problems.append(f"{prefix} have value greater than or equal to {meta['min']}")
            if "max" in meta and value > meta["max"]:
                problems.append(f"{prefix} have value less than or equal to {meta['max']}")
        if t == "list" and member.member.type_name == "string":
            for item in value:
                m = member.member.metadata
                if ("min" in m and len(item) < m["min"]) or ("max" in m and len(item) > m["max"]) or \
                        ("pattern" in m and not re.fullmatch(m["pattern"], item, re.S)):
                    problems.append(f"Value '{shown}' at '{name}' failed to satisfy constraint: Member must "
                                    f"satisfy constraint: [Member must satisfy regular expression pattern: "
                                    f"{m.get('pattern', '.*')}]")
                    break
    if problems:
        n = len(problems)
        raise InvalidParameterException(f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(problems))


def operation(name: str) -> Callable:
    def wrap(fn):
        @functools.wraps(fn)
        def method(self, ctx: RequestContext, params: dict) -> dict:
            _validate(name, params)
            return fn(self, ctx, params)
        return method
    return wrap


def _encode_token(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> dict:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(doc, dict) and doc.get("k") == kind:
            return doc
    except (ValueError, TypeError):
        pass
    raise InvalidParameterException("The specified nextToken is invalid.")


def _arn(region: str, account: str, group: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{group}"


class LogsService:
    def __init__(self, store: LogStore):
        self.store = store

    # ---------------------------------------------------------------- helpers
    def _group_name(self, ctx: RequestContext, params: dict) -> str:
        name, ident = params.get("logGroupName"), params.get("logGroupIdentifier")
        if name and ident:
            raise InvalidParameterException("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
        if not name and not ident:
            raise InvalidParameterException("Should provide either name or ARN of LogGroup.")
        if name:
            return name
        return self._name_of_identifier(ctx, ident)

    @staticmethod
    def _name_of_identifier(ctx: RequestContext, ident: str) -> str:
        if not ident.startswith("arn:"):
            return ident
        m = _ARN.fullmatch(ident)
        if m is None:
            raise InvalidParameterException(f"Invalid log group identifier: {ident}")
        region, account, name = m.groups()
        if account != ctx.account_id or (region and region != ctx.region):
            raise ResourceNotFoundException(GROUP_NOT_FOUND)   # no cross-account / cross-region access
        return name

    def _group(self, ctx: RequestContext, params: dict) -> Group:
        group = self.store.get_group(ctx.account_id, ctx.region, self._group_name(ctx, params))
        if group is None:
            raise ResourceNotFoundException(GROUP_NOT_FOUND)
        return group

    @staticmethod
    def _group_doc(g: Group) -> dict:
        arn = _arn(g.region, g.account_id, g.name)
        doc: dict[str, Any] = {"logGroupName": g.name, "creationTime": g.created_ms, "metricFilterCount": 0,
                               "arn": arn + ":*", "logGroupArn": arn, "storedBytes": g.stored_bytes,
                               "logGroupClass": "STANDARD"}
        if g.retention_days is not None:
            doc["retentionInDays"] = g.retention_days
        return doc

    @staticmethod
    def _stream_doc(g: Group, s: Stream) -> dict:
        doc: dict[str, Any] = {"logStreamName": s.name, "creationTime": s.created_ms,
                               "arn": f"{_arn(g.region, g.account_id, g.name)}:log-stream:{s.name}",
                               "storedBytes": 0}   # deprecated by AWS: always 0 there too
        if s.first_event_ms is not None:
            doc["firstEventTimestamp"] = s.first_event_ms
        if s.last_event_ms is not None:
            doc["lastEventTimestamp"] = s.last_event_ms
        if s.last_ingestion_ms is not None:
            doc["lastIngestionTime"] = s.last_ingestion_ms
        return doc

    # ---------------------------------------------------------------- groups
    @operation("DescribeLogGroups")
    def describe_log_groups(self, ctx: RequestContext, params: dict) -> dict:
        prefix, pattern = params.get("logGroupNamePrefix"), params.get("logGroupNamePattern")
        idents = params.get("logGroupIdentifiers")
        if prefix and pattern:
            raise InvalidParameterException(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.")
        if idents and (prefix or pattern):
            raise InvalidParameterException(
                "logGroupIdentifiers is mutually exclusive with logGroupNamePrefix and logGroupNamePattern.")
        names = None
        if idents:
            names = []
            for ident in idents:
                try:
                    names.append(self._name_of_identifier(ctx, ident))
                except ResourceNotFoundException:
                    pass
        limit = params.get("limit", 50)
        after = _decode_token(params["nextToken"], "g")["n"] if params.get("nextToken") else None
        groups = self.store.list_groups(ctx.account_id, ctx.region, prefix=prefix, contains=pattern or None,
                                        names=names, after=after, limit=limit + 1)
        out: dict[str, Any] = {"logGroups": [self._group_doc(g) for g in groups[:limit]]}
        if len(groups) > limit:
            out["nextToken"] = _encode_token({"k": "g", "n": groups[limit - 1].name})
        return out

    @operation("CreateLogGroup")
    def create_log_group(self, ctx: RequestContext, params: dict) -> dict:
        # kmsKeyId, tags and logGroupClass are accepted and not kept: every log is sealed with the
        # platform key regardless.
        if not self.store.create_group(ctx.account_id, ctx.region, params["logGroupName"]):
            raise ResourceAlreadyExistsException("The specified log group already exists")
        return {}

    @operation("DeleteLogGroup")
    def delete_log_group(self, ctx: RequestContext, params: dict) -> dict:
        if not self.store.delete_group(ctx.account_id, ctx.region, params["logGroupName"]):
            raise ResourceNotFoundException(GROUP_NOT_FOUND)
        return {}

    @operation("PutRetentionPolicy")
    def put_retention_policy(self, ctx: RequestContext, params: dict) -> dict:
        days = params["retentionInDays"]
        if days not in RETENTION_DAYS:
            raise InvalidParameterException(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]")
        if not self.store.set_retention(ctx.account_id, ctx.region, params["logGroupName"], days):
            raise ResourceNotFoundException(GROUP_NOT_FOUND)
        return {}

    @operation("DeleteRetentionPolicy")
    def delete_retention_policy(self, ctx: RequestContext, params: dict) -> dict:
        if not self.store.set_retention(ctx.account_id, ctx.region, params["logGroupName"], None):
            raise ResourceNotFoundException(GROUP_NOT_FOUND)
        return {}

    # ---------------------------------------------------------------- streams
    @operation("CreateLogStream")
    def create_log_stream(self, ctx: RequestContext, params: dict) -> dict:
        group = self._group(ctx, {"logGroupName": params["logGroupName"]})
        if not self.store.create_stream(group.id, params["logStreamName"]):
            raise ResourceAlreadyExistsException("The specified log stream already exists")
        return {}

    @operation("DeleteLogStream")
    def delete_log_stream(self, ctx: RequestContext, params: dict) -> dict:
        group = self._group(ctx, {"logGroupName": params["logGroupName"]})
        if not self.store.delete_stream(group.id, params["logStreamName"]):
            raise ResourceNotFoundException(STREAM_NOT_FOUND)
        return {}

    @operation("DescribeLogStreams")
    def describe_log_streams(self, ctx: RequestContext, params: dict) -> dict:
        order = params.get("orderBy") or "LogStreamName"
        prefix = params.get("logStreamNamePrefix")
        if order == "LastEventTime" and prefix:
            raise InvalidParameterException("Cannot order by LastEventTime with a logStreamNamePrefix.")
        group = self._group(ctx, params)
        descending = bool(params.get("descending"))
        limit = params.get("limit", 50)
        after = None
        if params.get("nextToken"):
            doc = _decode_token(params["nextToken"], "s")
            if doc.get("o") != order or doc.get("d") != descending or doc.get("g") != group.id:
                raise InvalidParameterException("The specified nextToken is invalid.")
            after = tuple(doc["a"])
        streams = self.store.list_streams(group.id, prefix=prefix, order_by=order, descending=descending,
                                          after=after, limit=limit + 1)
        out: dict[str, Any] = {"logStreams": [self._stream_doc(group, s) for s in streams[:limit]]}
        if len(streams) > limit:
            last = streams[limit - 1]
            pos = [last.name] if order == "LogStreamName" else [last.last_event_ms or 0, last.id]
            out["nextToken"] = _encode_token({"k": "s", "o": order, "d": descending, "g": group.id, "a": pos})
        return out

    # ---------------------------------------------------------------- events
    @operation("GetLogEvents")
    def get_log_events(self, ctx: RequestContext, params: dict) -> dict:
        group = self._group(ctx, params)
        stream = self.store.get_stream(group.id, params["logStreamName"])
        if stream is None:
            raise ResourceNotFoundException(STREAM_NOT_FOUND)
        limit = params.get("limit", 10_000)
        start, end = params.get("startTime"), params.get("endTime")
        token = params.get("nextToken")
        if token:
            m = _POS_TOKEN.fullmatch(token)
            if m is None:
                raise InvalidParameterException("The specified nextToken is invalid.")
            direction, pos = m.group(1), int(m.group(2))
        elif params.get("startFromHead"):
            direction, pos = "f", 0
        else:
            direction, pos = "b", stream.next_seq
        kw = dict(start_ms=start, end_ms=end, limit=limit, max_bytes=MAX_RESPONSE_BYTES)
        if start is not None and end is not None and start >= end:
            events: list[Event] = []
        elif direction == "f":
            events = self.store.read_forward(group, stream, pos, **kw)
        else:
            events = self.store.read_backward(group, stream, pos, **kw)
        if events:
            fwd, bwd = f"f/{events[-1].seq + 1:056d}", f"b/{events[0].seq:056d}"
        else:   # nothing further that way: the same token again (clients stop on it)
            fwd = token if token and direction == "f" else f"f/{pos:056d}"
            bwd = token if token and direction == "b" else f"b/{pos:056d}"
        return {"events": [{"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}
                           for e in events],
                "nextForwardToken": fwd, "nextBackwardToken": bwd}

    @operation("FilterLogEvents")
    def filter_log_events(self, ctx: RequestContext, params: dict) -> dict:
        names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
        if names and prefix:
            raise InvalidParameterException("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
        match = compile_pattern(params.get("filterPattern"))
        group = self._group(ctx, params)
        start, end = params.get("startTime"), params.get("endTime")
        after = None
        if params.get("nextToken"):
            doc = _decode_token(params["nextToken"], "f")
            try:
                if doc.get("g") != group.id:
                    raise ValueError
                after = tuple(int(x) for x in doc["p"])
                if len(after) != 3:
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise InvalidParameterException("The specified nextToken is invalid.") from None
        if start is not None and end is not None and start > end:
            events, nxt = [], None
        else:
            events, nxt = self.store.filter_events(group, stream_names=names, stream_prefix=prefix, start_ms=start,
                                                   end_ms=end, after=after, match=match,
                                                   limit=params.get("limit", 10_000), max_bytes=MAX_RESPONSE_BYTES)
        out: dict[str, Any] = {
            "events": [{"logStreamName": e.stream_name, "timestamp": e.timestamp, "message": e.message,
                        "ingestionTime": e.ingestion_time, "eventId": e.event_id} for e in events],
            "searchedLogStreams": []}   # deprecated by AWS, which also answers an empty list
        if nxt is not None:
            out["nextToken"] = _encode_token({"k": "f", "g": group.id, "p": list(nxt)})
        return out
