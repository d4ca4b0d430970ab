"""Layers: services/layers.py on a real LambdaService (SQLite, keyring, blob store, zip checks),
the layer cache's merge (invoke/layercache.py) and the authorization mapping of layer ARNs."""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest

from lambdalet.iam.authz import Authorizer, lambda_request
from lambdalet.iam.policy import parse_policy
from lambdalet.iam.request_map import RequestAuthorizer
from lambdalet.invoke.layercache import LayerCache
from lambdalet.models.errors import (ValidationException, AccessDeniedException, InvalidParameterValueException,
                                     PreconditionFailedException, ResourceConflictException,
                                     ResourceNotFoundException)
from lambdalet.services import layers
from lambdalet.services.layers import layer_policies

from .services_support import ACCOUNT, OTHER_ACCOUNT, REGION, blob_files, build_env, make_ctx, make_zip

LAYER = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:"



# AWS answers a member that breaks its model constraint with ValidationException ("N validation
# error(s) detected: ..."), and the service's own checks with InvalidParameterValueException.
PARAM_ERRORS = (InvalidParameterValueException, ValidationException)


def assert_aws_kind(err) -> None:
    assert isinstance(err, ValidationException) == ("validation error detected" in err.message), repr(err)

def publish(env, name="lib", files=None, **over) -> dict:
    params = dict(LayerName=name, Content={"ZipFile": make_zip(files or {"python/lib.py": "X = 1\n"})})
    params.update(over)
    return env.call("publish_layer_version", **params)


class _Admins:
    """A directory whose every principal holds AdministratorAccess (identity side always allows)."""
    generation = 1
    _policy = parse_policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                                    "Resource": "*"}]}, "identity", label="admin")

    def identity_policies(self, account_id, principal_arn):
        return [self._policy]


# ---------------- layer versions ----------------

def test_publish_numbers_versions_and_get_returns_the_model_shape(env):
    one = publish(env, Description="d", LicenseInfo="MIT", CompatibleRuntimes=["python3.12"],
                  CompatibleArchitectures=["x86_64"])
    two = publish(env)
    assert (one["Version"], two["Version"]) == (1, 2)
    assert one["LayerArn"] == LAYER + "lib" and one["LayerVersionArn"] == LAYER + "lib:1"
    assert one["Description"] == "d" and one["LicenseInfo"] == "MIT"
    assert one["CompatibleRuntimes"] == ["python3.12"] and one["CompatibleArchitectures"] == ["x86_64"]
    assert "CompatibleRuntimes" not in two and "LicenseInfo" not in two and two["Description"] == ""
    assert one["CreatedDate"].endswith("+0000")
    content = one["Content"]
    assert content["CodeSize"] > 0 and len(content["CodeSha256"]) == 44
    assert content["Location"].startswith("https://127.0.0.1:9000/_lambdalet/code?token=")
    got = env.call("get_layer_version", LayerName="lib", VersionNumber=1)
    assert {k: v for k, v in got.items() if k != "Content"} == {k: v for k, v in one.items() if k != "Content"}
    assert env.call("get_layer_version_by_arn", Arn=LAYER + "lib:2")["Version"] == 2
    assert env.call("get_layer_version", LayerName=LAYER + "lib", VersionNumber=2)["Version"] == 2


def test_versions_are_never_reused_after_delete(env):
    publish(env)
    publish(env)
    env.call("delete_layer_version", LayerName="lib", VersionNumber=2)
    env.call("delete_layer_version", LayerName="lib", VersionNumber=2)      # idempotent, as in AWS
    env.call("delete_layer_version", LayerName="lib", VersionNumber=1)
    assert env.call("list_layers")["Layers"] == []
    assert publish(env)["Version"] == 3
    with pytest.raises(ResourceNotFoundException, match="does not exist"):
        env.call("get_layer_version", LayerName="lib", VersionNumber=1)


