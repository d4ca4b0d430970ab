"""Asynchronous invocation: event invoke configs and the side table for large Event payloads.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_invoke_configs",
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=False),
        sa.Column("max_retry_attempts", sa.Integer, nullable=True),
        sa.Column("max_event_age_s", sa.Integer, nullable=True),
        sa.Column("on_success", sa.String(350), nullable=True),
        sa.Column("on_failure", sa.String(350), nullable=True),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("function_id", "qualifier", name="pk_event_invoke_configs"),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"], ondelete="CASCADE",
                                name="fk_event_invoke_configs_function_id_functions"),
    )
    op.create_table(
        "event_payloads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("payload_sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_payloads"),
    )


def downgrade() -> None:
    op.drop_table("event_payloads")
    op.drop_table("event_invoke_configs")
