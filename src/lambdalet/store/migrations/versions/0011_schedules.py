"""EventBridge Scheduler subset: schedules and schedule groups (lambdalet/schedules/tables.py).

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
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
        sa.Column("target_arn", sa.String(1600), nullable=False),
        sa.Column("anchor", sa.Float, nullable=False),
        sa.Column("next_fire_at", sa.Float, nullable=True),
        sa.Column("last_fired_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region", "group_name", "name", name="pk_schedules"),
    )
    op.create_index("ix_schedules_due", "schedules", ["state", "next_fire_at"])
    op.create_table(
        "schedule_groups",
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "region", "name", name="pk_schedule_groups"),
    )


def downgrade() -> None:
    op.drop_table("schedule_groups")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
