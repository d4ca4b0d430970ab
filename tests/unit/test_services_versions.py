"""services/: publishing versions and aliases (routing rules, revisions, paging)."""
from __future__ import annotations

import pytest

from lambdalet.models.errors import (ValidationException, InvalidParameterValueException, PreconditionFailedException,
                                     ResourceConflictException, ResourceNotFoundException)
from .services_support import ACCOUNT, REGION, make_zip

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"


def _new_code(env, tag: str) -> dict:
    return env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({f"{tag}.py": tag}))


# ---------------- publish ----------------

def test_publish_copies_latest_and_is_immutable(env):
    env.create("fn", Environment={"Variables": {"A": "1"}}, Description="base")
    v1 = env.call("publish_version", FunctionName="fn", Description="first release")
    assert v1["Version"] == "1" and v1["FunctionArn"] == ARN + "fn:1"
    assert v1["Description"] == "first release" and v1["Environment"] == {"Variables": {"A": "1"}}
    assert v1["State"] == "Active" and v1["LastUpdateStatus"] == "Successful"
    env.call("update_function_configuration", FunctionName="fn", MemorySize=1024, Environment={"Variables": {"A": "2"}})
    again = env.call("get_function_configuration", FunctionName="fn", Qualifier="1")
    assert again["MemorySize"] == 128 and again["Environment"] == {"Variables": {"A": "1"}}
    assert again["RevisionId"] == v1["RevisionId"]


def test_publish_unchanged_returns_existing_version(env):
    env.create("fn")
    v1 = env.call("publish_version", FunctionName="fn")
    assert env.call("publish_version", FunctionName="fn")["Version"] == "1"
    assert env.call("publish_version", FunctionName="fn", Description="other")["RevisionId"] == v1["RevisionId"]
    env.call("update_function_configuration", FunctionName="fn", Timeout=9)
    assert env.call("publish_version", FunctionName="fn")["Version"] == "2"
    env.call("update_function_configuration", FunctionName="fn", Environment={"Variables": {"X": "y"}})
    assert env.call("publish_version", FunctionName="fn")["Version"] == "3"      # env counts as a change
    _new_code(env, "c")
    assert env.call("publish_version", FunctionName="fn")["Version"] == "4"


def test_publish_preconditions(env):
    first = env.create("fn")
    with pytest.raises(InvalidParameterValueException, match="CodeSHA256"):
        env.call("publish_version", FunctionName="fn", CodeSha256="AAAA")
    with pytest.raises(PreconditionFailedException):
        env.call("publish_version", FunctionName="fn", RevisionId="stale")
    out = env.call("publish_version", FunctionName="fn", CodeSha256=first["CodeSha256"],
                   RevisionId=first["RevisionId"])
    assert out["Version"] == "1"
    # Publishing changes $LATEST's revision, so an old RevisionId no longer matches.
    with pytest.raises(PreconditionFailedException):
        env.call("update_function_configuration", FunctionName="fn", Timeout=4, RevisionId=first["RevisionId"])


def test_publish_on_create(env):
    out = env.create("fn", Publish=True)
    assert out["Version"] == "1"
    versions = env.call("list_versions_by_function", FunctionName="fn")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]


def test_publish_refuses_qualified_name_and_missing_function(env):
    env.create("fn")
    with pytest.raises(InvalidParameterValueException):
        env.call("publish_version", FunctionName="fn:1")
    with pytest.raises(ResourceNotFoundException):
        env.call("publish_version", FunctionName="nope")


def test_list_versions_pages(env):
    env.create("fn")
    for i in range(5):
        _new_code(env, f"v{i}")
        env.call("publish_version", FunctionName="fn")
    seen, marker = [], None
    while True:
        page = env.call("list_versions_by_function", FunctionName="fn", MaxItems=2,
                        **({"Marker": marker} if marker else {}))
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2", "3", "4", "5"]
    with pytest.raises(InvalidParameterValueException):
        env.call("list_versions_by_function", FunctionName="fn", Marker=page_marker_of_other_kind(env))


def page_marker_of_other_kind(env) -> str:
    from lambdalet.services.paging import encode_marker
    return encode_marker("aliases", ["x"])


# ---------------- aliases ----------------

@pytest.fixture
def three_versions(env):
    env.create("fn")
    for i in range(3):
        _new_code(env, f"v{i}")
        env.call("publish_version", FunctionName="fn")
    return env


