"""EventBridge Scheduler's API subset (service "scheduler", rest-json, botocore's model) and the
scheduler thread that fires schedules as Event (asynchronous) invocations of lambdalet functions.

Operations: CreateSchedule, GetSchedule, UpdateSchedule, DeleteSchedule, ListSchedules and
Create/Get/List/DeleteScheduleGroup. Targets are lambdalet functions only
(Target.Arn = arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>] of the caller's
account and region); Target.Input is the event (JSON; EventBridge Scheduler's context attributes
<aws.scheduler.schedule-arn>, <aws.scheduler.scheduled-time>, <aws.scheduler.execution-id> and
<aws.scheduler.attempt-number> are substituted). FlexibleTimeWindow: OFF, or FLEXIBLE (accepted;
lambdalet fires at the start of the window, which is inside any window). Tags are not implemented.

Firing (Scheduler.run_once, every tick):
- every ENABLED schedule whose `next_fire_at` has passed is claimed with one conditional UPDATE
  that moves `next_fire_at` to the first occurrence after now and records the occurrence in
  `last_fired_at`; only the claimer queues the invocation. Occurrences missed while the server was
  down are fired ONCE (the latest of them), never one per missed occurrence.
- the invocation goes through the durable async-invoke queue (events/): retries, event age,
  destinations and DLQ of the function's event invoke config apply as for any Event invoke.
- if the event cannot be queued (the function does not exist, ...), it goes to the schedule's
  Target.DeadLetterConfig queue (a lambdalet SQS queue) when there is one, else it is logged.
- delivery is at most once per occurrence: the UPDATE commits before the event is queued, so a
  crash between the two (milliseconds) loses that occurrence instead of firing it twice.
- one-time at(...) schedules with ActionAfterCompletion DELETE are deleted once fired.

Authority (events/authority.py), as EventBridge Scheduler: Target.RoleArn must name an existing role
of the schedule's account that trusts scheduler.amazonaws.com (else ValidationException "The execution
role you provide must allow AWS EventBridge Scheduler to assume the role."), and the caller needs
iam:PassRole on it (iam:PassedToService = scheduler.amazonaws.com; AccessDeniedException otherwise).
Each occurrence is fired as that role: it must still be assumable and may lambda:InvokeFunction on the
target, else the occurrence fails with AccessDeniedException (and goes to the dead-letter queue, which
is written only if the role may sqs:SendMessage on it; otherwise it is logged and dropped).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.events.authority import SCHEDULER_PRINCIPAL, parse_role_arn
from lambdalet.iam.authz import request_context
from lambdalet.models.errors import AccessDeniedException, AwsError, _error
from lambdalet.schedules.expressions import UTC, At, Cron, ExpressionError, Rate, parse_expression, zone
from lambdalet.schedules.tables import schedule_groups, schedules

log = logging.getLogger("lambdalet.scheduler")

ValidationException = _error("ValidationException", 400)
ConflictException = _error("ConflictException", 409)
ResourceNotFoundException = _error("ResourceNotFoundException", 404)
ServiceQuotaExceededException = _error("ServiceQuotaExceededException", 402)

DEFAULT_GROUP = "default"
_NAME_RE = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
                           r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?$")
_SQS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[A-Za-z0-9_-]{1,80})$")
_OTHER_TARGET_PARAMS = ("EcsParameters", "EventBridgeParameters", "EventBridgePutEventsV2Parameters",
                        "EventBridgePutRawEventsParameters", "KinesisParameters", "SageMakerPipelineParameters",
                        "SqsParameters")
MAX_SCHEDULES_PER_ACCOUNT = 10_000
DUE_BATCH = 100
MISSED_LOOKBACK_S = 3 * 86400
ROLE_NOT_ASSUMABLE = "The execution role you provide must allow AWS EventBridge Scheduler to assume the role."


@dataclass(frozen=True)
class Occurrence:
    account_id: str
    region: str
    group_name: str
    name: str
    arn: str
    scheduled_at: float
    target: dict


def schedule_arn(region: str, account: str, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{name}"


def group_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account}:schedule-group/{name}"


def _epoch(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def _dt(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, UTC)


def next_occurrence(expr, after: float, *, anchor: float, tz, start: float | None, end: float | None
                    ) -> float | None:
    """The first occurrence strictly after `after` that is within [StartDate, EndDate)."""
    if isinstance(expr, Rate):
        nxt = expr.next_after(after, anchor)
    elif isinstance(expr, At):
        nxt = expr.next_after(after, anchor, tz)
    else:
        t = after if start is None else max(after, start - 0.001)
        nxt = expr.next_after(t, anchor, tz)
    if nxt is not None and end is not None and nxt >= end:
        return None
    return nxt


def latest_due(expr, occ: float, now: float, *, anchor: float, tz, start, end) -> tuple[float, float | None]:
    """(the latest occurrence <= now, starting from the due one `occ`; the first one after now)."""
    latest = occ
    if isinstance(expr, Rate):
        if now >= occ:
            k = int((now - anchor) // expr.seconds)
            latest = max(occ, anchor + k * expr.seconds)
            if end is not None and latest >= end:
                latest = occ
    elif isinstance(expr, Cron) and now - occ > MISSED_LOOKBACK_S:
        probe = next_occurrence(expr, now - MISSED_LOOKBACK_S, anchor=anchor, tz=tz, start=start, end=end)
        if probe is not None and probe <= now:
            latest = probe
    nxt = next_occurrence(expr, latest, anchor=anchor, tz=tz, start=start, end=end)
    guard = 0
    while nxt is not None and nxt <= now and guard < 100_000:
        latest, guard = nxt, guard + 1
        nxt = next_occurrence(expr, latest, anchor=anchor, tz=tz, start=start, end=end)
    return latest, nxt


class SchedulerService:
    def __init__(self, db, keyring, *, test_seconds: bool = False, clock: Callable[[], float] = time.time,
                 authority=None):
        self.db = db
        self.keyring = keyring
        self.test_seconds = test_seconds
        self.clock = clock
        self.listeners: list[Callable[[], None]] = []     # woken when a schedule changes
        self.authority = authority  # events/authority.RoleAuthority: a schedule fires as its role

    # ================================================================ schedules

    def create_schedule(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        group = self._group(ctx, params.get("GroupName"))
        row = self._validated_row(ctx, group, name, params)
        arn = schedule_arn(ctx.region, ctx.account_id, group, name)
        now = self.clock()
        row.update(created_at=now, modified_at=now)
        with self.db.begin() as conn:
            self._require_group(conn, ctx, group)
            exists = conn.execute(sa.select(schedules.c.name).where(*self._pk(ctx, group, name))).first()
            if exists is not None:
                raise ConflictException(f"Schedule {name} already exists.")
            count = conn.execute(sa.select(sa.func.count()).select_from(schedules).where(
                schedules.c.account_id == ctx.account_id)).scalar()
            if count >= MAX_SCHEDULES_PER_ACCOUNT:
                raise ServiceQuotaExceededException("The number of schedules in this account reached its limit.")
            conn.execute(schedules.insert().values(account_id=ctx.account_id, region=ctx.region, group_name=group,
                                                   name=name, **row))
        self._changed()
        return {"ScheduleArn": arn}

    def update_schedule(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        group = self._group(ctx, params.get("GroupName"))
        row = self._validated_row(ctx, group, name, params)
        row["modified_at"] = self.clock()
        with self.db.begin() as conn:
            current = conn.execute(sa.select(schedules).where(*self._pk(ctx, group, name))).first()
            if current is None:
                raise ResourceNotFoundException(f"Schedule {name} does not exist.")
            conn.execute(sa.update(schedules).where(*self._pk(ctx, group, name)).values(**row))
        self._changed()
        return {"ScheduleArn": schedule_arn(ctx.region, ctx.account_id, group, name)}

    def get_schedule(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        group = self._group(ctx, params.get("GroupName"))
        with self.db.read() as conn:
            row = conn.execute(sa.select(schedules).where(*self._pk(ctx, group, name))).first()
        if row is None:
            raise ResourceNotFoundException(f"Schedule {name} does not exist.")
        out: dict[str, Any] = {
            "Arn": schedule_arn(row.region, row.account_id, row.group_name, row.name),
            "GroupName": row.group_name, "Name": row.name, "ScheduleExpression": row.expression,
            "ScheduleExpressionTimezone": row.timezone or "UTC", "State": row.state,
            "CreationDate": _dt(row.created_at), "LastModificationDate": _dt(row.modified_at),
            "Target": self._target(row), "FlexibleTimeWindow": json.loads(row.flexible_window),
            "ActionAfterCompletion": row.action_after_completion or "NONE",
        }
        for key, value in (("StartDate", _dt(row.start_date)), ("EndDate", _dt(row.end_date)),
                           ("Description", row.description), ("KmsKeyArn", row.kms_key_arn)):
            if value is not None:
                out[key] = value
        return out

    def delete_schedule(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        group = self._group(ctx, params.get("GroupName"))
        with self.db.begin() as conn:
            res = conn.execute(sa.delete(schedules).where(*self._pk(ctx, group, name)))
        if not res.rowcount:
            raise ResourceNotFoundException(f"Schedule {name} does not exist.")
        self._changed()
        return {}

    def list_schedules(self, ctx: RequestContext, params: dict) -> dict:
        limit = params.get("MaxResults") or 100
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ValidationException("MaxResults must be between 1 and 100.")
        s = schedules
        stmt = sa.select(s).where(s.c.account_id == ctx.account_id, s.c.region == ctx.region)
        if params.get("GroupName"):
            group = self._group(ctx, params["GroupName"])
            stmt = stmt.where(s.c.group_name == group)
        if params.get("NamePrefix"):
            stmt = stmt.where(s.c.name.startswith(params["NamePrefix"], autoescape=True))
        if params.get("State"):
            if params["State"] not in ("ENABLED", "DISABLED"):
                raise ValidationException("State must be ENABLED or DISABLED.")
            stmt = stmt.where(s.c.state == params["State"])
        if params.get("NextToken"):
            after_group, after_name = self._token(params["NextToken"])
            stmt = stmt.where(sa.or_(s.c.group_name > after_group,
                                     sa.and_(s.c.group_name == after_group, s.c.name > after_name)))
        stmt = stmt.order_by(s.c.group_name, s.c.name).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        out: dict[str, Any] = {"Schedules": [{
            "Arn": schedule_arn(r.region, r.account_id, r.group_name, r.name), "Name": r.name,
            "GroupName": r.group_name, "State": r.state, "CreationDate": _dt(r.created_at),
            "LastModificationDate": _dt(r.modified_at), "Target": {"Arn": r.target_arn}} for r in rows[:limit]]}
        if len(rows) > limit:
            last = rows[limit - 1]
            out["NextToken"] = base64.urlsafe_b64encode(json.dumps([last.group_name, last.name]).encode()).decode()
        return out

    # ================================================================ schedule groups

    def create_schedule_group(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        if params.get("Tags"):
            raise ValidationException("lambdalet does not support tags on schedule groups yet.")
        if name == DEFAULT_GROUP:
            raise ConflictException(f"Schedule group {name} already exists.")
        now = self.clock()
        with self.db.begin() as conn:
            if self._group_row(conn, ctx, name) is not None:
                raise ConflictException(f"Schedule group {name} already exists.")
            conn.execute(schedule_groups.insert().values(account_id=ctx.account_id, region=ctx.region, name=name,
                                                         created_at=now, modified_at=now))
        return {"ScheduleGroupArn": group_arn(ctx.region, ctx.account_id, name)}

    def get_schedule_group(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        with self.db.read() as conn:
            created, modified = self._require_group(conn, ctx, name)
        return {"Arn": group_arn(ctx.region, ctx.account_id, name), "Name": name, "State": "ACTIVE",
                "CreationDate": _dt(created), "LastModificationDate": _dt(modified)}

    def list_schedule_groups(self, ctx: RequestContext, params: dict) -> dict:
        prefix = params.get("NamePrefix") or ""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(schedule_groups).where(
                schedule_groups.c.account_id == ctx.account_id, schedule_groups.c.region == ctx.region)
                .order_by(schedule_groups.c.name)).all()
        groups = [(DEFAULT_GROUP, 0.0, 0.0)] + [(r.name, r.created_at, r.modified_at) for r in rows]
        return {"ScheduleGroups": [{"Arn": group_arn(ctx.region, ctx.account_id, n), "Name": n, "State": "ACTIVE",
                                    "CreationDate": _dt(c), "LastModificationDate": _dt(m)}
                                   for n, c, m in groups if n.startswith(prefix)]}

    def delete_schedule_group(self, ctx: RequestContext, params: dict) -> dict:
        name = self._name(params.get("Name"), "Name")
        if name == DEFAULT_GROUP:
            raise ValidationException("The default schedule group cannot be deleted.")
        with self.db.begin() as conn:
            self._require_group(conn, ctx, name)
            conn.execute(sa.delete(schedules).where(schedules.c.account_id == ctx.account_id,
                                                    schedules.c.region == ctx.region, schedules.c.group_name == name))
            conn.execute(sa.delete(schedule_groups).where(schedule_groups.c.account_id == ctx.account_id,
                                                          schedule_groups.c.region == ctx.region,
                                                          schedule_groups.c.name == name))
        self._changed()
        return {}

    def tag_resource(self, ctx, params):
        raise ValidationException("lambdalet does not support tags on schedules yet.")

    untag_resource = tag_resource

    def list_tags_for_resource(self, ctx, params):
        return {"Tags": []}

    # ================================================================ validation

    @staticmethod
    def _pk(ctx: RequestContext, group: str, name: str):
        s = schedules
        return (s.c.account_id == ctx.account_id, s.c.region == ctx.region, s.c.group_name == group, s.c.name == name)

    @staticmethod
    def _name(value: Any, field: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise ValidationException(f"{field} must be 1-64 characters: letters, digits, '-', '_', '.'.")
        return value

    def _group(self, ctx: RequestContext, value: Any) -> str:
        return DEFAULT_GROUP if value in (None, "") else self._name(value, "GroupName")

    @staticmethod
    def _group_row(conn, ctx: RequestContext, name: str):
        g = schedule_groups
        return conn.execute(sa.select(g).where(g.c.account_id == ctx.account_id, g.c.region == ctx.region,
                                               g.c.name == name)).first()

    def _require_group(self, conn, ctx: RequestContext, name: str) -> tuple[float, float]:
        if name == DEFAULT_GROUP:
            return 0.0, 0.0
        row = self._group_row(conn, ctx, name)
        if row is None:
            raise ResourceNotFoundException(f"Schedule group {name} does not exist.")
        return row.created_at, row.modified_at

    def _validated_row(self, ctx: RequestContext, group: str, name: str, params: dict) -> dict:
        text = params.get("ScheduleExpression")
        try:
            expr = parse_expression(text, test_seconds=self.test_seconds)
            tz_name = params.get("ScheduleExpressionTimezone") or None
            tz = zone(tz_name)
        except ExpressionError as e:
            raise ValidationException(str(e)) from None
        start, end = _epoch(params.get("StartDate")), _epoch(params.get("EndDate"))
        if start is not None and end is not None and end <= start:
            raise ValidationException("The EndDate must be after the StartDate.")
        state = params.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise ValidationException("State must be ENABLED or DISABLED.")
        after = params.get("ActionAfterCompletion") or "NONE"
        if after not in ("NONE", "DELETE"):
            raise ValidationException("ActionAfterCompletion must be NONE or DELETE.")
        ftw = params.get("FlexibleTimeWindow")
        if not isinstance(ftw, dict) or ftw.get("Mode") not in ("OFF", "FLEXIBLE"):
            raise ValidationException("FlexibleTimeWindow.Mode must be OFF or FLEXIBLE.")
        if ftw["Mode"] == "OFF" and ftw.get("MaximumWindowInMinutes") is not None:
            raise ValidationException("MaximumWindowInMinutes is only valid with FlexibleTimeWindow Mode FLEXIBLE.")
        if ftw["Mode"] == "FLEXIBLE":
            w = ftw.get("MaximumWindowInMinutes")
            if not isinstance(w, int) or not 1 <= w <= 1440:
                raise ValidationException("MaximumWindowInMinutes must be between 1 and 1440.")
        description = params.get("Description")
        if description is not None and len(description) > 512:
            raise ValidationException("Description must be at most 512 characters.")
        arn = schedule_arn(ctx.region, ctx.account_id, group, name)
        target = self._validated_target(ctx, params.get("Target"), arn)
        now = self.clock()
        anchor = start if start is not None else now
        nxt = next_occurrence(expr, now, anchor=anchor, tz=tz, start=start, end=end)
        return dict(expression=text.strip(), timezone=tz_name, start_date=start, end_date=end,
                    description=description, state=state, kms_key_arn=params.get("KmsKeyArn"),
                    action_after_completion=after, flexible_window=json.dumps(ftw, sort_keys=True),
                    target_sealed=self.keyring.seal(json.dumps(target).encode(), arn.encode()),
                    target_arn=target["Arn"], anchor=anchor, next_fire_at=nxt)

    def _validated_target(self, ctx: RequestContext, target: Any, schedule: str = "") -> dict:
        if not isinstance(target, dict):
            raise ValidationException("Target is required.")
        arn, role = target.get("Arn"), target.get("RoleArn")
        if not isinstance(role, str) or not role:
            raise ValidationException("Target.RoleArn is required.")
        self._check_role(ctx, role, schedule)
        m = _FUNCTION_ARN.match(arn or "") if isinstance(arn, str) else None
        if m is None:
            raise ValidationException(
                f"Invalid target {arn}: lambdalet schedules invoke functions only "
                "(arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]).")
        if m["account"] != ctx.account_id or m["region"] != ctx.region:
            raise ValidationException(f"The target function {arn} must be in this account and region "
                                      f"({ctx.account_id}, {ctx.region}).")
        for p in _OTHER_TARGET_PARAMS:
            if target.get(p):
                raise ValidationException(f"{p} does not apply to a Lambda function target.")
        out: dict[str, Any] = {"Arn": arn, "RoleArn": role}
        if target.get("Input") is not None:
            text = target["Input"]
            if not isinstance(text, str) or len(text.encode()) > 262_144:
                raise ValidationException("Target.Input must be a string of at most 256 KB.")
            try:
                json.loads(_substitute(text, "arn", 0.0, "id"))
            except ValueError:
                raise ValidationException("Target.Input must be valid JSON for a Lambda function target.") from None
            out["Input"] = text
        rp = target.get("RetryPolicy")
        if rp is not None:
            tries, age = rp.get("MaximumRetryAttempts", 185), rp.get("MaximumEventAgeInSeconds", 86400)
            if not isinstance(tries, int) or not 0 <= tries <= 185:
                raise ValidationException("RetryPolicy.MaximumRetryAttempts must be between 0 and 185.")
            if not isinstance(age, int) or not 60 <= age <= 86400:
                raise ValidationException("RetryPolicy.MaximumEventAgeInSeconds must be between 60 and 86400.")
            out["RetryPolicy"] = {"MaximumRetryAttempts": tries, "MaximumEventAgeInSeconds": age}
        else:
            out["RetryPolicy"] = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
        dlc = target.get("DeadLetterConfig")
        if dlc:
            q = _SQS_ARN.match(dlc.get("Arn") or "")
            if q is None or q["account"] != ctx.account_id:
                raise ValidationException("DeadLetterConfig.Arn must be an SQS queue ARN of this account.")
            out["DeadLetterConfig"] = {"Arn": dlc["Arn"]}
        return out

    def _check_role(self, ctx: RequestContext, role: str, schedule: str) -> None:
        """The role exists in this account and trusts the Scheduler; the caller may pass it."""
        if self.authority is None:
            return
        parsed = parse_role_arn(role)
        if parsed is None or parsed[0] != ctx.account_id or not self.authority.trusts(
                role, SCHEDULER_PRINCIPAL, source_account=ctx.account_id, source_arn=schedule or None):
            raise ValidationException(ROLE_NOT_ASSUMABLE)
        decision = self.authority.pass_role(ctx.caller, role, SCHEDULER_PRINCIPAL, associated_arn=schedule or None,
                                            context=request_context(ctx))
        if not decision.allowed:
            raise AccessDeniedException(decision.message(ctx.caller.principal_arn, "iam:PassRole", role))

    def fire_refusal(self, occ: "Occurrence", action: str, resource: str) -> AwsError | None:
        """Fire time: None if the schedule's role may still `action` on `resource`, else the error."""
        if self.authority is None:
            return None
        role = str(occ.target.get("RoleArn") or "")
        if not self.authority.trusts(role, SCHEDULER_PRINCIPAL, source_account=occ.account_id, source_arn=occ.arn):
            return AccessDeniedException(f"{ROLE_NOT_ASSUMABLE} ({role})")
        decision = self.authority.role_may(role, action, resource, session_name="scheduler", region=occ.region)
        if not decision.allowed:
            return AccessDeniedException(decision.message(self.authority.principal_of(role, "scheduler"), action,
                                                          resource))
        return None

    def _target(self, row) -> dict:
        arn = schedule_arn(row.region, row.account_id, row.group_name, row.name)
        return json.loads(self.keyring.unseal(row.target_sealed, arn.encode()))

    @staticmethod
    def _token(token: str) -> tuple[str, str]:
        try:
            group, name = json.loads(base64.urlsafe_b64decode(token.encode()))
            return str(group), str(name)
        except Exception:
            raise ValidationException("Invalid NextToken.") from None

    def _changed(self) -> None:
        for notify in list(self.listeners):
            notify()

    # ================================================================ firing (the scheduler thread)

    def claim_due(self, now: float | None = None) -> list[Occurrence]:
        """Advance every due ENABLED schedule past `now` (one conditional UPDATE each) and return the
        occurrences this call claimed (each at most once, ever)."""
        now = self.clock() if now is None else now
        s = schedules
        with self.db.read() as conn:
            rows = conn.execute(sa.select(s).where(s.c.state == "ENABLED", s.c.next_fire_at.is_not(None),
                                                   s.c.next_fire_at <= now)
                                .order_by(s.c.next_fire_at).limit(DUE_BATCH)).all()
        claimed = []
        for row in rows:
            try:
                expr = parse_expression(row.expression, test_seconds=True)
                tz = zone(row.timezone)
                latest, nxt = latest_due(expr, row.next_fire_at, now, anchor=row.anchor, tz=tz,
                                         start=row.start_date, end=row.end_date)
            except ExpressionError as e:        # stored before a parser change? never fire it in a loop
                log.error("schedule %s/%s: %s; disabled", row.group_name, row.name, e)
                latest, nxt = None, None
            pk = (s.c.account_id == row.account_id, s.c.region == row.region, s.c.group_name == row.group_name,
                  s.c.name == row.name)
            with self.db.begin() as conn:
                res = conn.execute(sa.update(s).where(*pk, s.c.state == "ENABLED", s.c.next_fire_at == row.next_fire_at)
                                   .values(next_fire_at=nxt, last_fired_at=latest if latest is not None
                                           else row.last_fired_at))
                if not res.rowcount or latest is None:
                    continue
                if nxt is None and row.action_after_completion == "DELETE":
                    conn.execute(sa.delete(s).where(*pk))
            arn = schedule_arn(row.region, row.account_id, row.group_name, row.name)
            try:
                target = json.loads(self.keyring.unseal(row.target_sealed, arn.encode()))
            except Exception:
                log.exception("schedule %s: its target cannot be read; occurrence skipped", arn)
                continue
            claimed.append(Occurrence(row.account_id, row.region, row.group_name, row.name, arn, latest, target))
        return claimed

    def next_due(self) -> float | None:
        s = schedules
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.min(s.c.next_fire_at)).where(s.c.state == "ENABLED")).scalar()


