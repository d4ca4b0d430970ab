"""Honest runtimes (issue 13.6), through a real server with boto3:

- `Architectures=["arm64"]` on a host that cannot run arm64 is refused at CreateFunction and
  UpdateFunctionCode (InvalidParameterValueException naming the host's architecture), instead of being
  accepted and run on x86_64; `lambdalet runtimes` says which architectures the host runs;
- the deprecation and unavailability messages recommend only runtimes `lambdalet runtimes` lists;
- Get/PutRuntimeManagementConfig with AWS's shapes: stored and returned per version, Manual keeps the
  runtime version ARN, an ARN that names no runtime version of the function is refused.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lambdalet.runtime import hostarch

from .e2e_support import ROLE, WAIT, default_zip, delete_quietly, unique


def _listed_runtimes() -> tuple[list[str], str]:
    """What `lambdalet runtimes` says this host runs (the ids before 'not available here'), and its text."""
    out = subprocess.run([str(Path(sys.executable).with_name("lambdalet")), "runtimes"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    ids = [line.split()[0] for line in out.splitlines()
           if line.strip() and not line.startswith(("not available here", "architecture"))]
    return ids, out


@pytest.fixture
def lam(server):
    return server.client("lambda")


@pytest.fixture
def names(lam):
    made: list[str] = []
    yield made
    for n in made:
        delete_quietly(lam, n)


def _error(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_arm64_is_refused_on_a_host_that_cannot_run_it(lam, names):
    host = hostarch.detect()
    if host.native == "arm64" or "arm64" in host.emulated:
        pytest.skip(f"this host runs arm64 ({host})")
    name = unique("arm")
    names.append(name)
    for runtime, handler in (("python3.12", "app.handler"), ("provided.al2023", "bootstrap")):
        with pytest.raises(ClientError) as e:
            lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                                Code={"ZipFile": default_zip()}, Architectures=["arm64"])
        code, msg = _error(e)
        assert code == "InvalidParameterValueException", msg
        assert "arm64" in msg and host.native in msg and "qemu-aarch64" in msg, msg
    with pytest.raises(ClientError):
        lam.get_function(FunctionName=name)                     # nothing was created

    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": default_zip()}, Architectures=["x86_64"])
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    with pytest.raises(ClientError) as e:                      # Architectures rides on UpdateFunctionCode
        lam.update_function_code(FunctionName=name, ZipFile=default_zip("v2"), Architectures=["arm64"])
    assert _error(e)[0] == "InvalidParameterValueException"
    assert lam.get_function_configuration(FunctionName=name)["Architectures"] == ["x86_64"]

    _, text = _listed_runtimes()
    assert f"architecture   {host.native} (native)" in text
    assert "not available here: arm64" in text


def test_deprecation_and_unavailability_messages_name_runtimes_this_host_runs(lam, names):
    listed, _ = _listed_runtimes()
    name = unique("old")
    names.append(name)
    # python3.9: AWS blocks creating it; the advice names the newest Python this host runs
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName=name, Runtime="python3.9", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": default_zip()})
    code, msg = _error(e)
    assert code == "InvalidParameterValueException"
    assert msg.startswith("The runtime parameter of python3.9 is no longer supported for creating or updating "
                          "AWS Lambda functions."), msg
    advised = re.findall(r"\((\S+?)\)", msg)
    newest_python = next(r for r in listed if r.startswith("python"))
    assert advised == [newest_python], (msg, listed)

    # a runtime AWS supports but this host cannot run: the message lists exactly what `lambdalet runtimes` lists
    missing = [r for r in ("python3.14", "nodejs24.x", "python3.13", "nodejs22.x") if r not in listed]
    if not missing:
        pytest.skip("this host runs every runtime probed here")
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName=name, Runtime=missing[0], Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": default_zip()})
    code, msg = _error(e)
    assert code == "InvalidParameterValueException" and "not available on this lambdalet host" in msg, msg
    offered = msg.split("Runtimes available here: ", 1)[1].rstrip(".").split(", ")
    assert offered == listed, (offered, listed)


def test_runtime_management_config(server, lam, names):
    name = unique("rtm")
    names.append(name)
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": default_zip()})
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    arn = server.function_arn(name)

    got = lam.get_runtime_management_config(FunctionName=name)
    assert got["UpdateRuntimeOn"] == "Auto" and got["FunctionArn"] == arn and "RuntimeVersionArn" not in got

    put = lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    assert put["UpdateRuntimeOn"] == "FunctionUpdate" and put["FunctionArn"] == arn and "RuntimeVersionArn" not in put
    assert lam.get_runtime_management_config(FunctionName=name)["UpdateRuntimeOn"] == "FunctionUpdate"

    # Manual: the function's own runtime version (GetFunctionConfiguration names it) is kept
    version_arn = lam.get_function_configuration(FunctionName=name)["RuntimeVersionConfig"]["RuntimeVersionArn"]
    put = lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=version_arn)
    assert put["RuntimeVersionArn"] == version_arn and put["UpdateRuntimeOn"] == "Manual"
    got = lam.get_runtime_management_config(FunctionName=name, Qualifier="$LATEST")
    assert got["UpdateRuntimeOn"] == "Manual" and got["RuntimeVersionArn"] == version_arn
    assert got["FunctionArn"] == f"{arn}:$LATEST"

    # a published version keeps what $LATEST had
    v1 = lam.publish_version(FunctionName=name)["Version"]
    assert lam.get_runtime_management_config(FunctionName=name, Qualifier=v1)["RuntimeVersionArn"] == version_arn

    # refusals: an ARN of no runtime version of this function, Manual without one, an ARN without Manual
    other = lam.get_function_configuration(FunctionName=name)["RuntimeVersionConfig"]["RuntimeVersionArn"]
    unknown = other[:-8] + ("0" * 8 if not other.endswith("0" * 8) else "1" * 8)
    for kw in ({"UpdateRuntimeOn": "Manual", "RuntimeVersionArn": unknown},
               {"UpdateRuntimeOn": "Manual"},
               {"UpdateRuntimeOn": "Auto", "RuntimeVersionArn": version_arn}):
        with pytest.raises(ClientError) as e:
            lam.put_runtime_management_config(FunctionName=name, **kw)
        assert _error(e)[0] == "InvalidParameterValueException", kw
    assert lam.get_runtime_management_config(FunctionName=name)["RuntimeVersionArn"] == version_arn

    with pytest.raises(ClientError) as e:
        lam.get_runtime_management_config(FunctionName=unique("missing"))
    assert _error(e)[0] == "ResourceNotFoundException"
