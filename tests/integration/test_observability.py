"""What the server tells about itself (issue 16 §1, §2's Prometheus part), through a real server:
its log (one JSON line per API request, environment lifecycle, Event retries and dead-letter moves,
no secret ever), GET /health without credentials, Prometheus /metrics on --metrics-listen after
invocations, errors and throttles (parsed with prometheus_client's own parser), `lambdalet status`."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness import PYTHON, REPO, own_server

from .e2e_support import WAIT, delete_quietly, expect_error, make_zip, unique
from .tenancy_support import allow, destinations_role, make_role

IS_ROOT = os.geteuid() == 0
SECRET_VALUE = "s3cr3t-" + os.urandom(8).hex()      # an environment variable's value: never in the server log

APP = """
import json, os, time
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise RuntimeError("failing on purpose")
    return {"ok": True, "has_secret": bool(os.environ.get("MY_SECRET"))}
"""
ZIP = make_zip({"app.py": APP})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    args = ("--log-format", "json", "--log-level", "debug", "--metrics-listen", "127.0.0.1:0",
            "--env-idle-ttl", "2", "--async-retry-scale", "0.01")
    yield from own_server(tmp_path_factory, *args, *(() if IS_ROOT else ("--sandbox", "process")),
                          prefix="lambdalet-observe")


@pytest.fixture(scope="module")
def lam(srv):
    return srv.client()


@pytest.fixture(scope="module")
def role(srv):
    return destinations_role(srv.client("iam"))


@pytest.fixture
def fns(lam, role):
    made: list[str] = []

    def make(**kw) -> str:
        name = unique("obs")
        lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                            Code={"ZipFile": ZIP}, **kw)
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_quietly(lam, name)


def log_records(srv) -> list[dict]:
    """Every line of the server's stderr, each parsed as JSON (--log-format json: all must parse)."""
    for f in (srv._stdout, srv._stderr):
        if f and not f.closed:
            f.flush()
    lines = [line for line in srv.stderr_path.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a server log line is not JSON: {line!r}")
    return records


def wait_for_record(srv, match, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in log_records(srv) if match(r)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail("no such log record; last lines:\n" + "\n".join(map(json.dumps, log_records(srv)[-15:])))
        time.sleep(0.2)


def invoke(lam, name: str, event: dict, **kw) -> dict:
    return lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kw)


def scrape(srv) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the metrics listener named in endpoint.json."""
    url = srv.endpoint["metrics_url"]
    assert url.startswith("http://127.0.0.1:"), url          # loopback unless the operator says otherwise
    text = requests.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


# ------------------------------------------------------------------------------------------ /health

def test_health_answers_without_credentials_and_says_nothing_else(srv):
    resp = requests.get(srv.url + "/health", verify=srv.verify, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready"}
    assert "x-amzn-requestid" not in {k.lower() for k in resp.headers}     # not an API operation
    assert requests.post(srv.url + "/health", verify=srv.verify, timeout=10).status_code == 405


# ------------------------------------------------------------------------------------------ the log

def test_one_request_line_per_api_call_with_its_facts(srv, lam):
    resp = lam.list_functions()
    rid = resp["ResponseMetadata"]["RequestId"]
    rec = wait_for_record(srv, lambda r: r.get("request_id") == rid and r.get("message") == "api-request")
    assert rec["logger"] == "lambdalet.request" and rec["level"] == "INFO"
    assert rec["account"] == srv.account_id
    assert (rec["service"], rec["operation"], rec["status"]) == ("lambda", "ListFunctions", 200)
    assert isinstance(rec["latency_ms"], (int, float)) and 0 <= rec["latency_ms"] < 10_000
    assert rec["source_ip"] == "127.0.0.1"
    with expect_error("ResourceNotFoundException", 404) as caught:
        lam.get_function(FunctionName=unique("missing"))
    rid = caught.exc.response["ResponseMetadata"]["RequestId"]
    rec = wait_for_record(srv, lambda r: r.get("request_id") == rid and r.get("message") == "api-request")
    assert (rec["operation"], rec["status"], rec["error"]) == ("GetFunction", 404, "ResourceNotFoundException")
    assert len([r for r in log_records(srv) if r.get("request_id") == rid and r.get("message") == "api-request"]) == 1


def test_an_unauthenticated_request_is_logged_without_an_account(srv):
    bad = srv.client(aws_secret_access_key="x" * 40)
    with expect_error({"InvalidSignatureException", "UnrecognizedClientException"}, 403) as caught:
        bad.list_functions()
    rid = caught.exc.response["ResponseMetadata"]["RequestId"]
    rec = wait_for_record(srv, lambda r: r.get("request_id") == rid)
    assert rec["account"] == "-" and rec["status"] == 403 and rec["service"] == "lambda"


def test_no_secret_reaches_the_server_log(srv, lam, fns):
    """A secret environment variable, a session token and the secret keys of the callers: none of them
    may appear in any line of the server's log, whatever it logs."""
    name = fns(Environment={"Variables": {"MY_SECRET": SECRET_VALUE}})
    caller = make_role(srv.client("iam"), {"AWS": f"arn:aws:iam::{srv.account_id}:root"},
                       allow(["lambda:InvokeFunction"]))
    creds = srv.client("sts").assume_role(RoleArn=caller, RoleSessionName="obs")["Credentials"]
    time.sleep(0.5)
    session = srv.client(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])
    out = json.loads(invoke(session, name, {})["Payload"].read())
    assert out == {"ok": True, "has_secret": True}
    lam.get_function(FunctionName=name)            # its configuration (with the variable) crossed the API too
    text = srv.stderr_path.read_text() + srv.stdout_path.read_text()
    for secret in (SECRET_VALUE, creds["SecretAccessKey"], creds["SessionToken"], srv.secret_key):
        assert secret not in text


