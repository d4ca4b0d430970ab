"""The log tables, attached to the platform's `metadata` (created by migration 0003_logs).

Log text never sits here in plain text: each `log_batches` row holds a run of consecutive events of
one stream as ONE keyring envelope (`data_sealed`: zlib-compressed JSON `[[timestamp_ms, message],
...]`) whose AAD names the account, region, group, stream and sequence range (see `store._aad`).
The plain columns are what range queries need: sequence numbers (the stream's event ordinals, the
GetLogEvents position), first/last timestamps (FilterLogEvents and time ranges) and sizes.
Times are epoch milliseconds (BigInteger), as the CloudWatch Logs API speaks them.
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

log_groups = sa.Table(
    "log_groups", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=True),         # NULL: never expire (AWS's default)
    sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),   # plain message bytes kept
    sa.UniqueConstraint("account_id", "region", "name", name="uq_log_groups_account_region_name"),
)

log_streams = sa.Table(
    "log_streams", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("log_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("first_event_ms", sa.BigInteger, nullable=True),
    sa.Column("last_event_ms", sa.BigInteger, nullable=True),
    sa.Column("last_ingestion_ms", sa.BigInteger, nullable=True),
    sa.Column("next_seq", sa.BigInteger, nullable=False, server_default="0"),   # ordinal of the next event
    sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("group_id", "name", name="uq_log_streams_group_name"),
)

log_batches = sa.Table(
    "log_batches", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("log_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("stream_id", sa.Integer, sa.ForeignKey("log_streams.id", ondelete="CASCADE"), nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("first_ts", sa.BigInteger, nullable=False),
    sa.Column("last_ts", sa.BigInteger, nullable=False),
    sa.Column("ingestion_ms", sa.BigInteger, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False),
    sa.Column("plain_bytes", sa.BigInteger, nullable=False),
    sa.Column("data_sealed", sa.LargeBinary, nullable=False),
    sa.Index("ix_log_batches_stream_seq", "stream_id", "first_seq"),
    sa.Index("ix_log_batches_group_ts", "group_id", "first_ts"),
)
