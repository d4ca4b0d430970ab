"""boto3 (and awscli v1) against the `logs` binding served in-process: api/app.py (SigV4, routing) +
JsonProtocol (awsJson1_1, Logs_20140328) + LogsService over real HTTP on loopback — the same binding
server/run.py should add, minus TLS."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config

from lambdalet.api.app import ApiApp, ServiceBinding
from lambdalet.api.json_protocol import JsonProtocol
from lambdalet.api.protocol import load_service_model
from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.logs import LogsService, LogStore
from lambdalet.models.context import Caller

from inprocess import serving
from unit.logs_support import make_db

ACCOUNT = "000000000000"
AKID, SECRET = "AKIDLOGSTEST00000001", "logs-test-secret-key-0123456789abcdefghijk"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("logs-api")
    db = make_db(f"sqlite:///{data / 'state.db'}")
    store = LogStore(db, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()))
    caller = Caller(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/admin", AKID, "AIDALOGSTEST")
    app = ApiApp({"logs": ServiceBinding(JsonProtocol(load_service_model("logs")), LogsService(store))},
                 lambda akid, token=None: (caller, SECRET) if akid == AKID else None)
    with serving(app.asgi) as url:
        yield url, store
    store.close()
    db.close()


@pytest.fixture(scope="module")
def logs(env):
    return boto3.session.Session().client(
        "logs", endpoint_url=env[0], region_name=REGION, aws_access_key_id=AKID, aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1}))


def _invocation(sink, rid: str, lines: list[str]) -> None:
    sink(f"START RequestId: {rid} Version: $LATEST\n".encode())
    for line in lines:
        sink((line + "\n").encode())
    sink(f"END RequestId: {rid}\nREPORT RequestId: {rid}\tDuration: 1.00 ms\tBilled Duration: 1 ms\t\n".encode())


@pytest.fixture(scope="module")
def function_logs(env):
    """Two environments of one function, as the invoker's sinks would write them."""
    store = env[1]
    group = "/aws/lambda/api-fn"
    streams = ["2024/05/01/[$LATEST]" + os.urandom(16).hex() for _ in range(2)]
    for i in range(60):
        _invocation(store.sink(ACCOUNT, REGION, group, streams[i % 2]), f"req-{i}", [f"MARKER-{i} hello"])
    store.flush()
    return group, streams


def test_paginators_and_reads(logs, function_logs):
    group, streams = function_logs
    groups = [g["logGroupName"] for p in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix="/aws/lambda/", PaginationConfig={"PageSize": 1}) for g in p["logGroups"]]
    assert group in groups
    got = [s["logStreamName"] for p in logs.get_paginator("describe_log_streams").paginate(
        logGroupName=group, orderBy="LastEventTime", descending=True, PaginationConfig={"PageSize": 1})
        for s in p["logStreams"]]
    assert sorted(got) == sorted(streams)
    events = [e for p in logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, interleaved=True, PaginationConfig={"PageSize": 7}) for e in p["events"]]
    assert len(events) == 60 * 4
    assert len({e["eventId"] for e in events}) == len(events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    marked = [e for p in logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, filterPattern='"MARKER-7 "') for e in p["events"]]
    assert [e["message"] for e in marked] == ["MARKER-7 hello\n"]
    resp = logs.get_log_events(logGroupName=group, logStreamName=streams[0], startFromHead=True, limit=4)
    assert [e["message"].split(" ")[0] for e in resp["events"]] == ["START", "MARKER-0", "END", "REPORT"]
    assert resp["nextForwardToken"].startswith("f/") and resp["nextBackwardToken"].startswith("b/")


def test_typed_errors(logs):
    with pytest.raises(logs.exceptions.ResourceNotFoundException) as ei:
        logs.filter_log_events(logGroupName="/aws/lambda/does-not-exist")
    err = ei.value.response
    assert err["Error"]["Message"] == "The specified log group does not exist."
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.describe_log_groups(limit=51)
    logs.create_log_group(logGroupName="/api/dup")
    with pytest.raises(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="/api/dup")
    logs.put_retention_policy(logGroupName="/api/dup", retentionInDays=30)
    assert logs.describe_log_groups(logGroupNamePrefix="/api/dup")["logGroups"][0]["retentionInDays"] == 30
    logs.delete_log_group(logGroupName="/api/dup")


def test_awscli_v1(env, function_logs):
    group, streams = function_logs
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cli_env.update(AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PAGER="")

    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", env[0], "logs", *args],
                             env=cli_env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    out = cli("filter-log-events", "--log-group-name", group, "--filter-pattern", "MARKER-11",
              "--page-size", "5")
    assert [e["message"] for e in out["events"]] == ["MARKER-11 hello\n"]
    out = cli("get-log-events", "--log-group-name", group, "--log-stream-name", streams[1], "--start-from-head")
    assert out["events"][1]["message"] == "MARKER-1 hello\n"
    out = cli("describe-log-streams", "--log-group-name", group)
    assert sorted(s["logStreamName"] for s in out["logStreams"]) == sorted(streams)