def _substitute(text: str, arn: str, scheduled_at: float, execution_id: str, attempt: int = 1) -> str:
    when = dt.datetime.fromtimestamp(scheduled_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (text.replace("<aws.scheduler.schedule-arn>", arn)
            .replace("<aws.scheduler.scheduled-time>", when)
            .replace("<aws.scheduler.execution-id>", execution_id)
            .replace("<aws.scheduler.attempt-number>", str(attempt)))


def event_payload(occ: Occurrence, execution_id: str) -> str:
    text = occ.target.get("Input")
    if text is None:
        return "{}"
    return _substitute(text, occ.arn, occ.scheduled_at, execution_id)


class Scheduler:
    """The scheduler thread: fires due schedules through `submit(occurrence, payload, execution_id)`
    (server wiring: an Event invocation on the async queue), `dead_letter(...)` when that fails."""

    def __init__(self, service: SchedulerService, submit: Callable[[Occurrence, str, str], None],
                 dead_letter: Callable[[Occurrence, str, str, AwsError], None] | None = None, *,
                 tick_s: float = 1.0):
        self.service = service
        self.submit = submit
        self.dead_letter = dead_letter
        self.tick_s = tick_s
        self.fired = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        service.listeners.append(self._wake.set)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                nxt = self.service.next_due()
            except Exception:
                log.exception("scheduler tick failed")
                nxt = None
            wait = self.tick_s
            if nxt is not None:
                wait = max(0.01, min(wait, nxt - self.service.clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self, now: float | None = None) -> int:
        n = 0
        for occ in self.service.claim_due(now):
            execution_id = str(uuid.uuid4())
            payload = event_payload(occ, execution_id)
            try:
                self.submit(occ, payload, execution_id)
                n += 1
            except AwsError as e:
                log.warning("schedule %s: the invocation of %s could not be queued: %s", occ.arn,
                            occ.target.get("Arn"), e.message)
                if self.dead_letter is not None and occ.target.get("DeadLetterConfig"):
                    try:
                        self.dead_letter(occ, payload, execution_id, e)
                    except Exception:
                        log.exception("schedule %s: could not send to its dead-letter queue", occ.arn)
            except Exception:
                log.exception("schedule %s: the invocation could not be queued", occ.arn)
        self.fired += n
        return n


# ------------------------------------------------------------------------------ wiring

def build_scheduler(db, keyring, queues, resolve, enqueue_event, *, authority=None, test_seconds: bool = False,
                    tick_s: float | None = None):
    """(SchedulerService, Scheduler): fires through the async-invoke queue. `resolve` is the data
    plane's TargetResolver, `enqueue_event` AsyncInvocations.enqueue, `queues` the dead-letter queues'
    service, `authority` the events/authority.RoleAuthority a schedule's role acts through."""
    from lambdalet.events.async_invoke import internal_context
    from lambdalet.events.messages import EventMessage

    service = SchedulerService(db, keyring, test_seconds=test_seconds, authority=authority)

    def submit(occ: Occurrence, payload: str, execution_id: str) -> None:
        refusal = service.fire_refusal(occ, "lambda:InvokeFunction", occ.target["Arn"])
        if refusal is not None:
            raise refusal            # the occurrence fails: dead-letter queue, as any failed invocation
        m = _FUNCTION_ARN.match(occ.target["Arn"])
        ctx = internal_context(occ.account_id, occ.region, execution_id)
        target = resolve(ctx, m["name"], m["qualifier"])
        enqueue_event(EventMessage(
            occ.account_id, occ.region, target.function_name, m["qualifier"], execution_id, time.time(),
            payload=payload))

    def dead_letter(occ: Occurrence, payload: str, execution_id: str, err: AwsError) -> None:
        dlq = occ.target["DeadLetterConfig"]["Arn"]
        refusal = service.fire_refusal(occ, "sqs:SendMessage", dlq)
        if refusal is not None:
            log.error("schedule %s: not sent to its dead-letter queue %s: %s", occ.arn, dlq, refusal.message)
            return
        q = _SQS_ARN.match(dlq)
        attrs = {k: {"DataType": "String", "StringValue": v} for k, v in {
            "ERROR_CODE": err.code, "ERROR_MESSAGE": err.message[:1000] or err.code,
            "EXECUTION_ID": execution_id, "SCHEDULE_ARN": occ.arn, "TARGET_ARN": occ.target["Arn"],
            "RETRY_ATTEMPTS": "0"}.items()}
        queues.enqueue(q["account"], q["name"], payload.encode(), attrs, region=q["region"])

    tick = tick_s if tick_s is not None else (0.2 if test_seconds else 1.0)
    return service, Scheduler(service, submit, dead_letter, tick_s=tick)
