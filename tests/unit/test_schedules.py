"""EventBridge Scheduler subset: expressions (rate / AWS 6-field cron / at), the API service against a
temporary SQLite file, and the firing rules (each occurrence at most once; missed ones once)."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.schedules.expressions import ExpressionError, Rate, parse_expression, zone
from lambdalet.schedules.service import (ConflictException, ResourceNotFoundException, Scheduler, SchedulerService,
                                         ValidationException, event_payload)
from lambdalet.schedules.tables import schedule_groups, schedules
from lambdalet.store.db import MIGRATIONS_DIR, Database, make_engine
from lambdalet.store.schema import metadata

UTC = dt.timezone.utc
ACCOUNT, REGION = "123456789012", "us-east-1"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"


def ts(*args, tz=UTC) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()


def iso(t: float, tz=UTC) -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %a")


def nexts(expr: str, start: float, n: int, tz_name: str | None = None) -> list[str]:
    e, tz = parse_expression(expr), zone(tz_name)
    out, t = [], start
    for _ in range(n):
        t = e.next_after(t, 0.0, tz)
        out.append(iso(t, tz))
    return out


# ------------------------------------------------------------------------------ expressions

def test_rate_units_and_grammar():
    assert parse_expression("rate(1 minute)") == Rate(60)
    assert parse_expression("rate(5 minutes)") == Rate(300)
    assert parse_expression("rate(2 hours)") == Rate(7200)
    assert parse_expression("rate(1 day)") == Rate(86400)
    for bad in ("rate(1 minutes)", "rate(2 minute)", "rate(0 minutes)", "rate(5 weeks)", "rate(-1 minutes)",
                "rate(10 seconds)", "every 5 minutes", ""):
        with pytest.raises(ExpressionError):
            parse_expression(bad)
    assert parse_expression("rate(10 seconds)", test_seconds=True) == Rate(10)


def test_rate_counts_from_its_anchor():
    r = Rate(60)
    assert r.next_after(1000.0, 1000.0) == 1060.0
    assert r.next_after(1059.9, 1000.0) == 1060.0
    assert r.next_after(1060.0, 1000.0) == 1120.0
    assert r.next_after(500.0, 1000.0) == 1060.0       # StartDate in the future: first one after it


def test_cron_basic_fields_and_steps():
    start = ts(2024, 1, 1, 0, 0)      # a Monday
    assert nexts("cron(0/15 * * * ? *)", start, 3) == ["2024-01-01 00:15 Mon", "2024-01-01 00:30 Mon",
                                                         "2024-01-01 00:45 Mon"]
    assert nexts("cron(0 10 * * ? *)", start, 2) == ["2024-01-01 10:00 Mon", "2024-01-02 10:00 Tue"]
    assert nexts("cron(15 12 ? * MON-FRI *)", ts(2024, 1, 5, 13, 0), 2) == ["2024-01-08 12:15 Mon",
                                                                           "2024-01-09 12:15 Tue"]
    assert nexts("cron(0 18 ? * 1,7 *)", start, 2) == ["2024-01-06 18:00 Sat", "2024-01-07 18:00 Sun"]
    assert nexts("cron(0 8 1 JAN,JUL ? *)", start, 2) == ["2024-01-01 08:00 Mon", "2024-07-01 08:00 Mon"]
    assert nexts("cron(0 0 1 1 ? 2025-2026)", start, 2) == ["2025-01-01 00:00 Wed", "2026-01-01 00:00 Thu"]
    assert parse_expression("cron(0 0 1 1 ? 2020)").next_after(start) is None


def test_cron_l_w_and_hash():
    start = ts(2024, 1, 1)
    assert nexts("cron(0 0 L * ? *)", start, 3) == ["2024-01-31 00:00 Wed", "2024-02-29 00:00 Thu",
                                                      "2024-03-31 00:00 Sun"]
    # the weekday nearest the 15th: 2024-06-15 is a Saturday -> Friday 14th; 2024-09-15 a Sunday -> Monday 16th
    assert nexts("cron(0 9 15W * ? 2024)", ts(2024, 6, 1), 4)[0] == "2024-06-14 09:00 Fri"
    assert "2024-09-16 09:00 Mon" in nexts("cron(0 9 15W * ? 2024)", ts(2024, 6, 1), 4)
    # 1W never leaves the month: 2024-06-01 is a Saturday -> Monday 3rd
    assert nexts("cron(0 9 1W 6 ? 2024)", ts(2024, 5, 1), 1) == ["2024-06-03 09:00 Mon"]
    assert nexts("cron(0 9 LW 3 ? 2024)", start, 1) == ["2024-03-29 09:00 Fri"]     # 31st is a Sunday
    assert nexts("cron(0 12 ? * 6L *)", start, 2) == ["2024-01-26 12:00 Fri", "2024-02-23 12:00 Fri"]
    assert nexts("cron(0 12 ? * 3#2 *)", start, 2) == ["2024-01-09 12:00 Tue", "2024-02-13 12:00 Tue"]
    assert nexts("cron(0 12 ? * MON#1 *)", start, 1) == ["2024-01-01 12:00 Mon"]


def test_cron_refuses_what_aws_refuses():
    for bad in ("cron(0 10 * * * *)",          # both day fields
                "cron(0 10 ? * ? *)",          # neither
                "cron(0 10 * *)",              # five fields (Unix cron)
                "cron(60 10 * * ? *)", "cron(0 24 * * ? *)", "cron(0 0 32 * ? *)", "cron(0 0 ? * 8 *)",
                "cron(0 0 ? * 3#6 *)", "cron(0 0 * 13 ? *)", "cron(0 0 * * ? 1969)", "cron(0 0 5-1 * ? *)"):
        with pytest.raises(ExpressionError):
            parse_expression(bad)


def test_cron_in_a_timezone_with_dst():
    # 02:30 every day in New York: 2024-03-10 has no 02:30 (spring forward) and is skipped.
    got = nexts("cron(30 2 * * ? *)", ts(2024, 3, 9, 12, 0, tz=zone("America/New_York")), 2, "America/New_York")
    assert got == ["2024-03-11 02:30 Mon", "2024-03-12 02:30 Tue"]
    # 09:00 New York is 14:00 UTC in winter, 13:00 UTC in summer
    e, tz = parse_expression("cron(0 9 * * ? *)"), zone("America/New_York")
    assert iso(e.next_after(ts(2024, 1, 15), 0, tz)) == "2024-01-15 14:00 Mon"
    assert iso(e.next_after(ts(2024, 7, 15), 0, tz)) == "2024-07-15 13:00 Mon"


def test_at_is_one_time_in_its_timezone():
    e = parse_expression("at(2030-05-01T12:00:00)")
    assert e.next_after(ts(2030, 1, 1), 0, UTC) == ts(2030, 5, 1, 12)
    assert e.next_after(ts(2030, 5, 1, 12), 0, UTC) is None
    assert e.next_after(0, 0, zone("Europe/Paris")) == ts(2030, 5, 1, 10)
    with pytest.raises(ExpressionError):
        parse_expression("at(2030-02-30T12:00:00)")


# ------------------------------------------------------------------------------ the service

class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def ctx(account=ACCOUNT, region=REGION) -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/a", "AK", "AID"), region, "r", "")


@pytest.fixture
def env(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    metadata.create_all(engine)
    clock = Clock(ts(2024, 1, 1))
    svc = SchedulerService(Database(engine), Keyring.open(os.urandom(32), MemoryKeyMaterialStore()),
                           test_seconds=True, clock=clock)
    fired: list[tuple[str, float, str]] = []
    sched = Scheduler(svc, lambda occ, payload, eid: fired.append((occ.name, occ.scheduled_at, payload)))
    yield svc, sched, clock, fired
    engine.dispose()


def params(name="s1", expr="rate(1 minute)", **kw):
    p = {"Name": name, "ScheduleExpression": expr, "FlexibleTimeWindow": {"Mode": "OFF"},
         "Target": {"Arn": FN, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/r",
                    "Input": json.dumps({"at": "<aws.scheduler.scheduled-time>"})}}
    p.update(kw)
    return p


def test_create_get_list_update_delete(env):
    svc, _, clock, _ = env
    arn = svc.create_schedule(ctx(), params(Description="d"))["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/s1"
    got = svc.get_schedule(ctx(), {"Name": "s1"})
    assert got["State"] == "ENABLED" and got["Target"]["Arn"] == FN and got["Description"] == "d"
    assert got["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert got["FlexibleTimeWindow"] == {"Mode": "OFF"} and got["ScheduleExpressionTimezone"] == "UTC"
    with pytest.raises(ConflictException):
        svc.create_schedule(ctx(), params())
    for i in range(3):
        svc.create_schedule(ctx(), params(name=f"x{i}"))
    page1 = svc.list_schedules(ctx(), {"MaxResults": 2})
    page2 = svc.list_schedules(ctx(), {"MaxResults": 2, "NextToken": page1["NextToken"]})
    assert [s["Name"] for s in page1["Schedules"] + page2["Schedules"]] == ["s1", "x0", "x1", "x2"]
    assert "NextToken" not in page2
    assert svc.list_schedules(ctx("210987654321"), {})["Schedules"] == []
    svc.update_schedule(ctx(), params(State="DISABLED"))
    assert svc.list_schedules(ctx(), {"State": "DISABLED"})["Schedules"][0]["Name"] == "s1"
    svc.delete_schedule(ctx(), {"Name": "s1"})
    with pytest.raises(ResourceNotFoundException):
        svc.get_schedule(ctx(), {"Name": "s1"})
    with pytest.raises(ResourceNotFoundException):
        svc.delete_schedule(ctx(), {"Name": "s1"})


def test_validation(env):
    svc, *_ = env
    bad = [params(expr="rate(5 weeks)"), params(name="bad name"), params(FlexibleTimeWindow={"Mode": "SOMETIMES"}),
           params(FlexibleTimeWindow={"Mode": "FLEXIBLE"}), params(State="PAUSED"),
           params(Target={"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "RoleArn": "r"}),
           params(Target={"Arn": FN.replace(ACCOUNT, "210987654321"), "RoleArn": "r"}),
           params(Target={"Arn": FN, "RoleArn": "r", "Input": "not json"}),
           params(ScheduleExpressionTimezone="Mars/Olympus"),
           params(StartDate=dt.datetime(2024, 2, 1, tzinfo=UTC), EndDate=dt.datetime(2024, 1, 1, tzinfo=UTC)),
           params(GroupName="nope")]
    for p in bad:
        with pytest.raises((ValidationException, ResourceNotFoundException)):
            svc.create_schedule(ctx(), p)
    svc.create_schedule(ctx(), params(FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}))


def test_groups(env):
    svc, *_ = env
    svc.create_schedule_group(ctx(), {"Name": "team"})
    with pytest.raises(ConflictException):
        svc.create_schedule_group(ctx(), {"Name": "team"})
    svc.create_schedule(ctx(), params(GroupName="team"))
    assert [g["Name"] for g in svc.list_schedule_groups(ctx(), {})["ScheduleGroups"]] == ["default", "team"]
    assert svc.get_schedule(ctx(), {"Name": "s1", "GroupName": "team"})["GroupName"] == "team"
    with pytest.raises(ResourceNotFoundException):
        svc.get_schedule(ctx(), {"Name": "s1"})
    svc.delete_schedule_group(ctx(), {"Name": "team"})
    assert svc.list_schedules(ctx(), {})["Schedules"] == []


def test_fires_each_occurrence_once_with_context_attributes(env):
    svc, sched, clock, fired = env
    t0 = clock.t
    svc.create_schedule(ctx(), params(expr="rate(10 seconds)"))
    assert sched.run_once() == 0
    clock.t = t0 + 10
    assert sched.run_once() == 1
    assert sched.run_once() == 0                     # the same instant again: nothing
    clock.t = t0 + 25
    assert sched.run_once() == 1
    assert [f[1] - t0 for f in fired] == [10, 20]
    assert json.loads(fired[0][2]) == {"at": dt.datetime.fromtimestamp(t0 + 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_missed_occurrences_fire_once_and_a_second_claimer_gets_nothing(env):
    svc, sched, clock, fired = env
    t0 = clock.t
    svc.create_schedule(ctx(), params(expr="rate(1 minute)"))
    clock.t = t0 + 3600 + 30                          # "down" for an hour
    other = Scheduler(svc, lambda *a: fired.append(("other",) + a[1:]))
    assert sched.run_once() == 1 and other.run_once() == 0
    assert fired[0][1] == t0 + 3600                   # the latest missed occurrence, once
    with svc.db.read() as conn:
        row = conn.execute(sa.select(schedules)).one()
    assert row.last_fired_at == t0 + 3600 and row.next_fire_at == t0 + 3660


def test_disabled_schedules_do_not_fire_and_at_delete_after_completion(env):
    svc, sched, clock, fired = env
    t0 = clock.t
    svc.create_schedule(ctx(), params(expr="rate(1 minute)", State="DISABLED"))
    at = dt.datetime.fromtimestamp(t0 + 120, UTC).strftime("at(%Y-%m-%dT%H:%M:%S)")
    svc.create_schedule(ctx(), params(name="once", expr=at, ActionAfterCompletion="DELETE"))
    clock.t = t0 + 600
    assert sched.run_once() == 1 and fired[0][0] == "once"
    assert [s["Name"] for s in svc.list_schedules(ctx(), {})["Schedules"]] == ["s1"]
    clock.t = t0 + 6000
    assert sched.run_once() == 0


def test_end_date_stops_a_schedule(env):
    svc, sched, clock, fired = env
    t0 = clock.t
    svc.create_schedule(ctx(), params(expr="rate(1 minute)", EndDate=dt.datetime.fromtimestamp(t0 + 150, UTC)))
    for k in range(1, 6):
        clock.t = t0 + 60 * k
        sched.run_once()
    assert [f[1] - t0 for f in fired] == [60, 120]


def test_target_input_is_sealed_at_rest(env):
    svc, *_ = env
    svc.create_schedule(ctx(), params(Target={"Arn": FN, "RoleArn": "r", "Input": '{"secret": "hunter2-xyz"}'}))
    with svc.db.read() as conn:
        row = conn.execute(sa.select(schedules)).one()
    assert b"hunter2-xyz" not in row.target_sealed


def test_event_payload_substitutes_context_attributes():
    from lambdalet.schedules.service import Occurrence
    occ = Occurrence(ACCOUNT, REGION, "default", "s", "arn:s", ts(2024, 5, 1, 12),
                     {"Arn": FN, "Input": '{"a": "<aws.scheduler.schedule-arn>", "t": "<aws.scheduler.scheduled-time>",'
                                          ' "id": "<aws.scheduler.execution-id>", "n": "<aws.scheduler.attempt-number>"}'})
    assert json.loads(event_payload(occ, "e-1")) == {"a": "arn:s", "t": "2024-05-01T12:00:00Z", "id": "e-1", "n": "1"}
    assert event_payload(Occurrence(ACCOUNT, REGION, "default", "s", "arn:s", 0.0, {"Arn": FN}), "e") == "{}"


def test_migration_0011_builds_the_tables():
    spec = importlib.util.spec_from_file_location("m0011", MIGRATIONS_DIR / "versions" / "0011_schedules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (mod.revision, mod.down_revision) == ("0011", "0010")
    engine = make_engine("sqlite://")
    with engine.begin() as conn:
        ctx_ = MigrationContext.configure(conn)
        with Operations.context(ctx_):
            mod.upgrade()
        only = sa.MetaData()
        for t in (schedules, schedule_groups):
            t.to_metadata(only)
        assert compare_metadata(MigrationContext.configure(conn), only) == []
