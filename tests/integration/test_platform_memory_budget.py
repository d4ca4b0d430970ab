"""The platform-wide environment memory budget counts the platform's own memory (issue 21.5 leftover):
--env-memory-mb bounds environments plus what the server process, its fork server and its idle
pre-isolated slots hold, not environments alone. Two accounts fill a small budget at once: environments
past what is left beside the server's own memory are refused with 429, so the admitted environments'
MemorySize and the server's resident memory together stay within the budget (before, all 8 were
admitted: 1,024 MiB of environments on a 1,024 MiB budget, with the server's ~100 MiB on top)."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from .e2e_support import WAIT, make_zip, unique
from .tenancy_support import LAMBDA_TRUST, client_as, make_role, second_account

IS_ROOT = os.geteuid() == 0
BUDGET_MB = 1024
APP = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "ok"
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from harness import own_server
    yield from own_server(tmp_path_factory, "--env-memory-mb", str(BUDGET_MB),
                          *(() if IS_ROOT else ("--sandbox", "process")), prefix="lambdalet-membudget")


def _resident_mb(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def test_environments_and_the_servers_own_memory_stay_within_the_budget(srv):
    tenant_b = second_account(srv)[1]
    clients = []
    for lam, iam in ((srv.client(), srv.client("iam")),
                     (client_as(srv, "lambda", tenant_b), client_as(srv, "iam", tenant_b))):
        name = unique("mem")
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", MemorySize=128,
                            Role=make_role(iam, LAMBDA_TRUST), Code={"ZipFile": make_zip({"app.py": APP})},
                            Timeout=30)
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        clients.append((lam, name))
    server_mb = _resident_mb(srv.pid)
    body = json.dumps({"sleep": 6}).encode()

    def call(which: int) -> str:
        lam, name = clients[which]
        try:
            lam.invoke(FunctionName=name, Payload=body)
            return "ok"
        except ClientError as e:
            assert e.response["Error"]["Code"] == "TooManyRequestsException", e.response
            assert e.response.get("Reason") == "ConcurrentInvocationLimitExceeded", e.response
            return e.response["Error"]["Message"]

    # 4 x 128 MiB each: each account within its own limit (half the budget), together the whole budget
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, [0, 1] * 4))
    admitted = outcomes.count("ok")
    refused = [o for o in outcomes if o != "ok"]
    print(f"\nserver resident {server_mb} MiB; {admitted} of 8 x 128 MiB environments admitted on a "
          f"{BUDGET_MB} MiB budget; refused: {set(refused)}")
    assert refused and all("memory budget" in o for o in refused), outcomes
    assert admitted * 128 + server_mb <= BUDGET_MB, f"{admitted} environments beside the server's {server_mb} MiB"
    assert admitted >= 1
