"""Lambda layers end to end: boto3 against a real `lambdalet serve` (TLS, SigV4).

The layer operations in AWS's shapes; functions whose layers are merged (in order) at /opt and
found by Python, Node.js and `provided` runtimes; a published version that outlives its layer
version; another account that may use a layer only while its layer version policy allows it.
The second account is created as tests/integration/test_authorization.py does (over the data dir).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import shutil
import uuid
import zipfile

import pytest
import requests
from botocore.exceptions import ClientError

from lambdalet.config import Settings
from lambdalet.iam import IdentityStore
from lambdalet.iam.directory import Directory
from lambdalet.server.platform import open_keyring
from lambdalet.store.db import open_database

from .e2e_support import (WAIT, build_raw_zip, create_function, delete_quietly, expect_error, make_zip,
                          stored_entry, unique)

LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def exec_zip(files: dict[str, tuple[str, int]]) -> bytes:
    """A zip whose entries keep the given permission bits (an executable bootstrap)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (content, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, content)
    return buf.getvalue()


def all_layers(lam, **filters) -> dict[str, dict]:
    """ListLayers through boto3's paginator (Marker/MaxItems): layer name -> item."""
    pages = lam.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 2}, **filters)
    items = [x for page in pages for x in page["Layers"]]
    assert len(items) == len({x["LayerName"] for x in items})     # no layer twice across pages
    return {x["LayerName"]: x for x in items}


def invoke(lam, name: str, event=None, **kw):
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    raw = resp.pop("Payload").read()
    return resp, json.loads(raw)


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture
def made(lam):
    """Functions and layer versions a test creates, deleted afterwards."""
    functions: list[tuple] = []
    layer_versions: list[tuple] = []

    class Made:
        def function(self, client=lam, **kw) -> str:
            name = kw.pop("FunctionName", None) or unique("lyr")
            create_function(client, name, **kw)
            functions.append((client, name))
            return name

        def layer(self, files: dict | None = None, *, zip_bytes: bytes | None = None, client=lam, name=None,
                  **kw) -> dict:
            name = name or unique("layer")
            out = client.publish_layer_version(LayerName=name, Content={"ZipFile": zip_bytes or make_zip(files)}, **kw)
            layer_versions.append((client, name, out["Version"]))
            return out

    yield Made()
    for client, name in functions:
        delete_quietly(client, name)
    for client, name, version in layer_versions:
        with contextlib.suppress(ClientError):
            client.delete_layer_version(LayerName=name, VersionNumber=version)


@pytest.fixture(scope="module")
def tenant(server):
    """A second account with an administrator key, and a role there that Lambda may assume."""
    settings = Settings(data_dir=server.data_dir)
    db = open_database(settings.db_url)
    try:
        account = Directory(db).create_account("layers-tenant")
        creds = IdentityStore(db, open_keyring(settings)).create_access_key(account, "admin", administrator=True)
    finally:
        db.close()
    key = {"aws_access_key_id": creds.access_key_id, "aws_secret_access_key": creds.secret_access_key}
    role = server.client("iam", **key).create_role(RoleName="layer-user", AssumeRolePolicyDocument=json.dumps(
        LAMBDA_TRUST))["Role"]["Arn"]
    return account, server.client("lambda", **key), role


# ---------------------------------------------------------------- the layer API


def test_publish_get_list_and_delete(server, lam, made):
    name = unique("layer")
    zip1 = make_zip({"python/v.py": "V = 1\n"})
    one = made.layer(zip_bytes=zip1, name=name, Description="first", LicenseInfo="MIT",
                     CompatibleRuntimes=["python3.11", "python3.12"], CompatibleArchitectures=["x86_64"])
    two = made.layer({"python/v.py": "V = 2\n"}, name=name, CompatibleRuntimes=["nodejs22.x"])
    arn = f"arn:aws:lambda:{server.region}:{server.account_id}:layer:{name}"
    assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (one["Version"], two["Version"]) == (1, 2)
    assert one["LayerArn"] == arn and one["LayerVersionArn"] == f"{arn}:1" and one["Description"] == "first"
    assert one["LicenseInfo"] == "MIT" and one["CompatibleArchitectures"] == ["x86_64"]
    assert one["Content"]["CodeSha256"] == base64.b64encode(hashlib.sha256(zip1).digest()).decode()
    assert one["Content"]["CodeSize"] == len(zip1)
    # Content.Location downloads the zip, like GetFunction's Code.Location
    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert requests.get(got["Content"]["Location"], verify=server.verify, timeout=30).content == zip1
    assert lam.get_layer_version_by_arn(Arn=f"{arn}:2")["Version"] == 2
    assert lam.get_layer_version(LayerName=arn, VersionNumber=2)["LayerVersionArn"] == f"{arn}:2"

    ours = all_layers(lam)[name]
    assert ours["LatestMatchingVersion"]["Version"] == 2 and ours["LayerArn"] == arn
    assert all_layers(lam, CompatibleRuntime="python3.12")[name]["LatestMatchingVersion"]["Version"] == 1
    assert name not in all_layers(lam, CompatibleArchitecture="arm64")
    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1] and versions[1]["CompatibleRuntimes"] == ["python3.11",
                                                                                               "python3.12"]
    page = lam.list_layer_versions(LayerName=name, MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2]
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=name, MaxItems=1, Marker=page["NextMarker"])
            ["LayerVersions"]] == [1]

    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    with expect_error("ResourceNotFoundException", 404):
        lam.get_layer_version(LayerName=name, VersionNumber=2)
    assert made.layer({"python/v.py": "V = 3\n"}, name=name)["Version"] == 3     # 2 is never reused