def test_environment_lifecycle_lines(srv, lam, fns):
    """create (or claim of a pre-isolated slot) on a cold start, freeze after it (DEBUG), a crash with
    its reason (a timeout), and the idle environment's reap at the idle TTL (2 s here)."""
    name = fns(Timeout=1)
    assert json.loads(invoke(lam, name, {})["Payload"].read())["ok"]
    made = wait_for_record(srv, lambda r: r.get("function") == name and
                           r.get("message") in ("environment-create", "environment-claim"))
    assert made["logger"] == "lambdalet.environment" and made["cold_start_ms"] > 0
    env_id = made["env_id"]
    wait_for_record(srv, lambda r: r.get("env_id") == env_id and r.get("message") == "environment-freeze")
    reaped = wait_for_record(srv, lambda r: r.get("env_id") == env_id and r.get("message") == "environment-reap")
    assert reaped["reason"] == "idle_ttl"
    resp = invoke(lam, name, {"sleep": 3})
    assert resp["FunctionError"] == "Unhandled"
    rid = resp["ResponseMetadata"]["RequestId"]
    crash = wait_for_record(srv, lambda r: r.get("message") == "environment-crash" and r.get("request_id") == rid)
    assert crash["function"] == name and crash["reason"] == "timeout" and crash["level"] == "WARNING"


def test_event_retries_and_dead_letter_moves_are_logged(srv, lam, fns):
    sqs = srv.client("sqs")
    qname = unique("obs-dlq")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    try:
        name = fns(DeadLetterConfig={"TargetArn": f"arn:aws:sqs:{srv.region}:{srv.account_id}:{qname}"})
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
        resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"fail": 1}')
        rid = resp["ResponseMetadata"]["RequestId"]
        retry = wait_for_record(srv, lambda r: r.get("request_id") == rid and r.get("message") == "event-retry", 60)
        assert retry["function"] == name and retry["attempt"] == 1 and retry["error"] == "Unhandled"
        moved = wait_for_record(srv, lambda r: r.get("request_id") == rid and r.get("message") == "event-dead-letter",
                                60)
        assert moved["condition"] == "RetriesExhausted" and moved["attempts"] == 2 and moved["delivered"] is True
        assert qname in moved["queue"]
        samples = scrape(srv)
        assert sample(samples, "lambdalet_async_events_received_total", function=name) == 1
        assert sample(samples, "lambdalet_async_events_dropped_total", function=name,
                      reason="RetriesExhausted") == 1
        assert sample(samples, "lambdalet_async_event_age_seconds_count", function=name) == 2
        assert sample(samples, "lambdalet_dead_letter_errors_total", function=name) == 0
    finally:
        sqs.delete_queue(QueueUrl=url)


