"""logs/service.py called directly: AWS's validation and errors, tokens, ordering, filter patterns,
per-account/region isolation."""
from __future__ import annotations

import os

import pytest

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.logs import LogsService, LogStore
from lambdalet.logs.errors import (
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from lambdalet.logs.patterns import compile_pattern
from lambdalet.models.context import Caller, RequestContext

from .logs_support import Clock, make_db

ACCOUNT, OTHER = "111122223333", "444455556666"
GROUP = "/aws/lambda/fn"


def ctx(account=ACCOUNT, region="us-east-1"):
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/u", "AKID"), region, "rid", "https://x")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    db = make_db(f"sqlite:///{tmp_path / 'state.db'}")
    s = LogStore(db, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), clock=clock, background=False)
    yield s
    s.close()
    db.close()


@pytest.fixture
def svc(store):
    return LogsService(store)


def write(store, clock, stream, lines, group=GROUP, account=ACCOUNT, region="us-east-1", step=0.01):
    sink = store.sink(account, region, group, stream)
    for line in lines:
        sink((line + "\n").encode())
        clock.t += step
    store.flush()


# ---------------------------------------------------------------- patterns

@pytest.mark.parametrize("pattern,message,expected", [
    ("", "anything", True),
    ("ERROR", "[ERROR] boom", True),
    ("ERROR", "[error] boom", False),                     # case-sensitive
    ("ERROR boom", "[ERROR] boom", True),
    ("ERROR bang", "[ERROR] boom", False),                # AND
    ('"Task timed out"', "x Task timed out after 3.00 seconds", True),
    ('"Task timed out"', "Task was timed out", False),
    ("?ERROR ?WARN", "WARN disk", True),
    ("?ERROR ?WARN", "INFO disk", False),
    ("ERROR -health", "ERROR in healthcheck", False),
    ("ERROR -health", "ERROR in handler", True),
    ('"say \\"hi\\""', 'they say "hi" here', True),
    ('""', "x", True),
])
def test_text_patterns(pattern, message, expected):
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize("pattern", ['{ $.level = "ERROR" }', "[ip, user]", "%ERR.*%", '"unterminated', 'a"b'])
def test_unsupported_or_malformed_patterns(pattern):
    with pytest.raises(InvalidParameterException):
        compile_pattern(pattern)


# ---------------------------------------------------------------- groups

