"""Tags on function ARNs; reserved concurrency and the account settings that reflect it."""
from __future__ import annotations

import pytest

from .e2e_support import create_function, delete_quietly, expect_error, unique


@pytest.fixture
def lam(server):
    return server.client()


@pytest.fixture
def fn(lam):
    name = unique("tags")
    create_function(lam, name, Tags={"created": "yes"})
    yield name
    delete_quietly(lam, name)


def test_tag_list_untag(lam, server, fn):
    arn = server.function_arn(fn)
    assert lam.list_tags(Resource=arn)["Tags"] == {"created": "yes"}
    assert lam.get_function(FunctionName=fn).get("Tags") == {"created": "yes"}
    resp = lam.tag_resource(Resource=arn, Tags={"team": "core", "env": "test"})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"created": "yes", "team": "core", "env": "test"}
    lam.tag_resource(Resource=arn, Tags={"team": "edge"})  # overwrite
    assert lam.list_tags(Resource=arn)["Tags"]["team"] == "edge"
    resp = lam.untag_resource(Resource=arn, TagKeys=["env", "created", "never-set"])
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "edge"}
    assert lam.get_function(FunctionName=fn).get("Tags") == {"team": "edge"}


def test_tags_on_missing_function(lam, server):
    arn = server.function_arn(unique("notags"))
    with expect_error("ResourceNotFoundException", 404):
        lam.list_tags(Resource=arn)
    with expect_error("ResourceNotFoundException", 404):
        lam.tag_resource(Resource=arn, Tags={"a": "b"})
    with expect_error("ResourceNotFoundException", 404):
        lam.untag_resource(Resource=arn, TagKeys=["a"])


def test_tags_reject_reserved_prefix_and_bad_arn(lam, server, fn):
    with expect_error({"InvalidParameterValueException", "ValidationException"}, 400):
        lam.tag_resource(Resource=server.function_arn(fn), Tags={"aws:reserved": "x"})
    with expect_error({"InvalidParameterValueException", "ValidationException"}, 400):
        lam.list_tags(Resource="not-an-arn")


def test_reserved_concurrency_and_account_settings(lam, fn):
    before = lam.get_account_settings()
    limit = before["AccountLimit"]["ConcurrentExecutions"]
    unreserved = before["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert limit >= 100 and 100 <= unreserved <= limit
    assert "AccountUsage" in before and before["AccountUsage"]["FunctionCount"] >= 1

    assert lam.get_function_concurrency(FunctionName=fn).get("ReservedConcurrentExecutions") is None
    put = lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=10)
    assert put["ReservedConcurrentExecutions"] == 10
    assert lam.get_function_concurrency(FunctionName=fn)["ReservedConcurrentExecutions"] == 10
    assert lam.get_function(FunctionName=fn)["Concurrency"]["ReservedConcurrentExecutions"] == 10
    after = lam.get_account_settings()["AccountLimit"]
    assert after["UnreservedConcurrentExecutions"] == unreserved - 10

    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=25)  # replace, not add
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved - 25

    resp = lam.delete_function_concurrency(FunctionName=fn)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.get_function_concurrency(FunctionName=fn).get("ReservedConcurrentExecutions") is None
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved


def test_reserved_concurrency_keeps_100_unreserved(lam, fn):
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    with expect_error("InvalidParameterValueException", 400):
        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=unreserved - 99)
    assert lam.get_function_concurrency(FunctionName=fn).get("ReservedConcurrentExecutions") is None
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved
    # exactly 100 left is allowed
    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=unreserved - 100)
    try:
        assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    finally:
        lam.delete_function_concurrency(FunctionName=fn)


def test_reserved_concurrency_zero_and_missing_function(lam, fn):
    assert lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)[
        "ReservedConcurrentExecutions"] == 0
    lam.delete_function_concurrency(FunctionName=fn)
    with expect_error("ResourceNotFoundException", 404):
        lam.put_function_concurrency(FunctionName=unique("noconc"), ReservedConcurrentExecutions=1)


def test_deleting_function_releases_reserved_concurrency(lam):
    name = unique("release")
    create_function(lam, name)
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    lam.delete_function(FunctionName=name)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == unreserved
