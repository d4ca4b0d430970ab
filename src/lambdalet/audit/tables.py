"""The audit trail's tables, attached to the platform's `metadata` (created by migration 0007_audit).

`audit_events` is append-only: rows are only ever inserted, by the one writer thread
(`recorder.AuditRecorder`), with consecutive sequence numbers. The CloudTrail record itself is
sealed (`body_sealed`, a keyring envelope); the other columns are a plaintext index for
LookupEvents (operation names, user names, times: the same class of data as function names in
`functions`, never request parameters), and `audit verify` checks every one of them against the
sealed record. `hash` is the chain: SHA-256(previous hash || the sealed plaintext).

`audit_digests` holds the signed digests: each covers `first_seq..last_seq`, names the chain hash
at `last_seq` and the previous digest's signature (`body` is the exact signed text).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3 ... no gaps
    sa.Column("event_id", sa.String(36), nullable=False),          # CloudTrail eventID (uuid4); in the seal's AAD
    sa.Column("event_time", sa.Float, nullable=False),             # epoch seconds of eventTime
    sa.Column("account_id", sa.String(12), nullable=False),        # recipientAccountId ("" if unknown)
    sa.Column("category", sa.String(16), nullable=False),          # Management | Data
    sa.Column("event_source", sa.String(64), nullable=False),
    sa.Column("event_name", sa.String(128), nullable=False),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("access_key_id", sa.String(32), nullable=False),
    sa.Column("resource_type", sa.String(64), nullable=False),
    sa.Column("resource_name", sa.String(2048), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),              # hex chain hash through this event
    sa.Column("body_sealed", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    sa.Index("ix_audit_events_account_time", "account_id", "event_time"),
)

audit_digests = sa.Table(
    "audit_digests", metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),   # 1, 2, 3 ...
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),                    # canonical JSON, exactly what was signed
    sa.Column("signature", sa.String(128), nullable=False),        # hex Ed25519 signature of body
)
