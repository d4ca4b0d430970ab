"""Audit trail: append-only, hash-chained, sealed CloudTrail events and their signed digests.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_time", sa.Float, nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("event_source", sa.String(64), nullable=False),
        sa.Column("event_name", sa.String(128), nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_name", sa.String(2048), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    op.create_index("ix_audit_events_account_time", "audit_events", ["account_id", "event_time"])
    op.create_table(
        "audit_digests",
        sa.Column("number", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_audit_digests"),
    )


def downgrade() -> None:
    op.drop_table("audit_digests")
    op.drop_index("ix_audit_events_account_time", table_name="audit_events")
    op.drop_table("audit_events")