# ------------------------------------------------------------------------------------------ /metrics

def test_metrics_count_invocations_errors_and_throttles(srv, lam, fns):
    name = fns()
    for _ in range(3):
        assert "FunctionError" not in invoke(lam, name, {})
    assert invoke(lam, name, {"fail": 1})["FunctionError"] == "Unhandled"
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    invoke(lam, name, {}, Qualifier="live")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(2):
        with expect_error("TooManyRequestsException", 429):
            invoke(lam, name, {})
    samples = scrape(srv)
    latest = dict(function=name, resource=name, executed_version="$LATEST")
    assert sample(samples, "lambdalet_invocations_total", **latest) == 4
    assert sample(samples, "lambdalet_errors_total", **latest) == 1
    assert sample(samples, "lambdalet_duration_seconds_count", **latest) == 4
    assert sample(samples, "lambdalet_invocations_total", function=name, resource=f"{name}:live",
                  executed_version="1") == 1
    assert sample(samples, "lambdalet_throttles_total", function=name) == 2
    assert sample(samples, "lambdalet_invocations_total", function=name) == 5       # throttles are not invocations
    assert sample(samples, "lambdalet_cold_start_seconds_count", function=name) >= 2   # $LATEST and version 1
    assert sample(samples, "lambdalet_environments", state="idle") >= 1
    assert sample(samples, "lambdalet_api_requests_total", service="lambda", operation="Invoke", status="429") >= 2
    assert ("lambdalet_concurrent_executions" in {n for n, _ in samples}
            or not any(n == "lambdalet_concurrent_executions" for n, _ in samples))   # present when any run
    for (n, labels) in samples:       # bounded labels: never a request id
        assert not any(k in ("request_id", "requestId") for k, _ in labels), n


def test_defaults_text_lines_and_no_metrics_listener(fresh_server):
    """By default: no metrics listener at all, and the log in text with key=value fields."""
    assert "metrics_url" not in fresh_server.endpoint
    rid = fresh_server.client().list_functions()["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 10
    while not [line for line in fresh_server.stderr_path.read_text().splitlines() if rid in line]:
        assert time.monotonic() < deadline, fresh_server.log_text()
        time.sleep(0.2)
    [line] = [line for line in fresh_server.stderr_path.read_text().splitlines() if rid in line]
    assert (f" INFO lambdalet.request: api-request account={fresh_server.account_id} service=lambda "
            f"operation=ListFunctions status=200 latency_ms=") in line
    assert line.endswith(f"request_id={rid} source_ip=127.0.0.1")


# ------------------------------------------------------------------------------------------ status

def test_lambdalet_status_shows_functions_environments_queues_and_concurrency(srv, lam, fns):
    name = fns(Timeout=10)
    srv.client("sqs").create_queue(QueueName=unique("obs-status"))
    running = threading.Thread(target=invoke, args=(lam, name, {"sleep": 8}))
    running.start()
    try:
        time.sleep(4.5)            # past the cold start, then a snapshot (rewritten every 2 s)
        res = subprocess.run([PYTHON, "-m", "lambdalet", "status", "--data-dir", str(srv.data_dir), "--json"],
                             cwd=str(REPO), env=srv.cli_env(), capture_output=True, text=True, timeout=60)
        text = subprocess.run([PYTHON, "-m", "lambdalet", "status", "--data-dir", str(srv.data_dir)], cwd=str(REPO),
                              env=srv.cli_env(), capture_output=True, text=True, timeout=60).stdout
    finally:
        running.join()
    assert res.returncode in (0, 2), res.stderr
    doc = json.loads(res.stdout)
    assert doc["running"] and doc["metrics_url"] == srv.endpoint["metrics_url"]
    act = doc["activity"]
    assert act["functions"] >= 1 and act["queues"] >= 1
    assert act["environments"]["busy"] >= 1, act
    assert act["concurrency"]["in_use"] >= 1 and act["concurrency"]["by_account"][srv.account_id] >= 1
    assert act["concurrency"]["account_limit"] == 1000
    assert "functions: " in text and "environments: " in text and "concurrency in use: " in text, text
    assert f"metrics: {srv.endpoint['metrics_url']}" in text
