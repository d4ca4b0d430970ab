"""EventBridge Scheduler subset end to end: boto3's `scheduler` client against a real server started
with the test-only --schedule-test-seconds flag (rate(N seconds)). The target function's OnSuccess
destination is a queue, so every firing is observable as one destination record whose
requestPayload carries <aws.scheduler.scheduled-time>: no occurrence may appear twice, even across
a restart, and missed occurrences are fired once."""
from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from .e2e_support import WAIT, make_zip, unique
from .tenancy_support import destinations_role, scheduler_role

HANDLER = "def handler(event, context):\n    return {'got': event}\n"


@pytest.fixture
def srv(lambdalet_server_factory):
    return lambdalet_server_factory("--schedule-test-seconds", "--async-retry-scale", "0.01")


def _role(srv) -> str:
    """The schedules' execution role (trusts scheduler.amazonaws.com), one per server's data dir."""
    role = _ROLES.get(srv.data_dir)
    if role is None:
        role = _ROLES[srv.data_dir] = scheduler_role(srv.client("iam"))
    return role


_ROLES: dict = {}


def _setup(srv):
    lam, sqs = srv.client("lambda"), srv.client("sqs")
    fn = unique("sched")
    lam.create_function(FunctionName=fn, Runtime="python3.11", Handler="app.handler",
                        Role=destinations_role(srv.client("iam")), Code={"ZipFile": make_zip({"app.py": HANDLER})})
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    url = sqs.create_queue(QueueName=unique("sched-out"))["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.put_function_event_invoke_config(FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": qarn}})
    return lam, sqs, fn, url


def _fired(sqs, url, seen: list[str], wait_s: float = 1) -> list[str]:
    """Drain the destination queue; the scheduled times of the invocations that ran."""
    deadline = time.monotonic() + wait_s
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            record = json.loads(m["Body"])
            seen.append(record["requestPayload"]["at"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if not got and time.monotonic() >= deadline:
            return seen


def test_rate_schedule_fires_disable_stops_it_delete(srv):
    lam, sqs, fn, url = _setup(srv)
    sch = srv.client("scheduler")
    name = unique("every2s")
    arn = sch.create_schedule(
        Name=name, ScheduleExpression="rate(2 seconds)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": srv.function_arn(fn), "RoleArn": _role(srv),
                "Input": json.dumps({"at": "<aws.scheduler.scheduled-time>", "who": "<aws.scheduler.schedule-arn>"})},
    )["ScheduleArn"]
    assert arn.endswith(f":schedule/default/{name}")
    got = sch.get_schedule(Name=name)
    assert got["State"] == "ENABLED" and got["ScheduleExpression"] == "rate(2 seconds)"
    assert got["Target"]["Arn"] == srv.function_arn(fn)
    assert [s["Name"] for s in sch.list_schedules(NamePrefix=name)["Schedules"]] == [name]

    seen: list[str] = []
    deadline = time.monotonic() + 40
    while len(seen) < 3 and time.monotonic() < deadline:
        _fired(sqs, url, seen)
    assert len(seen) >= 3, seen
    assert len(set(seen)) == len(seen), f"an occurrence fired twice: {seen}"

    sch.update_schedule(Name=name, ScheduleExpression="rate(2 seconds)", FlexibleTimeWindow={"Mode": "OFF"},
                        State="DISABLED", Target=got["Target"])
    assert sch.get_schedule(Name=name)["State"] == "DISABLED"
    _fired(sqs, url, seen, wait_s=3)                  # what was already queued when it was disabled
    before = len(seen)
    _fired(sqs, url, seen, wait_s=6)
    assert len(seen) == before, "a disabled schedule fired"

    sch.delete_schedule(Name=name)
    with pytest.raises(sch.exceptions.ResourceNotFoundException):
        sch.get_schedule(Name=name)
    with pytest.raises(sch.exceptions.ValidationException):
        sch.create_schedule(Name=name, ScheduleExpression="cron(0 10 * * *)", FlexibleTimeWindow={"Mode": "OFF"},
                            Target={"Arn": srv.function_arn(fn), "RoleArn": _role(srv)})
    with pytest.raises(sch.exceptions.ConflictException):
        for _ in range(2):
            sch.create_schedule(Name=name, ScheduleExpression="cron(0 10 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
                                Target={"Arn": srv.function_arn(fn), "RoleArn": _role(srv)})
    sch.delete_schedule(Name=name)


def test_restart_fires_missed_occurrences_once_and_never_twice(srv):
    lam, sqs, fn, url = _setup(srv)
    sch = srv.client("scheduler")
    name = unique("restart")
    sch.create_schedule(Name=name, ScheduleExpression="rate(2 seconds)", FlexibleTimeWindow={"Mode": "OFF"},
                        Target={"Arn": srv.function_arn(fn), "RoleArn": _role(srv),
                                "Input": json.dumps({"at": "<aws.scheduler.scheduled-time>"})})
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        _fired(sqs, url, seen)
    assert len(seen) >= 2
    srv.stop()
    stopped_at = time.time()
    time.sleep(8)                                      # ~4 occurrences missed
    # Down from stop()'s return to start()'s call: start() itself returns only after the server has
    # come up and `lambdalet env` has run (over a second on a busy machine), while the schedule
    # already fires live occurrences again.
    restarted_at = time.time()
    srv.start()
    sqs, sch = srv.client("sqs"), srv.client("scheduler")
    _fired(sqs, url, seen, wait_s=9)
    assert len(set(seen)) == len(seen), f"an occurrence fired twice: {seen}"
    times = [dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp() for s in seen]
    missed = [t for t in times if stopped_at + 1 < t < restarted_at - 1]
    assert len(missed) <= 1, f"missed occurrences fired more than once: {seen}"
    assert any(t > restarted_at for t in times), "the schedule did not go on after the restart"
    sch.delete_schedule(Name=name)


def test_aws_cli_as_documented(srv):
    """The AWS CLI commands of docs/schedules.md."""
    import subprocess
    import harness
    lam, _sqs, fn, _url = _setup(srv)
    env = srv.cli_env()
    fn_arn = srv.function_arn(fn)

    def aws(*args):
        res = subprocess.run([harness.PYTHON, "-m", "awscli", "scheduler", *args], env=env, capture_output=True,
                             text=True, timeout=60, cwd=str(harness.REPO))
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout) if res.stdout.strip() else {}

    name = unique("cli")
    target = json.dumps({"Arn": fn_arn, "RoleArn": _role(srv), "Input": json.dumps({"ping": True})})
    aws("create-schedule", "--name", name, "--schedule-expression", "rate(5 minutes)",
        "--flexible-time-window", "Mode=OFF", "--target", target)
    once = unique("once")
    aws("create-schedule", "--name", once, "--schedule-expression", "at(2099-01-01T00:00:00)",
        "--schedule-expression-timezone", "Europe/Paris", "--action-after-completion", "DELETE",
        "--flexible-time-window", "Mode=OFF", "--target", json.dumps({"Arn": fn_arn, "RoleArn": _role(srv)}))
    names = [s["Name"] for s in aws("list-schedules")["Schedules"]]
    assert name in names and once in names
    got = aws("get-schedule", "--name", name)
    assert got["Target"]["Input"] == json.dumps({"ping": True}) and got["State"] == "ENABLED"
    assert aws("get-schedule", "--name", once)["ScheduleExpressionTimezone"] == "Europe/Paris"
    aws("delete-schedule", "--name", name)
    aws("delete-schedule", "--name", once)
    assert aws("list-schedules", "--name-prefix", name)["Schedules"] == []
