"""Units behind LoggingConfig and honest runtimes: logs/platform.py (platform lines in either format,
system level), the Python runtime's JSON records (runtime/python_bootstrap.py), runtime/hostarch.py
(binfmt_misc detection) and the catalogue's architecture check and advice (services/runtimes.py).
The end-to-end proofs are tests/integration/test_logging_config.py and test_honest_runtimes.py."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys

import pytest

from lambdalet.logs import platform
from lambdalet.logs.platform import PlatformLog
from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.runtime import hostarch, launch, python_bootstrap
from lambdalet.runtime.hostruntimes import Executor, HostRuntimes
from lambdalet.sandbox.api import EnvironmentSpec
from lambdalet.services.runtimes import default_catalogue

TODAY = dt.date(2026, 11, 27)


def test_text_platform_lines_are_unchanged():
    p = PlatformLog()
    assert p.start("r1", "$LATEST") == b"START RequestId: r1 Version: $LATEST\n"
    out = p.end_and_report("r1", 1.234, 128, 40, 12.5, None).decode()
    assert out == ("END RequestId: r1\nREPORT RequestId: r1\tDuration: 1.23 ms\tBilled Duration: 2 ms\t"
                   "Memory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 12.50 ms\t\n")
    assert "Status: timeout" in p.end_and_report("r1", 3000, 128, 40, None, "Sandbox.Timedout").decode()


def test_json_platform_records_and_system_level():
    p = PlatformLog("JSON", "INFO")
    start = p.start("r1", "3")
    doc = json.loads(start)
    assert list(doc) == ["time", "type", "record"] and doc["type"] == "platform.start"
    assert doc["record"] == {"requestId": "r1", "version": "3"}
    report = p.end_and_report("r1", 1.2, 256, 50, None, "Runtime.ExitError")
    rec = json.loads(report)["record"]
    assert rec["metrics"] == {"durationMs": 1.2, "billedDurationMs": 2, "memorySizeMB": 256, "maxMemoryUsedMB": 50}
    assert rec["status"] == "error" and rec["errorType"] == "Runtime.ExitError"
    assert platform.is_report(report) and not platform.is_report(start)
    assert platform.is_platform_line(start.decode()) and platform.is_platform_line("END RequestId: x\n")
    assert not platform.is_platform_line('{"time":"now","msg":"a function line"}\n')
    assert PlatformLog("JSON", "DEBUG").start("r", "1")
    quiet = PlatformLog("JSON", "WARN")
    assert quiet.start("r1", "1") == b"" and quiet.end_and_report("r1", 1, 128, 1, None, None) == b""


def _spec(**kw) -> EnvironmentSpec:
    return EnvironmentSpec(env_id="e", account_id="1", function_name="f", function_version="$LATEST",
                           function_arn="arn", runtime="python3.12", handler="app.handler", code_dir="/x", **kw)


def test_runtime_env_carries_the_log_format_and_level():
    env = launch.runtime_env(_spec(log_format="JSON", app_log_level="WARN"), launch.Layout())
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "JSON" and env["AWS_LAMBDA_LOG_LEVEL"] == "WARN"
    env = launch.runtime_env(_spec(), launch.Layout())
    assert "AWS_LAMBDA_LOG_FORMAT" not in env and "AWS_LAMBDA_LOG_LEVEL" not in env


def test_python_json_record():
    fmt = python_bootstrap._JsonFormatter()
    rec = logging.LogRecord("app", logging.WARNING, "/var/task/app.py", 7, "hello %s", ("you",), None)
    rec.aws_request_id = "rid"
    rec.order = 42
    doc = json.loads(fmt.format(rec))
    assert doc == {"timestamp": doc["timestamp"], "level": "WARNING", "message": "hello you", "logger": "app",
                   "requestId": "rid", "order": 42}
    try:
        raise ValueError("bad")
    except ValueError:
        rec = logging.LogRecord("root", logging.ERROR, "/var/task/app.py", 9, {"k": 1}, (), sys.exc_info())
    doc = json.loads(fmt.format(rec))
    assert doc["message"] == {"k": 1} and "requestId" not in doc       # no request outside an invocation
    assert doc["errorType"] == "ValueError" and doc["errorMessage"] == "bad" and doc["stackTrace"]


def _binfmt(tmp_path, name, text):
    (tmp_path / name).write_text(text)


def test_binfmt_detection(tmp_path):
    assert hostarch.detect(str(tmp_path), "x86_64") == hostarch.HostArchitectures("x86_64", ())
    _binfmt(tmp_path, "qemu-aarch64", "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\n")
    host = hostarch.detect(str(tmp_path), "x86_64")
    assert host.emulated == ("arm64",)
    assert host.supports("arm64", "provided.al2023") and not host.supports("arm64", "python3.12")
    assert "only under emulation" in host.refusal("arm64", "python3.12")
    assert any("emulated" in line for line in host.describe())
    _binfmt(tmp_path, "qemu-aarch64", "disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n")
    assert hostarch.detect(str(tmp_path), "x86_64").emulated == ()
    _binfmt(tmp_path, "qemu-aarch64", "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: \n")   # no F: not inside
    assert hostarch.detect(str(tmp_path), "x86_64").emulated == ()
    assert hostarch.detect(str(tmp_path), "aarch64").native == "arm64"


def _host(*ids: str) -> HostRuntimes:
    return HostRuntimes({i: Executor(i, "", "", "") for i in ids}, hostarch.HostArchitectures("x86_64"))


def test_catalogue_architecture_check():
    cat = default_catalogue().with_host(_host("python3.12"))
    cat.check_architecture(["x86_64"], "python3.12")
    with pytest.raises(InvalidParameterValueException, match=r"Architectures \[arm64\].*x86_64.*qemu-aarch64"):
        cat.check_architecture(["arm64"], "python3.12")
    default_catalogue().check_architecture(["arm64"], "python3.12")        # no host: AWS's rules only


def test_deprecation_advice_names_what_the_host_runs():
    cat = default_catalogue().with_host(_host("provided.al2023", "python3.11", "nodejs22.x"))
    with pytest.raises(InvalidParameterValueException) as e:
        cat.check("python3.8", creating=True, today=TODAY)
    assert str(e.value).endswith("We recommend you use the new runtime (python3.11) while creating or updating "
                                 "functions.")
    with pytest.raises(InvalidParameterValueException) as e:
        cat.check("ruby2.7", creating=True, today=TODAY)                   # no Ruby here at all
    assert "a supported runtime (python3.11, nodejs22.x)" in str(e.value)
    with pytest.raises(InvalidParameterValueException, match=r"new runtime \(python3.14\)"):
        default_catalogue().check("python3.8", creating=True, today=TODAY)   # no host: AWS's advice
