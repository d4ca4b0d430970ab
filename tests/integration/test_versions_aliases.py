"""Versions and aliases (incl. weighted routing) through boto3."""
from __future__ import annotations

import pytest
from botocore.config import Config

from .e2e_support import WAIT, code_sha256, create_function, default_zip, delete_quietly, expect_error, unique

MODEL_VALIDATION = {"InvalidParameterValueException", "ValidationException"}


@pytest.fixture
def lam(server):
    return server.client()


@pytest.fixture
def fn(lam):
    name = unique("ver")
    create_function(lam, name)
    yield name
    delete_quietly(lam, name)


def _new_code(lam, name, tag):
    z = default_zip(tag)
    lam.update_function_code(FunctionName=name, ZipFile=z)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return z


@pytest.fixture
def two_versions(lam, fn):
    v1 = lam.publish_version(FunctionName=fn, Description="one")
    _new_code(lam, fn, "second")
    v2 = lam.publish_version(FunctionName=fn, Description="two")
    return fn, v1["Version"], v2["Version"]


def test_publish_version_is_idempotent_without_changes(lam, server, fn):
    first = lam.publish_version(FunctionName=fn)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["Version"] == "1"
    assert first["FunctionArn"] == server.function_arn(fn, "1")
    again = lam.publish_version(FunctionName=fn)
    assert again["Version"] == first["Version"]
    assert again["CodeSha256"] == first["CodeSha256"]
    z = _new_code(lam, fn, "changed")
    second = lam.publish_version(FunctionName=fn)
    assert second["Version"] == "2"
    assert second["CodeSha256"] == code_sha256(z)
    # a configuration change alone is also a change
    lam.update_function_configuration(FunctionName=fn, MemorySize=512)
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    third = lam.publish_version(FunctionName=fn)
    assert third["Version"] == "3"
    assert third["MemorySize"] == 512
    # versions are immutable: $LATEST changing does not touch version 2
    assert lam.get_function_configuration(FunctionName=fn, Qualifier="2")["MemorySize"] == 128


def test_publish_version_code_sha_mismatch(lam, fn):
    with expect_error("InvalidParameterValueException", 400):
        lam.publish_version(FunctionName=fn, CodeSha256="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")


def test_list_versions_by_function(lam, two_versions):
    fn, v1, v2 = two_versions
    resp = lam.list_versions_by_function(FunctionName=fn)
    versions = [v["Version"] for v in resp["Versions"]]
    assert versions[0] == "$LATEST"
    assert versions == ["$LATEST", v1, v2]
    descs = {v["Version"]: v.get("Description") for v in resp["Versions"]}
    assert descs[v1] == "one" and descs[v2] == "two"
    paged, marker = [], None
    while True:
        kw = {"MaxItems": 1, **({"Marker": marker} if marker else {})}
        page = lam.list_versions_by_function(FunctionName=fn, **kw)
        assert len(page["Versions"]) <= 1
        paged += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert paged == versions


def test_alias_lifecycle_with_routing(lam, server, two_versions):
    fn, v1, v2 = two_versions
    created = lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=v1, Description="prod")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == server.function_arn(fn, "live")
    assert created["FunctionVersion"] == v1
    assert created["RevisionId"]
    got = lam.get_alias(FunctionName=fn, Name="live")
    assert (got["Name"], got["FunctionVersion"], got["Description"]) == ("live", v1, "prod")

    lam.create_alias(FunctionName=fn, Name="canary", FunctionVersion=v2)
    only_v2 = lam.list_aliases(FunctionName=fn, FunctionVersion=v2)["Aliases"]
    assert [a["Name"] for a in only_v2] == ["canary"]

    upd = lam.update_alias(FunctionName=fn, Name="live",
                           RoutingConfig={"AdditionalVersionWeights": {v2: 0.3}})
    assert upd["FunctionVersion"] == v1
    assert upd["RoutingConfig"]["AdditionalVersionWeights"] == {v2: pytest.approx(0.3)}
    got = lam.get_alias(FunctionName=fn, Name="live")
    assert got["RoutingConfig"]["AdditionalVersionWeights"] == {v2: pytest.approx(0.3)}
    assert got["RevisionId"] != created["RevisionId"]

    with expect_error("PreconditionFailedException", 412):
        lam.update_alias(FunctionName=fn, Name="live", Description="x",
                         RevisionId="00000000-0000-0000-0000-000000000000")

    aliases = lam.list_aliases(FunctionName=fn)["Aliases"]
    assert sorted(a["Name"] for a in aliases) == ["canary", "live"]

    with expect_error("ResourceConflictException", 409):
        lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=v2)

    resp = lam.delete_alias(FunctionName=fn, Name="canary")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with expect_error("ResourceNotFoundException", 404):
        lam.get_alias(FunctionName=fn, Name="canary")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=fn)["Aliases"]] == ["live"]


