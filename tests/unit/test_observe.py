"""observe/ in process: the log formats, the --metrics-listen parser, metric labels, progress lines.
(The real server's log, /health, /metrics and `lambdalet status`: tests/integration/test_observability.py.)"""
from __future__ import annotations

import io
import json
import logging
import time
from types import SimpleNamespace

import pytest

from lambdalet.models.errors import TooManyRequestsException
from lambdalet.observe import metrics
from lambdalet.observe.listener import is_loopback, parse_listen
from lambdalet.observe.logsetup import JsonFormatter, TextFormatter, configure
from lambdalet.observe.progress import progress


def _record(message: str = "api-request", **fields) -> logging.LogRecord:
    rec = logging.LogRecord("lambdalet.request", logging.INFO, __file__, 1, message, None, None)
    rec.fields = fields
    return rec


def test_text_lines_quote_what_would_break_key_value_parsing():
    line = TextFormatter().format(_record(account="000000000000", status=200, latency_ms=1.5,
                                          detail='runtime exited: signal "9"', empty=""))
    assert line.endswith('api-request account=000000000000 status=200 latency_ms=1.5 '
                         'detail="runtime exited: signal \\"9\\"" empty=""')
    assert " INFO lambdalet.request: " in line and "\n" not in line


def test_json_lines_are_one_object_with_the_fields():
    doc = json.loads(JsonFormatter().format(_record(account="000000000000", status=404, error="X")))
    assert doc["logger"] == "lambdalet.request" and doc["level"] == "INFO" and doc["message"] == "api-request"
    assert (doc["account"], doc["status"], doc["error"]) == ("000000000000", 404, "X")
    assert doc["time"].endswith("Z")


@pytest.fixture
def root_logging():
    """configure() replaces the root logger's handlers: give the test session's back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging._srcfile)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logging._srcfile = saved[2]


def test_configure_sets_level_and_format_and_refuses_others(root_logging):
    out = io.StringIO()
    configure("warning", "json", stream=out)
    logging.getLogger("lambdalet.request").info("hidden")
    logging.getLogger("lambdalet.environment").warning("environment-crash", extra={"fields": {"reason": "oom"}})
    [line] = out.getvalue().splitlines()
    assert json.loads(line)["reason"] == "oom"
    with pytest.raises(ValueError):
        configure("verbose", "text")
    with pytest.raises(ValueError):
        configure("info", "xml")


@pytest.mark.parametrize("value,expected", [
    ("9100", ("127.0.0.1", 9100)), (":9100", ("127.0.0.1", 9100)), ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9100", ("::1", 9100)), ("localhost:0", ("localhost", 0)),
])
def test_metrics_listen_parses(value, expected):
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["", "host:", "host:port", "1:70000"])
def test_metrics_listen_refuses(value):
    with pytest.raises(ValueError):
        parse_listen(value)


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_resource_label_is_the_name_or_name_and_qualifier():
    arn = "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert metrics.resource_of("f", arn) == "f"
    assert metrics.resource_of("f", arn + ":live") == "f:live"
    assert metrics.resource_of("f", "") == "f"


def _value(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_invocation_counts_results_and_throttles_but_not_platform_failures():
    target = SimpleNamespace(account_id="111111111111", function_name="unit-fn", version="1",
                             invoked_arn="arn:aws:lambda:us-east-1:111111111111:function:unit-fn:live")
    labels = dict(account="111111111111", function="unit-fn", resource="unit-fn:live", executed_version="1")
    with metrics.Invocation(target) as m:
        m.done(SimpleNamespace(function_error=None, duration_ms=12.0))
    with metrics.Invocation(target) as m:
        m.done(SimpleNamespace(function_error="Unhandled", duration_ms=3.0))
    with pytest.raises(TooManyRequestsException):
        with metrics.Invocation(target):
            raise TooManyRequestsException("Rate Exceeded.")
    with pytest.raises(RuntimeError):
        with metrics.Invocation(target):
            raise RuntimeError("platform failure")
    assert _value("lambdalet_invocations_total", **labels) == 2
    assert _value("lambdalet_errors_total", **labels) == 1
    assert _value("lambdalet_throttles_total", **labels) == 1
    assert _value("lambdalet_duration_seconds_count", **labels) == 2
    assert _value("lambdalet_duration_seconds_sum", **labels) == pytest.approx(0.015)


def test_gauge_sources_are_read_at_scrape_time():
    seen = {"n": 1}
    metrics.add_gauge_source("lambdalet_unit_gauge", "test", ("state",), lambda: [(("x",), seen["n"])])
    assert _value("lambdalet_unit_gauge", state="x") == 1
    seen["n"] = 5
    assert _value("lambdalet_unit_gauge", state="x") == 5


def test_progress_says_nothing_for_a_quick_step_and_names_a_slow_one(caplog):
    caplog.set_level(logging.INFO, logger="lambdalet.startup")
    with progress("quick step", after_s=0.2):
        pass
    assert not caplog.records
    with progress("slow step", after_s=0.1):
        time.sleep(0.3)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["start-up: slow step ...", "start-up: slow step done"]