def test_groups_create_describe_page_delete(svc):
    for name in ("/aws/lambda/a", "/aws/lambda/b", "/aws/lambda/c", "/other/x"):
        svc.create_log_group(ctx(), {"logGroupName": name})
    with pytest.raises(ResourceAlreadyExistsException):
        svc.create_log_group(ctx(), {"logGroupName": "/aws/lambda/a"})
    page = svc.describe_log_groups(ctx(), {"logGroupNamePrefix": "/aws/lambda/", "limit": 2})
    assert [g["logGroupName"] for g in page["logGroups"]] == ["/aws/lambda/a", "/aws/lambda/b"]
    g = page["logGroups"][0]
    assert g["arn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/a:*"
    assert g["logGroupArn"] == g["arn"][:-2] and "retentionInDays" not in g
    page2 = svc.describe_log_groups(ctx(), {"logGroupNamePrefix": "/aws/lambda/", "limit": 2,
                                            "nextToken": page["nextToken"]})
    assert [g["logGroupName"] for g in page2["logGroups"]] == ["/aws/lambda/c"] and "nextToken" not in page2
    assert [g["logGroupName"] for g in svc.describe_log_groups(ctx(), {"logGroupNamePattern": "her"})["logGroups"]] \
        == ["/other/x"]
    assert svc.describe_log_groups(ctx(), {"logGroupNamePattern": "HER"})["logGroups"] == []
    svc.put_retention_policy(ctx(), {"logGroupName": "/other/x", "retentionInDays": 7})
    assert svc.describe_log_groups(ctx(), {"logGroupNamePrefix": "/other"})["logGroups"][0]["retentionInDays"] == 7
    svc.delete_retention_policy(ctx(), {"logGroupName": "/other/x"})
    assert "retentionInDays" not in svc.describe_log_groups(ctx(), {"logGroupNamePrefix": "/other"})["logGroups"][0]
    svc.delete_log_group(ctx(), {"logGroupName": "/other/x"})
    with pytest.raises(ResourceNotFoundException) as ei:
        svc.delete_log_group(ctx(), {"logGroupName": "/other/x"})
    assert ei.value.message == "The specified log group does not exist." and ei.value.status == 400


def test_groups_are_per_account_and_region(svc, store, clock):
    write(store, clock, "s", ["mine"])
    assert svc.describe_log_groups(ctx(OTHER), {})["logGroups"] == []
    assert svc.describe_log_groups(ctx(region="eu-west-1"), {})["logGroups"] == []
    with pytest.raises(ResourceNotFoundException):
        svc.filter_log_events(ctx(OTHER), {"logGroupName": GROUP})
    with pytest.raises(ResourceNotFoundException):    # an ARN naming another account
        svc.filter_log_events(ctx(OTHER), {"logGroupIdentifier": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{GROUP}"})
    got = svc.filter_log_events(ctx(), {"logGroupIdentifier": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{GROUP}"})
    assert [e["message"] for e in got["events"]] == ["mine\n"]


@pytest.mark.parametrize("op,params,fragment", [
    ("describe_log_groups", {"limit": 51}, "less than or equal to 50"),
    ("describe_log_groups", {"limit": 0}, "greater than or equal to 1"),
    ("describe_log_groups", {"logGroupNamePrefix": "a", "logGroupNamePattern": "b"}, "mutually exclusive"),
    ("create_log_group", {"logGroupName": "has space"}, "regular expression pattern"),
    ("get_log_events", {"logGroupName": GROUP, "logStreamName": "s", "limit": 10_001}, "less than or equal to 10000"),
    ("describe_log_streams", {}, "either name or ARN"),
    ("describe_log_streams", {"logGroupName": GROUP, "logGroupIdentifier": GROUP}, "mutually exclusive"),
    ("describe_log_streams", {"logGroupName": GROUP, "orderBy": "LastEventTime", "logStreamNamePrefix": "a"},
     "Cannot order by LastEventTime"),
    ("describe_log_streams", {"logGroupName": GROUP, "orderBy": "Nope"}, "enum value set"),
    ("filter_log_events", {"logGroupName": GROUP, "logStreamNames": ["a"], "logStreamNamePrefix": "a"},
     "mutually exclusive"),
    ("filter_log_events", {"logGroupName": GROUP, "filterPattern": "{ $.x = 1 }"}, "text filter patterns"),
    ("put_retention_policy", {"logGroupName": GROUP, "retentionInDays": 2}, "enum value set"),
])
def test_invalid_parameters(svc, store, clock, op, params, fragment):
    write(store, clock, "s", ["x"])
    with pytest.raises(InvalidParameterException) as ei:
        getattr(svc, op)(ctx(), params)
    assert fragment in ei.value.message
    assert ei.value.code == "InvalidParameterException" and ei.value.status == 400


@pytest.mark.parametrize("token", ["garbage", "f/", "x/123", "b/12a"])
def test_bad_tokens(svc, store, clock, token):
    write(store, clock, "s", ["x"])
    with pytest.raises(InvalidParameterException):
        svc.get_log_events(ctx(), {"logGroupName": GROUP, "logStreamName": "s", "nextToken": token})
    with pytest.raises(InvalidParameterException):
        svc.filter_log_events(ctx(), {"logGroupName": GROUP, "nextToken": token})
    with pytest.raises(InvalidParameterException):
        svc.describe_log_streams(ctx(), {"logGroupName": GROUP, "nextToken": token})


# ---------------------------------------------------------------- streams

def test_describe_streams_orders_and_pages(svc, store, clock):
    for name in ("2024/01/01/[1]c", "2024/01/01/[1]a", "2024/01/02/[1]b"):
        write(store, clock, name, [f"in {name}"])
        clock.t += 1
    write(store, clock, "2024/01/01/[1]a", ["again"])     # now the most recent
    by_name = svc.describe_log_streams(ctx(), {"logGroupName": GROUP})["logStreams"]
    assert [s["logStreamName"] for s in by_name] == ["2024/01/01/[1]a", "2024/01/01/[1]c", "2024/01/02/[1]b"]
    s = by_name[0]
    assert s["arn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{GROUP}:log-stream:2024/01/01/[1]a"
    assert s["firstEventTimestamp"] <= s["lastEventTimestamp"] <= s["lastIngestionTime"]
    latest = svc.describe_log_streams(ctx(), {"logGroupName": GROUP, "orderBy": "LastEventTime",
                                              "descending": True, "limit": 1})
    assert latest["logStreams"][0]["logStreamName"] == "2024/01/01/[1]a"
    names = [latest["logStreams"][0]["logStreamName"]]
    token = latest["nextToken"]
    while token:
        page = svc.describe_log_streams(ctx(), {"logGroupName": GROUP, "orderBy": "LastEventTime",
                                                "descending": True, "limit": 1, "nextToken": token})
        names += [x["logStreamName"] for x in page["logStreams"]]
        token = page.get("nextToken")
    assert names == ["2024/01/01/[1]a", "2024/01/02/[1]b", "2024/01/01/[1]c"]
    prefixed = svc.describe_log_streams(ctx(), {"logGroupName": GROUP, "logStreamNamePrefix": "2024/01/01/",
                                                "descending": True})
    assert [x["logStreamName"] for x in prefixed["logStreams"]] == ["2024/01/01/[1]c", "2024/01/01/[1]a"]
    with pytest.raises(InvalidParameterException):       # a token of another ordering
        svc.describe_log_streams(ctx(), {"logGroupName": GROUP, "nextToken": token or latest["nextToken"]})
    with pytest.raises(ResourceNotFoundException):
        svc.describe_log_streams(ctx(), {"logGroupName": "/aws/lambda/none"})


def test_create_and_delete_stream(svc):
    with pytest.raises(ResourceNotFoundException):
        svc.create_log_stream(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    svc.create_log_group(ctx(), {"logGroupName": GROUP})
    svc.create_log_stream(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    with pytest.raises(ResourceAlreadyExistsException):
        svc.create_log_stream(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    got = svc.get_log_events(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    assert got["events"] == [] and got["nextForwardToken"].startswith("f/") and got["nextBackwardToken"].startswith("b/")
    svc.delete_log_stream(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    with pytest.raises(ResourceNotFoundException) as ei:
        svc.get_log_events(ctx(), {"logGroupName": GROUP, "logStreamName": "s"})
    assert ei.value.message == "The specified log stream does not exist."


# ---------------------------------------------------------------- events

def test_get_log_events_tokens_like_aws(svc, store, clock):
    write(store, clock, "s", [f"line {i}" for i in range(7)])
    base = {"logGroupName": GROUP, "logStreamName": "s"}
    # from the head, pages of 3, until the same forward token comes back
    seen, token, pages = [], None, 0
    while True:
        resp = svc.get_log_events(ctx(), {**base, "startFromHead": True, "limit": 3,
                                          **({"nextToken": token} if token else {})})
        pages += 1
        seen += [e["message"] for e in resp["events"]]
        if resp["nextForwardToken"] == token:
            break
        token = resp["nextForwardToken"]
    assert seen == [f"line {i}\n" for i in range(7)] and pages == 4
    assert resp["events"] == []
    # default: the newest events; then backwards until the same backward token comes back
    resp = svc.get_log_events(ctx(), {**base, "limit": 3})
    assert [e["message"] for e in resp["events"]] == ["line 4\n", "line 5\n", "line 6\n"]
    older, token = [], resp["nextBackwardToken"]
    while True:
        r = svc.get_log_events(ctx(), {**base, "limit": 3, "nextToken": token})
        older = [e["message"] for e in r["events"]] + older
        if r["nextBackwardToken"] == token:
            break
        token = r["nextBackwardToken"]
    assert older == [f"line {i}\n" for i in range(4)]
    # the forward token of the newest page waits for new events
    fwd = resp["nextForwardToken"]
    assert svc.get_log_events(ctx(), {**base, "nextToken": fwd})["events"] == []
    write(store, clock, "s", ["line 7"])
    assert [e["message"] for e in svc.get_log_events(ctx(), {**base, "nextToken": fwd})["events"]] == ["line 7\n"]
    ev = resp["events"][0]
    assert set(ev) == {"timestamp", "message", "ingestionTime"} and ev["ingestionTime"] >= ev["timestamp"]


def test_get_log_events_time_range_end_exclusive(svc, store, clock):
    t0 = int(clock.t * 1000)
    write(store, clock, "s", ["a", "b", "c"], step=1)
    resp = svc.get_log_events(ctx(), {"logGroupName": GROUP, "logStreamName": "s", "startTime": t0 + 1000,
                                      "endTime": t0 + 2000, "startFromHead": True})
    assert [e["message"] for e in resp["events"]] == ["b\n"]


def test_filter_log_events_pattern_paging_and_shape(svc, store, clock):
    write(store, clock, "s1", ["START RequestId: 1", "MARK alpha", "ERROR boom", "END RequestId: 1"])
    write(store, clock, "s2", ["START RequestId: 2", "MARK beta", "WARN slow", "END RequestId: 2"])
    every = svc.filter_log_events(ctx(), {"logGroupName": GROUP})
    assert len(every["events"]) == 8 and "nextToken" not in every and every["searchedLogStreams"] == []
    e = every["events"][0]
    assert set(e) == {"logStreamName", "timestamp", "message", "ingestionTime", "eventId"}
    assert [x["timestamp"] for x in every["events"]] == sorted(x["timestamp"] for x in every["events"])
    marks = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "filterPattern": "MARK"})["events"]
    assert [(x["logStreamName"], x["message"]) for x in marks] == [("s1", "MARK alpha\n"), ("s2", "MARK beta\n")]
    either = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "filterPattern": "?ERROR ?WARN"})["events"]
    assert [x["message"] for x in either] == ["ERROR boom\n", "WARN slow\n"]
    phrase = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "filterPattern": '"RequestId: 2"'})["events"]
    assert [x["message"] for x in phrase] == ["START RequestId: 2\n", "END RequestId: 2\n"]
    only = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "logStreamNames": ["s2"]})["events"]
    assert {x["logStreamName"] for x in only} == {"s2"}
    pre = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "logStreamNamePrefix": "s1"})["events"]
    assert {x["logStreamName"] for x in pre} == {"s1"}
    ids, token = [], None
    while True:
        page = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "limit": 3, **({"nextToken": token} if token else {})})
        ids += [x["eventId"] for x in page["events"]]
        token = page.get("nextToken")
        if not token:
            break
    assert ids == [x["eventId"] for x in every["events"]]
    svc.create_log_group(ctx(), {"logGroupName": "/other"})
    first = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "limit": 1})
    with pytest.raises(InvalidParameterException):       # a token of another group
        svc.filter_log_events(ctx(), {"logGroupName": "/other", "nextToken": first["nextToken"]})
    t = every["events"][2]["timestamp"]
    ranged = svc.filter_log_events(ctx(), {"logGroupName": GROUP, "startTime": t, "endTime": t})["events"]
    assert [x["timestamp"] for x in ranged] == [t]
