"""Logs (CloudWatch Logs-compatible): log groups, streams and sealed event batches.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_groups",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=True),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_log_groups"),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_log_groups_account_region_name"),
    )
    op.create_table(
        "log_streams",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("first_event_ms", sa.BigInteger, nullable=True),
        sa.Column("last_event_ms", sa.BigInteger, nullable=True),
        sa.Column("last_ingestion_ms", sa.BigInteger, nullable=True),
        sa.Column("next_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_log_streams"),
        sa.ForeignKeyConstraint(["group_id"], ["log_groups.id"], ondelete="CASCADE",
                                name="fk_log_streams_group_id_log_groups"),
        sa.UniqueConstraint("group_id", "name", name="uq_log_streams_group_name"),
    )
    op.create_table(
        "log_batches",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("stream_id", sa.Integer, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("first_ts", sa.BigInteger, nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.Column("ingestion_ms", sa.BigInteger, nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("plain_bytes", sa.BigInteger, nullable=False),
        sa.Column("data_sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_batches"),
        sa.ForeignKeyConstraint(["group_id"], ["log_groups.id"], ondelete="CASCADE",
                                name="fk_log_batches_group_id_log_groups"),
        sa.ForeignKeyConstraint(["stream_id"], ["log_streams.id"], ondelete="CASCADE",
                                name="fk_log_batches_stream_id_log_streams"),
    )
    op.create_index("ix_log_batches_stream_seq", "log_batches", ["stream_id", "first_seq"])
    op.create_index("ix_log_batches_group_ts", "log_batches", ["group_id", "first_ts"])


def downgrade() -> None:
    op.drop_index("ix_log_batches_group_ts", table_name="log_batches")
    op.drop_index("ix_log_batches_stream_seq", table_name="log_batches")
    op.drop_table("log_batches")
    op.drop_table("log_streams")
    op.drop_table("log_groups")
