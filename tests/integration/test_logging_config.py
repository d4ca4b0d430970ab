"""LoggingConfig applied, as AWS documents it ("Configuring Lambda function logging"), through a real
server with boto3's `lambda` and `logs` clients:

- LogFormat=JSON: the Python runtime's `logging` records are JSON ({"timestamp", "level", "message",
  "logger", "requestId"} plus `extra=` keys), print() stays a plain line, and the platform's lines are
  `platform.start` / `platform.report` records (metrics, initDurationMs on a cold start);
- ApplicationLogLevel / SystemLogLevel filter (AWS_LAMBDA_LOG_LEVEL; platform records are INFO);
- levels without LogFormat=JSON are refused;
- a custom LogGroup receives the function's logs (created on first use) and the context names it;
- the Node.js runtime's console methods follow the same variables.
"""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from .e2e_support import ROLE, WAIT, delete_quietly, make_zip, unique

FLUSH_WAIT_S = 10

PY_CODE = """\
import logging

log = logging.getLogger()

def handler(event, context):
    m = event["m"]
    log.debug("debug-" + m)
    log.info("info-" + m)
    log.warning("warn-" + m, extra={"order": 42})
    logging.getLogger("app.db").error({"what": "dict-" + m})
    print("print-" + m)
    return {"group": context.log_group_name}
"""

NODE_CODE = """\
exports.handler = async (event, context) => {
  const m = event.m;
  console.debug("debug-" + m);
  console.log("log-" + m);
  console.info("info-%s", m);
  console.warn("warn-" + m);
  return { group: context.logGroupName };
};
"""


def _create(lam, name, runtime="python3.11", code=PY_CODE, handler="app.handler", filename="app.py", **kw):
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                        Code={"ZipFile": make_zip({filename: code})}, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def _invoke(lam, name, marker):
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"m": marker}).encode(), LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, resp["Payload"].read()
    return (json.loads(resp["Payload"].read()), resp["ResponseMetadata"]["RequestId"],
            base64.b64decode(resp["LogResult"]).decode().splitlines())


def _records(lines):
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _group_events(srv, group, until):
    """Every event of the group, once `until(messages)` holds (the flusher writes within ~200 ms)."""
    logs = srv.client("logs")
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        try:
            events = [e for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group)
                      for e in page["events"]]
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            events = []
        messages = [e["message"] for e in events]
        if until(messages):
            return messages
        if time.monotonic() > deadline:
            pytest.fail(f"{group}: expected events did not appear within {FLUSH_WAIT_S}s: {messages[-10:]}")
        time.sleep(0.2)


@pytest.fixture
def cleanup(server):
    names, groups = [], []
    yield names, groups
    lam, logs = server.client("lambda"), server.client("logs")
    for n in names:
        delete_quietly(lam, n)
        groups.append(f"/aws/lambda/{n}")
    for g in groups:
        try:
            logs.delete_log_group(logGroupName=g)
        except ClientError:
            pass


@pytest.mark.parametrize("runtime", ["python3.11", "python3.12"])   # forked from init / exec'd interpreter
def test_json_format_application_and_platform_records(server, cleanup, runtime):
    lam = server.client("lambda")
    name = unique("jsonlog")
    cleanup[0].append(name)
    _create(lam, name, runtime=runtime, LoggingConfig={"LogFormat": "JSON"})
    cfg = lam.get_function_configuration(FunctionName=name)["LoggingConfig"]
    assert cfg == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                   "LogGroup": f"/aws/lambda/{name}"}

    marker = uuid.uuid4().hex[:12]
    _, rid, tail = _invoke(lam, name, marker)
    recs = _records(tail)
    by_msg = {json.dumps(r.get("message")): r for r in recs if "level" in r}

    info = by_msg[json.dumps(f"info-{marker}")]
    assert set(info) == {"timestamp", "level", "message", "logger", "requestId"}
    assert info["level"] == "INFO" and info["logger"] == "root" and info["requestId"] == rid
    assert info["timestamp"].endswith("Z") and "T" in info["timestamp"]
    warn = by_msg[json.dumps(f"warn-{marker}")]
    assert warn["level"] == "WARNING" and warn["order"] == 42           # extra= keys ride along
    err = by_msg[json.dumps({"what": f"dict-{marker}"})]                 # a dict stays an object
    assert err["level"] == "ERROR" and err["logger"] == "app.db"
    assert json.dumps(f"debug-{marker}") not in by_msg                    # below the default INFO
    assert f"print-{marker}" in tail                                      # print() stays plain text

    start = [r for r in recs if r.get("type") == "platform.start"]
    report = [r for r in recs if r.get("type") == "platform.report"]
    assert start and start[0]["record"] == {"requestId": rid, "version": "$LATEST"}
    rec = report[0]["record"]
    assert rec["requestId"] == rid and rec["status"] == "success"
    metrics = rec["metrics"]
    assert set(metrics) == {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"}
    assert metrics["memorySizeMB"] == 128 and metrics["billedDurationMs"] >= metrics["durationMs"] > 0
    assert not any(line.startswith(("START RequestId", "END RequestId", "REPORT RequestId")) for line in tail)

    # warm: no initDurationMs; and the same records reach CloudWatch Logs
    _, rid2, tail2 = _invoke(lam, name, marker + "w")
    rep2 = next(r for r in _records(tail2) if r.get("type") == "platform.report")
    assert "initDurationMs" not in rep2["record"]["metrics"]
    messages = _group_events(server, f"/aws/lambda/{name}",
                             lambda ms: any(rid2 in m and "platform.report" in m for m in ms))
    stored = _records(messages)
    assert any(r.get("type") == "platform.start" and r["record"]["requestId"] == rid for r in stored)
    assert any(r.get("message") == f"info-{marker}" and r.get("requestId") == rid for r in stored)
    assert f"print-{marker}\n" in messages


def test_log_levels_filter_application_and_system_logs(server, cleanup):
    lam = server.client("lambda")
    name = unique("levels")
    cleanup[0].append(name)
    _create(lam, name, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "WARN"})
    marker = uuid.uuid4().hex[:12]
    _, rid, tail = _invoke(lam, name, marker)
    recs = _records(tail)
    messages = [r.get("message") for r in recs]
    assert f"warn-{marker}" in messages and {"what": f"dict-{marker}"} in messages
    assert f"info-{marker}" not in messages and f"debug-{marker}" not in messages
    assert not [r for r in recs if "type" in r], recs                    # platform records are INFO
    assert f"print-{marker}" in tail

    # DEBUG: everything the function logs; the new level applies to new environments (new revision)
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"ApplicationLogLevel": "DEBUG",
                                                                        "SystemLogLevel": "DEBUG"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    _, rid, tail = _invoke(lam, name, marker + "d")
    recs = _records(tail)
    texts = {r["message"] for r in recs if isinstance(r.get("message"), str)}
    assert {f"debug-{marker}d", f"info-{marker}d", f"warn-{marker}d"} <= texts
    assert {"platform.start", "platform.report"} <= {r.get("type") for r in recs}