def test_routing_weight_out_of_range(lam, server, two_versions):
    fn, v1, v2 = two_versions
    nv = server.client(config=Config(parameter_validation=False))  # so negative weights reach the server
    with expect_error(MODEL_VALIDATION, 400):
        lam.create_alias(FunctionName=fn, Name="bad", FunctionVersion=v1,
                         RoutingConfig={"AdditionalVersionWeights": {v2: 1.5}})
    with expect_error("ResourceNotFoundException", 404):
        lam.get_alias(FunctionName=fn, Name="bad")
    lam.create_alias(FunctionName=fn, Name="ok", FunctionVersion=v1)
    for weight in (1.5, -0.1):
        with expect_error(MODEL_VALIDATION, 400):
            nv.update_alias(FunctionName=fn, Name="ok", RoutingConfig={"AdditionalVersionWeights": {v2: weight}})
    assert not lam.get_alias(FunctionName=fn, Name="ok").get("RoutingConfig", {}).get("AdditionalVersionWeights")


def test_alias_to_latest_or_missing_version(lam, two_versions):
    fn, v1, v2 = two_versions
    with expect_error("ResourceNotFoundException", 404):
        lam.create_alias(FunctionName=fn, Name="ghost", FunctionVersion="99")
    with expect_error("ResourceNotFoundException", 404):
        lam.get_alias(FunctionName=fn, Name="nope")
    with expect_error(MODEL_VALIDATION, 400):
        lam.create_alias(FunctionName=fn, Name="123", FunctionVersion=v1)  # all-digit names are versions


def test_deleting_aliased_version_conflicts(lam, two_versions):
    fn, v1, v2 = two_versions
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=v1)
    with expect_error("ResourceConflictException", 409):
        lam.delete_function(FunctionName=fn, Qualifier=v1)
    assert lam.get_function_configuration(FunctionName=fn, Qualifier=v1)["Version"] == v1
    # also when the version is only an additional routing target
    lam.update_alias(FunctionName=fn, Name="live", RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}})
    with expect_error("ResourceConflictException", 409):
        lam.delete_function(FunctionName=fn, Qualifier=v2)
    lam.delete_alias(FunctionName=fn, Name="live")
    lam.delete_function(FunctionName=fn, Qualifier=v1)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function_configuration(FunctionName=fn, Qualifier=v1)


def test_qualifier_alias_resolves_to_version(lam, server, two_versions):
    fn, v1, v2 = two_versions
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=v1)
    conf = lam.get_function_configuration(FunctionName=fn, Qualifier="live")
    assert conf["Version"] == v1
    assert conf["Description"] == "one"
    got = lam.get_function(FunctionName=fn, Qualifier="live")
    assert got["Configuration"]["Version"] == v1
    # qualified ARN form
    conf2 = lam.get_function_configuration(FunctionName=server.function_arn(fn, "live"))
    assert conf2["Version"] == v1
    lam.update_alias(FunctionName=fn, Name="live", FunctionVersion=v2)
    assert lam.get_function_configuration(FunctionName=fn, Qualifier="live")["Version"] == v2
