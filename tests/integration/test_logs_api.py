"""Function logs, end to end: invoke a real function on `lambdalet serve`, then read its output back
through the CloudWatch Logs API with boto3's `logs` client — the calls `aws logs tail` (awscli v2) and
the boto3 paginators make. Needs the server wiring (the `logs` binding and the invoker's log sink).

As root the shared session `server` (namespace sandbox) is used; otherwise a server of this module's
own with `--sandbox process`.
"""
from __future__ import annotations

import os
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, make_zip, unique

FLUSH_WAIT_S = 10        # the sink flushes within ~200 ms of a REPORT line; generous for slow CI
CODE = """\
import sys

def handler(event, context):
    print("LOGMARK-" + event["m"])
    print("stderr " + event["m"], file=sys.stderr)
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def invoked(srv):
    """One function, invoked twice; yields (name, [(marker, request_id)])."""
    lam = srv.client("lambda")
    name = unique("logs")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": CODE})})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    calls = []
    for _ in range(2):
        marker = uuid.uuid4().hex
        resp = lam.invoke(FunctionName=name, Payload=f'{{"m": "{marker}"}}'.encode())
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, resp["Payload"].read()
        calls.append((marker, resp["ResponseMetadata"]["RequestId"]))
    yield name, calls
    delete_quietly(lam, name)
    try:
        srv.client("logs").delete_log_group(logGroupName=f"/aws/lambda/{name}")
    except ClientError:
        pass


def _wait_for(fn, what: str):
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        try:
            got = fn()
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException" or time.monotonic() > deadline:
                raise
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not appear within {FLUSH_WAIT_S}s")
        time.sleep(0.2)


def test_invocation_output_is_readable_through_the_logs_api(srv, invoked):
    name, calls = invoked
    logs = srv.client("logs")
    group = f"/aws/lambda/{name}"
    last_marker, last_rid = calls[-1]

    # what `aws logs tail GROUP --since 10m` does: filter_log_events, interleaved, paginated
    def tail():
        start = int((time.time() - 600) * 1000)
        events = [e for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, interleaved=True, startTime=start) for e in page["events"]]
        return events if any(f"REPORT RequestId: {last_rid}" in e["message"] for e in events) else None

    events = _wait_for(tail, "the second invocation's REPORT line")
    messages = [e["message"] for e in events]
    for marker, rid in calls:
        mine = [m for m in messages if rid in m or marker in m]
        kinds = [m.split(" ")[0] for m in mine]
        assert kinds[0] == "START" and kinds[-2:] == ["END", "REPORT"], mine
        assert f"LOGMARK-{marker}\n" in mine and f"stderr {marker}\n" in mine
        assert mine[0].startswith(f"START RequestId: {rid} Version: $LATEST")
        assert re.match(rf"REPORT RequestId: {rid}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t", mine[-1])
    assert all(e["logStreamName"] and e["eventId"] for e in events)
    assert len({e["eventId"] for e in events}) == len(events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)

    # the group exists, named as AWS names it
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in described] == [group]

    # one stream per environment: YYYY/MM/DD/[$LATEST]<hex>
    streams = [s for page in logs.get_paginator("describe_log_streams").paginate(
        logGroupName=group, orderBy="LastEventTime", descending=True) for s in page["logStreams"]]
    assert streams and all(re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]+", s["logStreamName"])
                           for s in streams)
    newest = streams[0]
    assert newest["lastEventTimestamp"] >= newest["firstEventTimestamp"]

    # get_log_events on the environment's stream, from the head, START..REPORT in order
    stream = next(e["logStreamName"] for e in events if last_marker in e["message"])
    got = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    in_stream = [e["message"] for e in got["events"]]
    i = in_stream.index(f"LOGMARK-{last_marker}\n")
    assert in_stream[i - 1].startswith(f"START RequestId: {last_rid}")
    assert any(m.startswith(f"END RequestId: {last_rid}") for m in in_stream[i:])
    again = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=got["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == got["nextForwardToken"]

    # a filter pattern finds exactly the marked line
    hits = [e for page in logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, filterPattern=f'"LOGMARK-{last_marker}"') for e in page["events"]]
    assert [e["message"] for e in hits] == [f"LOGMARK-{last_marker}\n"]
    either = logs.filter_log_events(logGroupName=group,
                                    filterPattern=" ".join(f"?LOGMARK-{m}" for m, _ in calls))["events"]
    assert len(either) == 2


def test_logs_are_sealed_at_rest(srv, invoked):
    name, calls = invoked
    logs = srv.client("logs")
    marker = calls[0][0]
    _wait_for(lambda: logs.filter_log_events(logGroupName=f"/aws/lambda/{name}",
                                             filterPattern=f'"LOGMARK-{marker}"')["events"], "the marker")
    needle = marker.encode()
    for root, _dirs, files in os.walk(srv.data_dir):
        for f in files:
            path = os.path.join(root, f)
            try:
                with open(path, "rb") as fh:
                    assert needle not in fh.read(), f"log text in plain at rest: {path}"
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                pass


def test_other_accounts_and_regions_see_nothing(srv, invoked):
    name, _ = invoked
    logs = srv.client("logs", region_name="eu-central-1" if srv.region != "eu-central-1" else "us-west-2")
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as ei:
        logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")
    assert ei.value.response["Error"]["Message"] == "The specified log group does not exist."
