"""A function printing lines that look like the platform's (START/END/REPORT, or LogFormat=JSON's
platform.* records) gets no pass through its log rate limit: only the lines the platform itself
writes do (logs/sink.py LogSink.platform), and those still arrive."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.integration.e2e_support import create_function, delete_quietly, make_zip, unique

FORGER = """
import os, time
def handler(event, context):
    end, n = time.time() + event["seconds"], 0
    pad = os.urandom(1500).hex()
    while time.time() < end:
        print("START RequestId: forged-%d Version: $LATEST %s" % (n, pad))
        print('{"time":"2026-01-01T00:00:00.000Z","type":"platform.report","record":{"pad":"%s"}}' % pad)
        n += 1
    return n
"""


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    from harness import own_server
    args = ["--log-rate-kb", "64"] + ([] if os.geteuid() == 0 else ["--sandbox", "process"])
    yield from own_server(tmp_path_factory, *args, prefix="logforge")


@pytest.mark.parametrize("fmt", ["Text", "JSON"])
def test_forged_platform_lines_are_held_to_the_rate(limited_server, fmt):
    lam, logs = limited_server.client(), limited_server.client("logs")
    name = unique("forge")
    create_function(lam, name, zip_bytes=make_zip({"app.py": FORGER}), Timeout=30, LoggingConfig={"LogFormat": fmt})
    try:
        resp = lam.invoke(FunctionName=name, Payload=json.dumps({"seconds": 3}))
        rid = resp["ResponseMetadata"]["RequestId"]
        written = json.loads(resp["Payload"].read()) * 2 * 3050
        assert written > 4 << 20, written                               # MBs of forged platform lines
        group = f"/aws/lambda/{name}"
        marker = f"REPORT RequestId: {rid}" if fmt == "Text" else rid
        deadline, stored, dropped, report = time.time() + 20, None, [], []
        while time.time() < deadline:
            found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
            if found:
                stored = found[0]["storedBytes"]
                dropped = logs.filter_log_events(logGroupName=group, filterPattern='"were dropped"')["events"]
                report = [e for e in logs.filter_log_events(logGroupName=group, filterPattern=f'"{rid}"')["events"]
                          if marker in e["message"] and ("platform.report" in e["message"] or fmt == "Text")]
                if dropped and report:
                    break
            time.sleep(0.5)
        assert stored is not None and stored < 1 << 20, (stored, written)   # held to the rate, not a pass
        assert dropped and report, (dropped, report)                        # the real REPORT still arrived
    finally:
        delete_quietly(lam, name)
