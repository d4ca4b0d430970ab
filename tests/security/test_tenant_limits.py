"""Issue 21.4 and 21.5: one account's environments cannot take another's process ids or memory.

Two accounts against a real server: the pids limits live in cgroups (namespace backend, as root);
the memory budget and the deleted functions' environments in the pool (any backend)."""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from lambdalet.config import Settings
from harness import descendants, still_alive, own_server
from tests.integration.e2e_support import create_function, delete_quietly, make_zip, unique
from tests.integration.tenancy_support import LAMBDA_TRUST, client_as, make_role, second_account

THREADS_AT_INIT = """
import threading
started, stop = 0, threading.Event()
for _ in range({n}):
    try:
        threading.Thread(target=stop.wait, daemon=True).start()
    except RuntimeError:          # can't start new thread: the pids limit
        break
    started += 1

def handler(event, context):
    import time
    time.sleep(event.get("sleep", 0))
    return started
"""


def threads_zip(n: int) -> bytes:
    return make_zip({"app.py": THREADS_AT_INIT.format(n=n)})


def tenant(srv):
    """A second account's Lambda client and an execution role it can use."""
    _, key = second_account(srv)
    return client_as(srv, "lambda", key), make_role(client_as(srv, "iam", key), LAMBDA_TRUST)


def create_as(lam, name, role=None, **kw):
    for _ in range(30):              # a new role may take a moment to be usable by Lambda
        try:
            return create_function(lam, name, **({"Role": role} if role else {}), **kw)
        except lam.exceptions.InvalidParameterValueException:
            time.sleep(0.5)
    raise AssertionError("the role never became usable")


def invoke(lam, name, payload=None):
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail")
    tail = base64.b64decode(resp["LogResult"]).decode()
    return json.loads(resp["Payload"].read()), "Init Duration" in tail, resp.get("FunctionError")


def pids_dir(srv) -> Path:
    """The server's parent group in the v1 pids hierarchy (this host's)."""
    own = next(line.split(":", 2)[2].strip() for line in Path(f"/proc/{srv.pid}/cgroup").read_text().splitlines()
               if line.split(":")[1] == "pids")
    return Path(f"/sys/fs/cgroup/pids{own.rstrip('/')}/lambdalet-{Settings(data_dir=srv.data_dir).instance_id}")


# ---------------------------------------------------------------- 21.4: process ids

@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/pids"),
                    reason="pids cgroups: namespace backend as root, cgroup v1 here")
def test_one_accounts_threads_cannot_starve_anothers_cold_start(tmp_path_factory):
    for srv in own_server(tmp_path_factory, "--account-pids", "400", "--platform-pids", "2000",
                          "--env-idle-ttl", "120", prefix="pids"):
        lam = srv.client()
        account_a = srv.account_id
        names = [unique("threads") for _ in range(4)]
        victim, victim_role = tenant(srv)
        small = unique("victim")
        try:
            for name in names:
                create_function(lam, name, zip_bytes=threads_zip(150), MemorySize=256)
            create_as(victim, small, victim_role, zip_bytes=threads_zip(100), MemorySize=256)
            started = []
            for name in names:              # the third and fourth run into A's 400: fewer threads, or a 429
                try:
                    started.append(invoke(lam, name)[0])
                except lam.exceptions.TooManyRequestsException as e:
                    assert e.response["Reason"] == "ConcurrentInvocationLimitExceeded"
            assert started[:2] == [150, 150]
            assert sum(s for s in started if isinstance(s, int)) < 400
            # A's environments are idle (frozen) and still hold their threads: they count.
            acct = pids_dir(srv) / f"acct-{account_a}"
            assert 300 <= int((acct / "pids.current").read_text()) <= 400
            assert (acct / "pids.max").read_text().strip() == "400"
            assert (pids_dir(srv) / "pids.max").read_text().strip() == "2000"
            # B's cold start gets every thread it asks for.
            assert invoke(victim, small)[:3] == (100, True, None)
        finally:
            for name in names:
                delete_quietly(lam, name)
            delete_quietly(victim, small)


# ---------------------------------------------------------------- 21.5: memory and environments

@pytest.fixture(scope="module")
def budget_server(tmp_path_factory):
    # The platform's budget holds the server's own memory too (~100-150 MiB here, no slots): 1280 leaves
    # A's 768 and B's 256 room beside it, and not another 256.
    args = ["--env-memory-mb", "1280", "--account-env-mb", "768", "--account-envs", "4", "--sandbox-slots", "0",
            "--env-idle-ttl", "120"]
    if os.geteuid() != 0:
        args += ["--sandbox", "process"]
    yield from own_server(tmp_path_factory, *args, prefix="envbudget")


def test_budget_evicts_idle_environments_biggest_holder_first_and_deleted_ones_go_at_once(budget_server):
    srv = budget_server
    lam = srv.client()
    victim, victim_role = tenant(srv)
    a = [unique("a") for _ in range(4)]
    b = [unique("b") for _ in range(2)]
    before = descendants(srv.pid)
    try:
        for name in a:
            create_function(lam, name, MemorySize=256)
        for name in b:
            create_as(victim, name, victim_role, MemorySize=256)
        for name in a[:3]:
            assert invoke(lam, name)[1]                  # cold: A holds 768 MB, its own limit
        assert invoke(lam, a[3])[1]                      # A's least recently used idle one (a0) made room
        assert invoke(lam, a[2])[1] is False             # a2 stayed warm
        assert invoke(lam, a[0])[1]                      # a0 was evicted (and now a1 is)
        # The platform (1280 MB with the server's own) is full with A's 768 and B's first 256: B's second needs room, and A,
        # holding the most, gives up its least recently used idle environment (a3), not B's own.
        assert invoke(victim, b[0])[1] and invoke(victim, b[1])[1]
        assert invoke(victim, b[0])[1] is False
        assert invoke(lam, a[3])[1]
        envs = [p for p in descendants(srv.pid) if p not in before]
        assert envs
    finally:
        deleted = time.monotonic()
        for name in a:
            delete_quietly(lam, name)
        for name in b:
            delete_quietly(victim, name)
    # Deleting the functions ends their environments within a couple of seconds, not at the idle TTL.
    while still_alive({p: t for p, t in descendants(srv.pid).items() if p in envs}):
        assert time.monotonic() - deleted < 3, "the deleted functions' environments are still alive"
        time.sleep(0.05)


def test_an_account_at_its_limit_is_refused_not_its_neighbour(budget_server):
    srv = budget_server
    lam = srv.client()
    victim, victim_role = tenant(srv)
    slow, small = unique("slow"), unique("small")
    results: list = []
    try:
        create_function(lam, slow, MemorySize=256, zip_bytes=threads_zip(0), Timeout=30)
        create_as(victim, small, victim_role, MemorySize=256)
        workers = [threading.Thread(target=lambda: results.append(invoke(lam, slow, {"sleep": 4})))
                   for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(2.5)                                  # A's three environments are running: 768 MB
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=slow, Payload=b"{}")
        assert exc.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert invoke(victim, small)[0] == {"hello": {}}       # B still has room
        for w in workers:
            w.join(30)
        assert [r[0] for r in results] == [0, 0, 0]
    finally:
        delete_quietly(lam, slow)
        delete_quietly(victim, small)
