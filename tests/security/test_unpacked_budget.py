"""Issue 21.6: unpacked code on tmpfs is budgeted per account, leased by live environments and
evicted when idle, so one account's packages cannot fill the host's memory or stay after deletion.
Two accounts against a real server."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from lambdalet.config import Settings
from tests.integration.e2e_support import create_function, delete_quietly, make_zip, unique
from tests.integration.tenancy_support import LAMBDA_TRUST, client_as, make_role, second_account

MB = 1 << 20


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory):
    from harness import own_server
    args = ["--unpacked-account-mb", "12", "--env-idle-ttl", "2"]
    if os.geteuid() != 0:
        args += ["--sandbox", "process"]
    yield from own_server(tmp_path_factory, *args, prefix="unpacked")


def big_zip(tag: str) -> bytes:
    """~5 MB unzipped (hex text: an ordinary compression ratio), a handler that returns its tag."""
    return make_zip({"app.py": f"def handler(e, c):\n    return {tag!r}\n",
                     "data.txt": os.urandom(5 * MB // 2).hex()})


def tree_bytes(root) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    return total


def test_one_account_cannot_fill_the_cache_and_its_trees_go_when_unused(budget_server):
    lam = budget_server.client()
    victim_account, victim_key = second_account(budget_server)
    victim = client_as(budget_server, "lambda", victim_key)
    victim_role = make_role(client_as(budget_server, "iam", victim_key), LAMBDA_TRUST)
    names = [unique("big") for _ in range(3)]
    small = unique("small")
    # The server's mounts are in its own mount namespace: look through its root.
    code_dir = Path(f"/proc/{budget_server.pid}/root") / str(
        Settings(data_dir=budget_server.data_dir).run_dir / "code").lstrip("/")
    try:
        for i, name in enumerate(names):
            create_function(lam, name, zip_bytes=big_zip(f"t{i}"))
        for _ in range(30):          # the victim's role may take a moment to be usable by Lambda
            try:
                create_function(victim, small, Role=victim_role)
                break
            except victim.exceptions.InvalidParameterValueException:
                time.sleep(0.5)
        # Two 5 MB trees live (their environments are warm) ...
        for name in names[:2]:
            assert lam.invoke(FunctionName=name)["StatusCode"] == 200
        # ... so a third does not fit the account's 12 MB: 429, which SDKs retry.
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=names[2])
        assert exc.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
        assert json.loads(victim.invoke(FunctionName=small, Payload=b"{}")["Payload"].read()) == {"hello": {}}
        # Once those environments are reaped (idle TTL 2 s), their trees make room.
        deadline = time.time() + 30
        while True:
            try:
                assert json.loads(lam.invoke(FunctionName=names[2])["Payload"].read()) == "t2"
                break
            except lam.exceptions.TooManyRequestsException:
                assert time.time() < deadline, "the idle trees were never evicted"
                time.sleep(0.5)
        assert tree_bytes(code_dir) <= 12 * MB
    finally:
        for name in names:
            delete_quietly(lam, name)
        delete_quietly(victim, small)
    # Nothing of the deleted functions stays in memory for long.
    deadline = time.time() + 30
    while tree_bytes(code_dir) > MB and time.time() < deadline:
        time.sleep(0.5)
    assert tree_bytes(code_dir) <= MB