def test_text_format_is_unchanged_and_levels_require_json(server, cleanup):
    lam = server.client("lambda")
    name = unique("textlog")
    cleanup[0].append(name)
    for bad in ({"ApplicationLogLevel": "DEBUG"}, {"LogFormat": "Text", "SystemLogLevel": "WARN"}):
        with pytest.raises(ClientError) as e:
            _create(lam, name, LoggingConfig=bad)
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException", bad
    _create(lam, name)
    marker = uuid.uuid4().hex[:12]
    _, rid, tail = _invoke(lam, name, marker)
    assert tail[0].startswith(f"START RequestId: {rid} Version: $LATEST")
    assert tail[-2] == f"END RequestId: {rid}" and tail[-1].startswith(f"REPORT RequestId: {rid}\t")
    warn = [line for line in tail if f"warn-{marker}" in line]
    assert len(warn) == 1 and warn[0].startswith("[WARNING]\t") and warn[0].split("\t")[2] == rid
    assert not any(f"info-{marker}" in line for line in tail)             # the root logger stays at WARNING
    assert "" not in tail[1:-2]                                            # one line per record, no blank ones
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName=name, LoggingConfig={"ApplicationLogLevel": "INFO"})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_custom_log_group_receives_the_logs(server, cleanup):
    lam = server.client("lambda")
    name = unique("customgrp")
    group = f"/custom/{name}"
    cleanup[0].append(name)
    cleanup[1].append(group)
    _create(lam, name, LoggingConfig={"LogFormat": "Text", "LogGroup": group})
    marker = uuid.uuid4().hex[:12]
    body, rid, _ = _invoke(lam, name, marker)
    assert body == {"group": group}                                        # AWS_LAMBDA_LOG_GROUP_NAME
    messages = _group_events(server, group, lambda ms: any(m.startswith(f"REPORT RequestId: {rid}") for m in ms))
    assert f"print-{marker}\n" in messages
    logs = server.client("logs")
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]] == [group]
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"] == []


def test_node_console_json_at_level(server, cleanup):
    lam = server.client("lambda")
    name = unique("nodejson")
    cleanup[0].append(name)
    try:
        _create(lam, name, runtime="nodejs22.x", code=NODE_CODE, handler="index.handler", filename="index.js",
                LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"})
    except ClientError as e:
        if "not available on this lambdalet host" in str(e):
            pytest.skip("no Node.js 22 on this host")
        raise
    marker = uuid.uuid4().hex[:12]
    body, rid, tail = _invoke(lam, name, marker)
    assert body == {"group": f"/aws/lambda/{name}"}
    recs = {r["message"]: r for r in _records(tail) if "level" in r}
    assert recs[f"log-{marker}"]["level"] == "INFO" and recs[f"log-{marker}"]["requestId"] == rid
    assert recs[f"info-{marker}"]["level"] == "INFO"                      # util.format placeholders applied
    assert recs[f"warn-{marker}"]["level"] == "WARN"
    assert f"debug-{marker}" not in recs
    assert any(r.get("type") == "platform.report" for r in _records(tail))

    # Text (the default): AWS's "TIME\tREQUEST_ID\tLEVEL\tmessage" lines; console.debug too (no level)
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    _, rid, tail = _invoke(lam, name, marker)
    fields = {line.split("\t")[3]: line.split("\t") for line in tail if line.count("\t") >= 3 and rid in line}
    assert fields[f"log-{marker}"][1:3] == [rid, "INFO"] and fields[f"warn-{marker}"][2] == "WARN"
    assert fields[f"debug-{marker}"][2] == "DEBUG" and fields[f"log-{marker}"][0].endswith("Z")