def test_layer_version_policy(server, lam, made):
    layer = made.layer({"python/p.py": ""})
    name, number = layer["LayerArn"].rsplit(":", 1)[1], layer["Version"]
    with expect_error("ResourceNotFoundException", 404) as err:
        lam.get_layer_version_policy(LayerName=name, VersionNumber=number)
    assert err.message == "No policy is associated with the given resource."
    added = lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone",
                                             Action="lambda:GetLayerVersion", Principal="*",
                                             OrganizationId="o-abcdefghij")
    assert json.loads(added["Statement"]) == {
        "Sid": "everyone", "Effect": "Allow", "Principal": "*", "Action": "lambda:GetLayerVersion",
        "Resource": layer["LayerVersionArn"], "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}}
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=number)
    assert policy["RevisionId"] == added["RevisionId"]
    assert json.loads(policy["Policy"])["Statement"] == [json.loads(added["Statement"])]
    with expect_error("ResourceConflictException", 409):
        lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone",
                                         Action="lambda:GetLayerVersion", Principal="*")
    with expect_error("PreconditionFailedException", 412):
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone",
                                            RevisionId=str(uuid.uuid4()))
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="everyone")
    with expect_error("ResourceNotFoundException", 404):
        lam.get_layer_version_policy(LayerName=name, VersionNumber=number)


def test_hostile_layer_zip_is_refused(lam):
    evil = build_raw_zip([stored_entry("python/ok.py", b"x = 1\n"), stored_entry("../../etc/cron.d/x", b"* * *")])
    with expect_error("InvalidParameterValueException", 400) as err:
        lam.publish_layer_version(LayerName=unique("evil"), Content={"ZipFile": evil})
    assert "unsafe path" in err.message
    with expect_error("InvalidParameterValueException", 400):
        lam.publish_layer_version(LayerName=unique("evil"), Content={"ZipFile": b"not a zip"})


# ---------------------------------------------------------------- functions with layers


MYLIB_APP = ("import mylib, sitelib, shared\n\n"
             "def handler(event, context):\n"
             "    return {'mylib': mylib.hello(), 'site': sitelib.WHERE, 'shared': shared.VALUE,\n"
             "            'mylib_file': mylib.__file__}\n")


def test_python_layers_are_importable_in_order(lam, made):
    base = made.layer({"python/mylib.py": "def hello():\n    return 'from layer'\n",
                       "python/lib/python3.11/site-packages/sitelib.py": "WHERE = 'site-packages'\n",
                       "python/shared.py": "VALUE = 'first'\n"})
    top = made.layer({"python/shared.py": "VALUE = 'second'\n"})
    name = made.function(zip_bytes=make_zip({"app.py": MYLIB_APP}),
                         Layers=[base["LayerVersionArn"], top["LayerVersionArn"]])
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Layers"] == [{"Arn": base["LayerVersionArn"], "CodeSize": base["Content"]["CodeSize"]},
                                {"Arn": top["LayerVersionArn"], "CodeSize": top["Content"]["CodeSize"]}]
    resp, out = invoke(lam, name)
    assert "FunctionError" not in resp, out
    assert out["mylib"] == "from layer" and out["site"] == "site-packages" and out["shared"] == "second", out
    assert out["mylib_file"].endswith("python/mylib.py")
    # the other order: the later layer wins again (a new configuration, so a new environment)
    lam.update_function_configuration(FunctionName=name, Layers=[top["LayerVersionArn"], base["LayerVersionArn"]])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert invoke(lam, name)[1]["shared"] == "first"


def test_published_version_keeps_working_after_its_layer_version_is_deleted(lam, made):
    marker = uuid.uuid4().hex               # unique content: nothing cached for these layers yet
    layer = made.layer({"python/mylib.py": f"def hello():\n    return '{marker}'\n",
                        "python/sitelib.py": "WHERE = 'opt/python'\n", "python/shared.py": "VALUE = 1\n"})
    name = made.function(zip_bytes=make_zip({"app.py": MYLIB_APP}), Layers=[layer["LayerVersionArn"]])
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])
    resp, out = invoke(lam, name, Qualifier=version)     # the first (cold) start happens after the delete
    assert "FunctionError" not in resp, out
    assert out["mylib"] == marker
    assert lam.get_function(FunctionName=name, Qualifier=version)["Configuration"]["Layers"][0]["Arn"] == \
        layer["LayerVersionArn"]
    # new functions can no longer use it
    with expect_error("InvalidParameterValueException", 400) as err:
        made.function(Layers=[layer["LayerVersionArn"]])
    assert err.message == f"Layer version {layer['LayerVersionArn']} does not exist."


