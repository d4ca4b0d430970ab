"""The API relay holds a bounded amount per environment on the host (issue 21.9), end to end: a function
(inside the namespace sandbox) sends several ~5.5 MB synchronous Invokes at once through init's API
proxy; their bodies are held on the host, outside the function's cgroup, for as long as the callee
runs. Only what fits in the environment's budget (api_proxy.MAX_HELD_BYTES, 12 MiB: two of them) is
forwarded; the others are refused at once with 429 TooManyRequestsException, which clients retry.
Before the budget, all of them were held (16 such requests: ~190 MiB for one 256 MB environment)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lambdalet.runtime.api_proxy import MAX_HELD_BYTES

from .e2e_support import create_function, delete_quietly, make_zip, unique
from .tenancy_support import LAMBDA_TRUST, allow, make_role

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespace sandbox)")]

PAYLOAD = 5_500_000
SENDERS = 4
FLOODER = '''
import json, threading
import sigv4_client

def handler(event, context):
    body = json.dumps({"pad": "x" * event["size"]}).encode()
    out = [None] * event["n"]
    def one(i):
        status, headers, data = sigv4_client.request("lambda", "POST",
            "/2015-03-31/functions/%s/invocations" % event["target"], body=body,
            headers={"content-type": "application/json"})
        out[i] = [status, headers.get("x-amzn-errortype", "")]
    threads = [threading.Thread(target=one, args=(i,)) for i in range(event["n"])]
    for t in threads: t.start()
    for t in threads: t.join()
    return out
'''
SLEEPER = "import time\ndef handler(event, context):\n    time.sleep(3)\n    return len(event['pad'])\n"


def test_one_environment_cannot_pile_requests_up_on_the_host(server):
    lam, iam = server.client("lambda"), server.client("iam")
    sleeper, flooder = unique("sleeper"), unique("flooder")
    sleeper_arn = server.function_arn(sleeper)
    role = make_role(iam, LAMBDA_TRUST, allow("lambda:InvokeFunction", [sleeper_arn, sleeper_arn + ":*"]))
    client = (Path(__file__).parent / "functions" / "role_caller" / "sigv4_client.py").read_text()
    create_function(lam, sleeper, zip_bytes=make_zip({"app.py": SLEEPER}), Timeout=30)
    create_function(lam, flooder, zip_bytes=make_zip({"app.py": FLOODER, "sigv4_client.py": client}),
                    Role=role, Timeout=60, MemorySize=256)
    try:
        out = lam.invoke(FunctionName=flooder, Payload=json.dumps(
            {"target": sleeper, "size": PAYLOAD, "n": SENDERS}).encode())
        statuses = json.loads(out["Payload"].read())
        assert "FunctionError" not in out, statuses
        fits = MAX_HELD_BYTES // (PAYLOAD + 100)
        assert sorted(s for s, _ in statuses) == [200] * fits + [429] * (SENDERS - fits), statuses
        assert all(t == "TooManyRequestsException" for s, t in statuses if s == 429), statuses
        # Nothing stays charged: the same environment sends as many again once they are answered.
        again = json.loads(lam.invoke(FunctionName=flooder, Payload=json.dumps(
            {"target": sleeper, "size": PAYLOAD, "n": fits}).encode())["Payload"].read())
        assert [s for s, _ in again] == [200] * fits, again
    finally:
        delete_quietly(lam, flooder)
        delete_quietly(lam, sleeper)
