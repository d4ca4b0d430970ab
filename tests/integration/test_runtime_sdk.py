"""The AWS SDK for Python in the managed Python runtimes (issue 13.1): a real server, real functions.

boto3 is there without vendoring it, reaches lambdalet with the execution role's credentials and no
configuration; a package or layer that brings its own boto3 gets its own; /var/task and the layers
come before the SDK on sys.path; the SDK is read-only inside.
"""
from __future__ import annotations

import json

import pytest

from lambdalet.runtime.hostruntimes import discover_managed

from .e2e_support import make_zip, unique
from .tenancy_support import LAMBDA_TRUST, allow, make_role

pytestmark = pytest.mark.skipif(not discover_managed().get("python3.11") or
                                not discover_managed().get("python3.11").sdk_dir,
                                reason="the AWS SDK is not provisioned (make install)")

SDK_CALLS = '''
import os, sys, time
import boto3

def handler(event, context):
    lam, sqs = boto3.client("lambda"), boto3.client("sqs")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    url = sqs.create_queue(QueueName=event["queue"])["QueueUrl"]
    return {"boto3": boto3.__file__, "version": boto3.__version__, "functions": names, "queue": url,
            "path": sys.path}
'''

PROBE = '''
import os, sys
import boto3

def handler(event, context):
    try:
        open(os.path.join(os.path.dirname(boto3.__file__), "x"), "w")
        writable = True
    except OSError:
        writable = False
    return {"boto3": boto3.__file__, "version": getattr(boto3, "__version__", None),
            "vendored": getattr(boto3, "VERSION", None), "writable": writable,
            "botocore_loaded": "botocore" in sys.modules, "path": sys.path}
'''


def _create(lam, role: str, files: dict, layers=()) -> str:
    name = unique("sdk")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                        Code={"ZipFile": make_zip(files)}, Timeout=30, Layers=list(layers))
    # A new function is Pending until Active (Invoke before then is a ResourceConflictException, as on AWS).
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return name


def _invoke(lam, name: str, event: dict) -> dict:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


@pytest.fixture
def role(function_server):
    iam = function_server.client("iam")
    return make_role(iam, LAMBDA_TRUST, allow(["lambda:ListFunctions", "sqs:CreateQueue"]))


def test_boto3_without_vendoring_calls_lambdalet_with_the_role(function_server, role):
    lam = function_server.client()
    name = _create(lam, role, {"app.py": SDK_CALLS})
    queue = unique("q")
    out = _invoke(lam, name, {"queue": queue})
    assert name in out["functions"]
    assert out["queue"].endswith("/" + queue)
    assert out["boto3"].startswith("/var/lang/lib/python3.11/site-packages/boto3/")
    assert out["path"].index("/var/task") < out["path"].index("/var/lang/lib/python3.11/site-packages")


def test_the_role_decides_what_the_sdk_may_do(function_server):
    iam, lam = function_server.client("iam"), function_server.client()
    weak = make_role(iam, LAMBDA_TRUST, allow(["sqs:CreateQueue"]))
    name = _create(lam, weak, {"app.py": SDK_CALLS})
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"queue": unique("q")}).encode())
    body = json.loads(out["Payload"].read())
    assert out.get("FunctionError") == "Unhandled" and "AccessDenied" in body["errorMessage"], body


def test_a_vendored_boto3_wins_and_the_sdk_is_read_only(function_server, role):
    lam = function_server.client()
    vendored = _create(lam, role, {"app.py": PROBE, "boto3/__init__.py": 'VERSION = "vendored"\n'})
    out = _invoke(lam, vendored, {})
    assert out["vendored"] == "vendored" and out["boto3"] == "/var/task/boto3/__init__.py", out
    assert not out["botocore_loaded"], "the pre-imported SDK must be dropped when the package brings its own"
    plain = _create(lam, role, {"app.py": PROBE})
    out = _invoke(lam, plain, {})
    assert out["vendored"] is None and out["version"] and out["writable"] is False, out


def test_a_layer_precedes_the_sdk(function_server, role):
    lam = function_server.client()
    layer = lam.publish_layer_version(LayerName=unique("sdk-layer"), Content={"ZipFile": make_zip(
        {"python/botocore/__init__.py": 'VERSION = "layer"\n'})})["LayerVersionArn"]
    name = _create(lam, role, {"app.py": "import botocore\n\ndef handler(e, c):\n"
                                          "    return {'f': botocore.__file__, 'v': getattr(botocore, 'VERSION', None)}\n"},
                   layers=[layer])
    out = _invoke(lam, name, {})
    assert out == {"f": "/opt/python/botocore/__init__.py", "v": "layer"}