def _host_runs(runtime: str) -> bool:
    return Settings().host_runtimes().runs(runtime)


@pytest.mark.skipif(not _host_runs("nodejs22.x"), reason="no Node.js 22 on this host (`make install` provides it)")
def test_node_layer_module_is_requirable(lam, made):
    layer = made.layer({"nodejs/node_modules/greeter/index.js": "exports.greet = (n) => `hi ${n} from /opt`;\n"})
    app = "const g = require('greeter');\nexports.handler = async (e) => ({ msg: g.greet(e.who) });\n"
    name = made.function(zip_bytes=make_zip({"index.js": app}), Runtime="nodejs22.x", Handler="index.handler",
                         Layers=[layer["LayerVersionArn"]])
    resp, out = invoke(lam, name, {"who": "node"})
    assert "FunctionError" not in resp and out == {"msg": "hi node from /opt"}, out


BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  RID=$(grep -i Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  curl -sS -X POST "$API/invocation/$RID/response" -d "{\\"from\\": \\"opt-bootstrap\\", \\"echo\\": $EVENT}" >/dev/null
done
"""


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("sh") is None, reason="no curl/sh on this host")
def test_provided_runtime_uses_opt_bootstrap(lam, made):
    layer = made.layer(zip_bytes=exec_zip({"bootstrap": (BOOTSTRAP, 0o755)}))
    name = made.function(zip_bytes=make_zip({"README": "the runtime comes from a layer\n"}),
                         Runtime="provided.al2023", Handler="unused", Layers=[layer["LayerVersionArn"]])
    resp, out = invoke(lam, name, {"k": 1})
    assert "FunctionError" not in resp and out == {"from": "opt-bootstrap", "echo": {"k": 1}}, out


def test_layer_errors_on_functions(server, lam, made):
    layer = made.layer({"python/x.py": ""})
    with expect_error("InvalidParameterValueException", 400) as err:
        made.function(Layers=[layer["LayerVersionArn"]] * 6)
    assert err.message == "Cannot reference more than 5 layers."
    missing = f"arn:aws:lambda:{server.region}:{server.account_id}:layer:{unique('none')}:1"
    with expect_error("InvalidParameterValueException", 400) as err:
        made.function(Layers=[missing])
    assert err.message == f"Layer version {missing} does not exist."
    second = made.layer({"python/x.py": ""}, name=layer["LayerArn"].rsplit(":", 1)[1])
    with expect_error("InvalidParameterValueException", 400) as err:
        made.function(Layers=[layer["LayerVersionArn"], second["LayerVersionArn"]])
    assert err.message.startswith("Two different versions of the same layer are not allowed")


# ---------------------------------------------------------------- another account


def test_another_account_uses_a_layer_only_while_its_policy_allows(server, lam, made, tenant):
    other_account, other, role = tenant
    layer = made.layer({"python/mylib.py": "def hello():\n    return 'shared'\n",
                        "python/sitelib.py": "WHERE = 'x'\n", "python/shared.py": "VALUE = 0\n"})
    arn, name, number = layer["LayerVersionArn"], layer["LayerArn"].rsplit(":", 1)[1], layer["Version"]
    fn = {"Runtime": "python3.11", "Handler": "app.handler", "Role": role,
          "Code": {"ZipFile": make_zip({"app.py": MYLIB_APP})}, "Layers": [arn]}
    with expect_error("AccessDeniedException", 403) as err:
        other.create_function(FunctionName=unique("xacct"), **fn)
    assert err.message == (f"User: arn:aws:iam::{other_account}:user/admin is not authorized to perform: "
                           f"lambda:GetLayerVersion on resource: {arn} because no resource-based policy allows the "
                           f"lambda:GetLayerVersion action")
    with expect_error("AccessDeniedException", 403):
        other.get_layer_version_by_arn(Arn=arn)

    lam.add_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="tenant",
                                     Action="lambda:GetLayerVersion", Principal=other_account)
    assert other.get_layer_version_by_arn(Arn=arn)["LayerVersionArn"] == arn
    assert other.get_layer_version(LayerName=layer["LayerArn"], VersionNumber=number)["Version"] == number
    with expect_error("AccessDeniedException", 403):        # the grant is GetLayerVersion only
        other.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=number)
    fn_name = made.function(client=other, FunctionName=unique("xacct"), **fn)
    resp, out = invoke(other, fn_name)
    assert "FunctionError" not in resp and out["mylib"] == "shared", out

    lam.remove_layer_version_permission(LayerName=name, VersionNumber=number, StatementId="tenant")
    with expect_error("AccessDeniedException", 403):
        other.create_function(FunctionName=unique("xacct"), **fn)
    with expect_error("AccessDeniedException", 403):
        other.get_layer_version_by_arn(Arn=arn)
    # a function that already uses it keeps working, as in AWS
    assert invoke(other, fn_name)[1]["mylib"] == "shared"