def test_list_layers_latest_matching_version_filters_and_paging(env):
    publish(env, "a", CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["x86_64", "arm64"])
    publish(env, "a", CompatibleRuntimes=["nodejs20.x"])
    publish(env, "b", CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["arm64"])
    publish(env, "c")
    everything = env.call("list_layers")["Layers"]
    assert [(x["LayerName"], x["LatestMatchingVersion"]["Version"]) for x in everything] == [("a", 2), ("b", 1),
                                                                                            ("c", 1)]
    assert everything[0]["LayerArn"] == LAYER + "a"
    py = env.call("list_layers", CompatibleRuntime="python3.12")["Layers"]
    assert [(x["LayerName"], x["LatestMatchingVersion"]["Version"]) for x in py] == [("a", 1), ("b", 1)]
    arm = env.call("list_layers", CompatibleRuntime="python3.12", CompatibleArchitecture="arm64")["Layers"]
    assert [x["LayerName"] for x in arm] == ["a", "b"]
    page = env.call("list_layers", MaxItems=2)
    assert [x["LayerName"] for x in page["Layers"]] == ["a", "b"] and page["NextMarker"]
    rest = env.call("list_layers", MaxItems=2, Marker=page["NextMarker"])
    assert [x["LayerName"] for x in rest["Layers"]] == ["c"] and "NextMarker" not in rest
    versions = env.call("list_layer_versions", LayerName="a")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1] and "Content" not in versions[0]
    assert [v["Version"] for v in env.call("list_layer_versions", LayerName="a",
                                           CompatibleRuntime="python3.12")["LayerVersions"]] == [1]
    first = env.call("list_layer_versions", LayerName="a", MaxItems=1)
    assert [v["Version"] for v in env.call("list_layer_versions", LayerName="a", MaxItems=1,
                                           Marker=first["NextMarker"])["LayerVersions"]] == [1]
    assert env.call("list_layer_versions", LayerName="nope")["LayerVersions"] == []


@pytest.mark.parametrize("op, params, needle", [
    ("publish_layer_version", {"LayerName": "bad name!"}, "layerName"),
    ("publish_layer_version", {"Content": {}}, "Content.ZipFile"),
    ("publish_layer_version", {"Content": {"S3Bucket": "b", "S3Key": "k"}}, "zip upload"),
    ("publish_layer_version", {"CompatibleRuntimes": ["python9"]}, "compatibleRuntimes"),
    ("publish_layer_version", {"CompatibleArchitectures": ["mips"]}, "compatibleArchitectures"),
    ("publish_layer_version", {"Description": "d" * 257}, "description"),
    ("get_layer_version", {"VersionNumber": 0}, "Layer Version Cannot be less than 1"),
    ("list_layers", {"CompatibleRuntime": "cobol"}, "compatibleRuntime"),
    ("list_layers", {"MaxItems": 51}, "maxItems"),
    ("get_layer_version_by_arn", {"Arn": "arn:aws:lambda:us-east-1:1:layer:x"}, "arn"),
])
def test_invalid_requests(env, op, params, needle):
    base = {"LayerName": "lib", "Content": {"ZipFile": make_zip()}, "VersionNumber": 1}
    base.update(params)
    if op == "list_layers":
        base = params
    with pytest.raises(PARAM_ERRORS, match=needle) as err:
        env.call(op, **base)
    assert_aws_kind(err.value)


def test_hostile_layer_zip_is_refused_and_stores_nothing(env):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/evil.py", "x")
    with pytest.raises(InvalidParameterValueException, match="unsafe path"):
        publish(env, Content={"ZipFile": buf.getvalue()})
    assert blob_files(env) == [] and env.call("list_layers")["Layers"] == []