def test_alias_lifecycle(three_versions):
    env = three_versions
    a = env.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="1", Description="d")
    assert a == {"AliasArn": ARN + "fn:live", "Name": "live", "FunctionVersion": "1", "Description": "d",
                 "RevisionId": a["RevisionId"]}
    assert env.call("get_alias", FunctionName="fn", Name="live") == a
    with pytest.raises(ResourceConflictException, match="Alias already exists"):
        env.call("create_alias", FunctionName="fn", Name="live", FunctionVersion="2")
    b = env.call("update_alias", FunctionName="fn", Name="live", FunctionVersion="2",
                 RoutingConfig={"AdditionalVersionWeights": {"3": 0.25}}, RevisionId=a["RevisionId"])
    assert b["FunctionVersion"] == "2" and b["RoutingConfig"] == {"AdditionalVersionWeights": {"3": 0.25}}
    assert b["RevisionId"] != a["RevisionId"] and b["Description"] == "d"
    with pytest.raises(PreconditionFailedException):
        env.call("update_alias", FunctionName="fn", Name="live", Description="x", RevisionId=a["RevisionId"])
    c = env.call("update_alias", FunctionName="fn", Name="live", RoutingConfig={})
    assert "RoutingConfig" not in c and c["FunctionVersion"] == "2"
    # The alias resolves in function-level reads.
    conf = env.call("get_function_configuration", FunctionName="fn:live")
    assert conf["Version"] == "2" and conf["FunctionArn"] == ARN + "fn:live"
    assert env.call("delete_alias", FunctionName="fn", Name="live") == {}
    with pytest.raises(ResourceNotFoundException, match="Cannot find alias arn: "):
        env.call("get_alias", FunctionName="fn", Name="live")


@pytest.mark.parametrize("primary, weights, error", [
    ("1", {"2": 0.5, "3": 0.1}, InvalidParameterValueException),       # at most one extra version
    ("1", {"2": 1.5}, ValidationException),                            # weight in [0, 1]
    ("1", {"2": -0.1}, ValidationException),
    ("1", {"1": 0.5}, InvalidParameterValueException),                 # not the primary again
    ("$LATEST", {"2": 0.5}, InvalidParameterValueException),           # no routing from $LATEST
    ("1", {"$LATEST": 0.5}, ValidationException),                      # only published versions
    ("1", {"9": 0.5}, ResourceNotFoundException),                      # must exist
    ("9", {}, ResourceNotFoundException),
])
def test_alias_routing_rules(three_versions, primary, weights, error):
    with pytest.raises(error):
        three_versions.call("create_alias", FunctionName="fn", Name="a", FunctionVersion=primary,
                            RoutingConfig={"AdditionalVersionWeights": weights})
    with pytest.raises(ResourceNotFoundException):
        three_versions.call("get_alias", FunctionName="fn", Name="a")


@pytest.mark.parametrize("name", ["123", "$LATEST", "has space", "a" * 129, ""])
def test_alias_name_validation(three_versions, name):
    with pytest.raises(ValidationException, match="at 'name'"):
        three_versions.call("create_alias", FunctionName="fn", Name=name, FunctionVersion="1")


def test_alias_on_latest_and_weights_edge_values(three_versions):
    env = three_versions
    assert env.call("create_alias", FunctionName="fn", Name="dev", FunctionVersion="$LATEST")["FunctionVersion"] == "$LATEST"
    for w in (0, 1, 0.0, 1.0):
        env.call("create_alias", FunctionName="fn", Name=f"w{int(w * 10)}x{type(w).__name__}", FunctionVersion="1",
                 RoutingConfig={"AdditionalVersionWeights": {"2": w}})


def test_list_aliases_filter_and_paging(three_versions):
    env = three_versions
    for name, version in (("a1", "1"), ("a2", "2"), ("a3", "1"), ("a4", "3"), ("a5", "1")):
        env.call("create_alias", FunctionName="fn", Name=name, FunctionVersion=version)
    assert [a["Name"] for a in env.call("list_aliases", FunctionName="fn", FunctionVersion="1")["Aliases"]] == \
        ["a1", "a3", "a5"]
    seen, marker = [], None
    while True:
        page = env.call("list_aliases", FunctionName="fn", MaxItems=2, **({"Marker": marker} if marker else {}))
        seen += [a["Name"] for a in page["Aliases"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["a1", "a2", "a3", "a4", "a5"]


def test_alias_blocks_version_delete_through_routing(three_versions):
    env = three_versions
    env.call("create_alias", FunctionName="fn", Name="canary", FunctionVersion="1",
             RoutingConfig={"AdditionalVersionWeights": {"3": 0.1}})
    with pytest.raises(ResourceConflictException, match="canary"):
        env.call("delete_function", FunctionName="fn", Qualifier="3")
    env.call("delete_function", FunctionName="fn", Qualifier="2")
