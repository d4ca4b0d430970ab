"""SQS FIFO queues (lambdalet/queues/fifo.py): a per-queue sequence counter, each message's group
(HMAC) and sequence, two partial indexes for the group claim, and the 5-minute deduplication window.

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_FIFO_ONLY = sa.text("group_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("sqs_queues", sa.Column("fifo_sequence", sa.BigInteger, nullable=True))
    op.add_column("sqs_messages", sa.Column("group_key", sa.String(64), nullable=True))
    op.add_column("sqs_messages", sa.Column("sequence", sa.BigInteger, nullable=True))
    op.create_index("ix_sqs_messages_fifo_group", "sqs_messages", ["queue_id", "group_key", "sequence"],
                    sqlite_where=_FIFO_ONLY, postgresql_where=_FIFO_ONLY)
    op.create_index("ix_sqs_messages_fifo_sequence", "sqs_messages", ["queue_id", "sequence"],
                    sqlite_where=_FIFO_ONLY, postgresql_where=_FIFO_ONLY)
    op.create_table(
        "sqs_fifo_dedup",
        sa.Column("queue_id", sa.String(36), nullable=False),
        sa.Column("dedup_key", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "dedup_key", name="pk_sqs_fifo_dedup"),
        sa.ForeignKeyConstraint(["queue_id"], ["sqs_queues.id"], ondelete="CASCADE",
                                name="fk_sqs_fifo_dedup_queue_id_sqs_queues"),
    )
    op.create_index("ix_sqs_fifo_dedup_queue_expires", "sqs_fifo_dedup", ["queue_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sqs_fifo_dedup_queue_expires", table_name="sqs_fifo_dedup")
    op.drop_table("sqs_fifo_dedup")
    op.drop_index("ix_sqs_messages_fifo_sequence", table_name="sqs_messages")
    op.drop_index("ix_sqs_messages_fifo_group", table_name="sqs_messages")
    with op.batch_alter_table("sqs_messages") as batch:
        batch.drop_column("sequence")
        batch.drop_column("group_key")
    with op.batch_alter_table("sqs_queues") as batch:
        batch.drop_column("fifo_sequence")
