"""Issue 10, finding 4: a function flooding its log with incompressible output. Its stored logs grow
at its rate limit, not at the speed it writes, and the stream says what was dropped and why."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.integration.e2e_support import create_function, delete_quietly, make_zip, unique

FLOOD = """
import os, time
def handler(event, context):
    end, n = time.time() + event["seconds"], 0
    while time.time() < end:
        print(os.urandom(2048).hex())
        n += 1
    return n
"""


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    from harness import own_server
    args = ["--log-rate-kb", "64"] + ([] if os.geteuid() == 0 else ["--sandbox", "process"])
    yield from own_server(tmp_path_factory, *args, prefix="logflood")


def test_a_log_flood_is_held_to_the_rate_and_says_so(limited_server):
    lam, logs = limited_server.client(), limited_server.client("logs")
    name = unique("flood")
    create_function(lam, name, zip_bytes=make_zip({"app.py": FLOOD}), Timeout=30)
    try:
        resp = lam.invoke(FunctionName=name, Payload=json.dumps({"seconds": 3}))
        written = json.loads(resp["Payload"].read()) * 4097         # lines of 4,096 hex digits + newline
        assert written > 4 << 20, written                             # it really flooded (MBs)
        group = f"/aws/lambda/{name}"
        deadline, stored, dropped = time.time() + 20, None, []
        while time.time() < deadline:
            found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
            if found:
                stored = found[0]["storedBytes"]
                dropped = logs.filter_log_events(logGroupName=group, filterPattern='"were dropped"')["events"]
                if dropped and any(e["message"].startswith("REPORT") for e in
                                   logs.filter_log_events(logGroupName=group, filterPattern="REPORT")["events"]):
                    break
            time.sleep(0.5)
        # A 5 s burst plus ~3-4 s at 64 KiB/s, and the platform's own lines: well under 1 MiB.
        assert stored is not None and stored < 1 << 20, (stored, written)
        assert dropped
        assert "rate limit" in dropped[0]["message"] and "65536 bytes/s" in dropped[0]["message"]
    finally:
        delete_quietly(lam, name)
