"""Queues (SQS-compatible): queues and their messages (bodies and attributes sealed).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sqs_queues",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.Column("purged_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sqs_queues"),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_sqs_queues_account_region_name"),
    )
    op.create_table(
        "sqs_messages",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("queue_id", sa.String(36), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary, nullable=False),
        sa.Column("attrs_sealed", sa.LargeBinary, nullable=True),
        sa.Column("sender_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("sent_at", sa.Float, nullable=False),
        sa.Column("visible_at", sa.Float, nullable=False),
        sa.Column("receive_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_received_at", sa.Float, nullable=True),
        sa.Column("dlq_source_arn", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sqs_messages"),
        sa.ForeignKeyConstraint(["queue_id"], ["sqs_queues.id"], ondelete="CASCADE",
                                name="fk_sqs_messages_queue_id_sqs_queues"),
    )
    op.create_index("ix_sqs_messages_queue_visible", "sqs_messages", ["queue_id", "visible_at"])


def downgrade() -> None:
    op.drop_index("ix_sqs_messages_queue_visible", table_name="sqs_messages")
    op.drop_table("sqs_messages")
    op.drop_table("sqs_queues")
