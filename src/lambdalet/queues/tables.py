"""The queue tables, attached to the platform's `metadata` (created by migration 0002_queues).

Message content never sits here in plain text: `body_sealed` and `attrs_sealed` are keyring
envelopes whose AAD names the queue id and the message id (see `queues.service._aad`).
Times are epoch seconds (Float). A message is receivable when `visible_at <= now`; it is in flight
when it has been received (`receive_count > 0`) and `visible_at > now`, delayed when never received
and `visible_at > now`.

FIFO queues (migration 0016, queues/fifo.py): a message's group is `group_key`, an HMAC of its
MessageGroupId (the id itself is sealed with the attributes), and its order is `sequence`, drawn from
the queue's `fifo_sequence` counter; both are NULL for standard queues, and the two FIFO indexes are
partial (group_key IS NOT NULL), so standard messages never enter them. `sqs_fifo_dedup` is the
5-minute deduplication window: one row per (queue, HMAC of scope + MessageDeduplicationId).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

sqs_queues = sa.Table(
    "sqs_queues", metadata,
    sa.Column("id", sa.String(36), primary_key=True),              # uuid4; bound into message AAD
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("attributes", sa.Text, nullable=False),               # JSON of the settable attributes
    sa.Column("tags", sa.Text, nullable=False, server_default="{}"),  # JSON {key: value}
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("modified_at", sa.Float, nullable=False),
    sa.Column("purged_at", sa.Float, nullable=True),
    sa.Column("fifo_sequence", sa.BigInteger, nullable=True),      # FIFO: the last SequenceNumber issued
    sa.UniqueConstraint("account_id", "region", "name", name="uq_sqs_queues_account_region_name"),
)

sqs_messages = sa.Table(
    "sqs_messages", metadata,
    sa.Column("id", sa.String(36), primary_key=True),               # the MessageId (uuid4)
    sa.Column("queue_id", sa.String(36), sa.ForeignKey("sqs_queues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("body_sealed", sa.LargeBinary, nullable=False),
    sa.Column("attrs_sealed", sa.LargeBinary, nullable=True),       # JSON of message + system attributes
    sa.Column("sender_id", sa.String(128), nullable=False, server_default=""),
    sa.Column("sent_at", sa.Float, nullable=False),                 # kept when redriven: retention counts from here
    sa.Column("visible_at", sa.Float, nullable=False),
    sa.Column("receive_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_received_at", sa.Float, nullable=True),
    sa.Column("dlq_source_arn", sa.String(256), nullable=True),
    sa.Column("group_key", sa.String(64), nullable=True),           # FIFO: HMAC of the MessageGroupId
    sa.Column("sequence", sa.BigInteger, nullable=True),            # FIFO: order within the queue
    sa.Index("ix_sqs_messages_queue_visible", "queue_id", "visible_at"),
    sa.Index("ix_sqs_messages_fifo_group", "queue_id", "group_key", "sequence",
             sqlite_where=sa.text("group_key IS NOT NULL"), postgresql_where=sa.text("group_key IS NOT NULL")),
    sa.Index("ix_sqs_messages_fifo_sequence", "queue_id", "sequence",
             sqlite_where=sa.text("group_key IS NOT NULL"), postgresql_where=sa.text("group_key IS NOT NULL")),
)

sqs_fifo_dedup = sa.Table(
    "sqs_fifo_dedup", metadata,
    sa.Column("queue_id", sa.String(36), sa.ForeignKey("sqs_queues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("dedup_key", sa.String(64), primary_key=True),         # HMAC of (scope, MessageDeduplicationId)
    sa.Column("message_id", sa.String(36), nullable=False),          # the original: answered to duplicates
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_sqs_fifo_dedup_queue_expires", "queue_id", "expires_at"),
)