def test_another_accounts_layer_name_is_refused(env):
    with pytest.raises(AccessDeniedException, match="lambda:GetLayerVersion"):
        env.call("get_layer_version", LayerName=f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:layer:x", VersionNumber=1)


# ---------------- layer version policies ----------------

def test_layer_version_permissions(env):
    publish(env)
    with pytest.raises(ResourceNotFoundException, match="No policy is associated"):
        env.call("get_layer_version_policy", LayerName="lib", VersionNumber=1)
    added = env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="acct",
                     Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT)
    assert json.loads(added["Statement"]) == {
        "Sid": "acct", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        "Action": "lambda:GetLayerVersion", "Resource": LAYER + "lib:1"}
    org = env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="org",
                   Action="lambda:GetLayerVersion", Principal="*", OrganizationId="o-abcdefghij",
                   RevisionId=added["RevisionId"])
    assert json.loads(org["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    policy = env.call("get_layer_version_policy", LayerName="lib", VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"]
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17" and [s["Sid"] for s in doc["Statement"]] == ["acct", "org"]
    with pytest.raises(ResourceConflictException, match="already exists"):
        env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="acct",
                 Action="lambda:GetLayerVersion", Principal="*")
    with pytest.raises(PreconditionFailedException):
        env.call("remove_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="acct",
                 RevisionId=added["RevisionId"])
    with pytest.raises(ValidationException, match="at 'action'"):
        env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="x",
                 Action="lambda:InvokeFunction", Principal="*")
    with pytest.raises(PARAM_ERRORS, match="principal") as err:
        env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="x",
                 Action="lambda:GetLayerVersion", Principal="s3.amazonaws.com")
    assert_aws_kind(err.value)
    with pytest.raises(ResourceNotFoundException, match="lib:9 does not exist"):
        env.call("add_layer_version_permission", LayerName="lib", VersionNumber=9, StatementId="x",
                 Action="lambda:GetLayerVersion", Principal="*")
    assert layer_policies(env.svc.deps.db)(REGION, ACCOUNT, "lib", 1) == policy["Policy"]
    env.call("remove_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="acct")
    env.call("remove_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="org")
    with pytest.raises(ResourceNotFoundException, match="Statement org is not found"):
        env.call("remove_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="org")
    assert layer_policies(env.svc.deps.db)(REGION, ACCOUNT, "lib", 1) is None


# ---------------- functions' Layers ----------------

def test_function_layers_are_resolved_shown_and_resolved_for_the_data_plane(env):
    one = publish(env, "a")
    two = publish(env, "b", files={"python/b.py": "B = 2\n"})
    out = env.create("fn", Layers=[two["LayerVersionArn"], one["LayerVersionArn"]])
    assert out["Layers"] == [{"Arn": two["LayerVersionArn"], "CodeSize": two["Content"]["CodeSize"]},
                             {"Arn": one["LayerVersionArn"], "CodeSize": one["Content"]["CodeSize"]}]
    fv = env.svc.resolve_version(ACCOUNT, "fn")
    assert len(fv.layers) == 2 and fv.layers[0] != fv.layers[1]
    version = env.call("publish_version", FunctionName="fn")["Version"]
    env.call("delete_layer_version", LayerName="a", VersionNumber=1)
    # a published version keeps its layers (and their blobs) after a layer version is deleted
    assert env.svc.resolve_version(ACCOUNT, "fn", version).layers == fv.layers
    assert env.call("get_function", FunctionName="fn", Qualifier=version)["Configuration"]["Layers"] == out["Layers"]
    cleared = env.call("update_function_configuration", FunctionName="fn", Layers=[])
    assert "Layers" not in cleared and env.svc.resolve_version(ACCOUNT, "fn").layers == ()
    with pytest.raises(InvalidParameterValueException, match="a:1 does not exist"):
        env.call("update_function_configuration", FunctionName="fn", Layers=[one["LayerVersionArn"]])


@pytest.mark.parametrize("layers_of, needle", [
    (lambda arns: arns[:1] * 6, "Cannot reference more than 5 layers."),
    (lambda arns: [LAYER + "lib:7"], f"Layer version {LAYER}lib:7 does not exist."),
    (lambda arns: arns, "Two different versions of the same layer are not allowed"),
    (lambda arns: ["not-an-arn"], "layers"),
    (lambda arns: [f"arn:aws:lambda:eu-west-1:{ACCOUNT}:layer:lib:1"], "Layers are not in the same region"),
])
def test_function_layer_errors_write_nothing(env, layers_of, needle):
    arns = [publish(env)["LayerVersionArn"], publish(env)["LayerVersionArn"]]
    blobs = len(blob_files(env))
    with pytest.raises(PARAM_ERRORS, match=needle) as err:
        env.create("fn", Layers=layers_of(arns))
    assert_aws_kind(err.value)
    assert len(blob_files(env)) == blobs
    with pytest.raises(ResourceNotFoundException):
        env.call("get_function", FunctionName="fn")


def test_function_and_layers_must_fit_in_250_mb(env, monkeypatch):
    monkeypatch.setattr(layers, "UNZIPPED_LIMIT", 3000)
    arn = publish(env, files={"python/big.py": "x" * 2000})["LayerVersionArn"]
    env.create("fn", Code={"ZipFile": make_zip({"app.py": "y" * 500})}, Layers=[arn])
    with pytest.raises(InvalidParameterValueException, match="The actual size is 3500 bytes."):
        env.create("fn2", Code={"ZipFile": make_zip({"app.py": "y" * 1500})}, Layers=[arn])
    with pytest.raises(InvalidParameterValueException, match="Function code combined with layers exceeds"):
        env.call("update_function_code", FunctionName="fn", ZipFile=make_zip({"app.py": "y" * 1500}))
    arn2 = publish(env, "other", files={"python/big2.py": "x" * 2000})["LayerVersionArn"]
    with pytest.raises(InvalidParameterValueException, match="Layers consume more than the available size of 3000"):
        env.call("update_function_configuration", FunctionName="fn", Layers=[arn, arn2])


def test_cross_account_layers_need_the_layer_version_policy(tmp_path):
    env = build_env(tmp_path)
    env.svc.deps.authorizer = Authorizer(_Admins())
    arn = publish(env)["LayerVersionArn"]
    other = make_ctx(OTHER_ACCOUNT)
    params = dict(FunctionName="fn", Runtime="python3.12", Role=f"arn:aws:iam::{OTHER_ACCOUNT}:role/r",
                  Handler="app.handler", Code={"ZipFile": make_zip()}, Layers=[arn])
    with pytest.raises(AccessDeniedException, match="lambda:GetLayerVersion on resource: " + arn):
        env.svc.create_function(other, params)
    missing = dict(params, Layers=[arn[:-1] + "9"])
    with pytest.raises(AccessDeniedException):          # another account's missing layer: denied, not "missing"
        env.svc.create_function(other, missing)
    env.call("add_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="b",
             Action="lambda:GetLayerVersion", Principal=OTHER_ACCOUNT)
    assert env.svc.create_function(other, params)["Layers"][0]["Arn"] == arn
    env.call("remove_layer_version_permission", LayerName="lib", VersionNumber=1, StatementId="b")
    with pytest.raises(AccessDeniedException):
        env.svc.create_function(other, dict(params, FunctionName="fn2"))
    env.svc.deps.db.close()


# ---------------- authorization mapping ----------------

def test_layer_arns_map_to_layer_resources():
    ctx = make_ctx()
    assert lambda_request("GetLayerVersion", {"LayerName": f"arn:aws:lambda:eu-west-1:{OTHER_ACCOUNT}:layer:x",
                                              "VersionNumber": 4}, ctx)[:2] == (
        "lambda:GetLayerVersion", f"arn:aws:lambda:eu-west-1:{OTHER_ACCOUNT}:layer:x:4")
    assert lambda_request("PublishLayerVersion", {"LayerName": "x"}, ctx)[:2] == (
        "lambda:PublishLayerVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:x")
    arn = f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:layer:x:2"
    assert lambda_request("GetLayerVersionByArn", {"Arn": arn}, ctx)[:2] == ("lambda:GetLayerVersion", arn)


def test_request_authorizer_uses_the_layer_version_policy():
    grant = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "b", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "lambda:GetLayerVersion", "Resource": f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:layer:x:1"}]})
    policies = {1: grant}
    authorize = RequestAuthorizer(Authorizer(_Admins()), layer_policies=lambda r, a, n, v: policies.get(v))
    ctx = make_ctx()
    params = {"LayerName": f"arn:aws:lambda:{REGION}:{OTHER_ACCOUNT}:layer:x", "VersionNumber": 1}
    assert authorize("lambda", "GetLayerVersion", params, ctx).account_id == OTHER_ACCOUNT
    with pytest.raises(AccessDeniedException, match="no resource-based policy allows"):
        authorize("lambda", "GetLayerVersion", dict(params, VersionNumber=2), ctx)
    with pytest.raises(AccessDeniedException):          # the grant is for GetLayerVersion only
        authorize("lambda", "DeleteLayerVersion", params, ctx)


# ---------------- the layer cache ----------------

class _Blobs(dict):
    def get(self, digest):
        return self[digest]


def _zip(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (content, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


def test_layer_cache_merges_in_order_and_never_writes_through_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    blobs = _Blobs(
        a=_zip({"python/mod.py": ("A", 0o644), "python/only_a.py": ("a", 0o644), "bin/tool": ("#!", 0o755),
                "lib": ("../outside", stat.S_IFLNK | 0o777), "data": ("python", stat.S_IFLNK | 0o777)}),
        b=_zip({"python/mod.py": ("B", 0o600), "lib/x.so": ("so", 0o644), "data/y": ("y", 0o644)}))
    cache = LayerCache(tmp_path / "layers", blobs)
    merged = cache.path_for(["a", "b"])
    assert (merged / "python/mod.py").read_text() == "B"          # the later layer wins
    assert (merged / "python/only_a.py").read_text() == "a"
    assert os.access(merged / "bin/tool", os.X_OK)
    assert (merged / "python/mod.py").stat().st_mode & 0o444 == 0o444
    assert not (merged / "lib").is_symlink() and (merged / "lib/x.so").read_text() == "so"
    assert list(outside.iterdir()) == []                          # nothing written through the symlink
    assert not (merged / "data").is_symlink() and not (merged / "python/y").exists()
    assert cache.path_for(["a", "b"]) == merged and cache.path_for(["b", "a"]) != merged
    assert (cache.path_for(["b", "a"]) / "python/mod.py").read_text() == "A"
    cache.clear()
    assert not (tmp_path / "layers").exists()
