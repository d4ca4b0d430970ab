"""Tables of EventBridge Scheduler's subset (migration 0011_schedules), attached to the platform's
`metadata`.

- `schedules`: one row per schedule. Target (function ARN, Input, RoleArn, retry/DLQ settings) is
  sealed with the keyring (AAD = the schedule ARN): Input often carries configuration or secrets.
  `next_fire_at` is the next occurrence (epoch seconds, NULL = none left); `last_fired_at` the
  scheduled time of the last occurrence fired. The scheduler moves both in one conditional UPDATE
  before it queues the invocation, so a restart never fires an occurrence twice.
- `schedule_groups`: groups other than `default` (which always exists).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

schedules = sa.Table(
    "schedules", metadata,
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("group_name", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("expression", sa.String(256), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("start_date", sa.Float, nullable=True),
    sa.Column("end_date", sa.Float, nullable=True),
    sa.Column("description", sa.String(512), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("kms_key_arn", sa.String(2048), nullable=True),
    sa.Column("action_after_completion", sa.String(16), nullable=True),
    sa.Column("flexible_window", sa.Text, nullable=False),
    sa.Column("target_sealed", sa.LargeBinary, nullable=False),
    sa.Column("target_arn", sa.String(1600), nullable=False),      # shown by ListSchedules (not secret)
    sa.Column("anchor", sa.Float, nullable=False),                 # rate(...) counts from here
    sa.Column("next_fire_at", sa.Float, nullable=True),
    sa.Column("last_fired_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("modified_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "region", "group_name", "name", name="pk_schedules"),
    sa.Index("ix_schedules_due", "state", "next_fire_at"),
)

schedule_groups = sa.Table(
    "schedule_groups", metadata,
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("modified_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "region", "name", name="pk_schedule_groups"),
)
