"""Many clients at once: no 5xx, no lost updates, optimistic concurrency (RevisionId) holds."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from .e2e_support import WAIT, create_function, delete_quietly, describe, list_all_function_names, unique

THREADS = 12


def _clients(server, n):
    return [server.client() for _ in range(n)]  # boto3 clients are not shared across threads


@pytest.mark.slow
def test_parallel_creates_and_reads(server):
    prefix = unique("par")
    names = [f"{prefix}-{i}" for i in range(THREADS)]
    clients = _clients(server, THREADS)

    def work(i):
        lam, name = clients[i], names[i]
        create_function(lam, name, wait=False, Tags={"i": str(i)})
        lam.get_function(FunctionName=name)
        lam.tag_resource(Resource=server.function_arn(name), Tags={"t": "x"})
        return lam.publish_version(FunctionName=name)["Version"]

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda i: _safe(work, i), range(THREADS)))
        errors = [r for r in results if isinstance(r, str) and r.startswith("ERR")]
        assert not errors, errors
        assert results == ["1"] * THREADS
        lam = clients[0]
        assert set(names) <= set(list_all_function_names(lam))
        for i, name in enumerate(names):
            assert lam.list_tags(Resource=server.function_arn(name))["Tags"] == {"i": str(i), "t": "x"}
    finally:
        for name in names:
            delete_quietly(clients[0], name)


def _safe(fn, *args):
    try:
        return fn(*args)
    except ClientError as e:
        return "ERR " + describe(e)


@pytest.mark.slow
def test_revision_id_race_has_exactly_one_winner(server):
    lam = server.client()
    name = unique("race")
    create_function(lam, name)
    try:
        rev = lam.get_function_configuration(FunctionName=name)["RevisionId"]
        clients = _clients(server, THREADS)

        def update(i):
            try:
                clients[i].update_function_configuration(FunctionName=name, Description=f"writer-{i}",
                                                         RevisionId=rev)
                return "ok"
            except ClientError as e:
                code = e.response["Error"]["Code"]
                return code if code in ("PreconditionFailedException", "ResourceConflictException") \
                    else "ERR " + describe(e)

        with ThreadPoolExecutor(THREADS) as pool:
            outcomes = list(pool.map(update, range(THREADS)))
        assert outcomes.count("ok") == 1, outcomes
        assert not [o for o in outcomes if o.startswith("ERR")], outcomes
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        desc = lam.get_function_configuration(FunctionName=name)["Description"]
        assert desc == f"writer-{outcomes.index('ok')}"
    finally:
        delete_quietly(lam, name)


@pytest.mark.slow
def test_parallel_publish_distinct_versions(server):
    """Publishing from many clients after distinct changes never hands out the same number twice."""
    lam = server.client()
    name = unique("pubrace")
    create_function(lam, name)
    try:
        clients = _clients(server, 6)

        def change_and_publish(i):
            c = clients[i]
            for _ in range(20):
                try:
                    c.update_function_configuration(FunctionName=name, Description=f"d{i}")
                    c.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
                    return c.publish_version(FunctionName=name)
                except ClientError as e:
                    if e.response["Error"]["Code"] not in ("ResourceConflictException", "PreconditionFailedException"):
                        return "ERR " + describe(e)
            return "ERR gave up"

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(change_and_publish, range(6)))
        assert not [r for r in results if isinstance(r, str)], results
        versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]][1:]
        assert len(versions) == len(set(versions)), versions
        assert versions == [str(i) for i in range(1, len(versions) + 1)], versions
        # every published version kept the description it was published with
        for r in results:
            conf = lam.get_function_configuration(FunctionName=name, Qualifier=r["Version"])
            assert conf["CodeSha256"] == r["CodeSha256"]
    finally:
        delete_quietly(lam, name)
