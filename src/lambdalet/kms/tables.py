"""KMS tables, attached to the platform's `metadata` (created by migration 0009_kms).

No key material sits here: a key's material is a KEK in the keyring (`keys/kms-<key id>.key`,
wrapped by the master key); the row only names it (`kek_id`) and holds the key's metadata,
state and key policy. Times are epoch seconds (Float).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

kms_keys = sa.Table(
    "kms_keys", metadata,
    sa.Column("id", sa.String(36), primary_key=True),                 # the KeyId (uuid4)
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("kek_id", sa.String(64), nullable=False),               # keyring KEK holding the material
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("key_usage", sa.String(32), nullable=False),
    sa.Column("key_spec", sa.String(32), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),                # Enabled | Disabled | PendingDeletion
    sa.Column("policy", sa.Text, nullable=False),                     # the "default" key policy (JSON)
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),  # JSON [{TagKey, TagValue}]
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("deletion_date", sa.Float, nullable=True),              # set while PendingDeletion
    sa.Column("pending_window_days", sa.Integer, nullable=True),
    sa.Index("ix_kms_keys_account_region", "account_id", "region"),
)

kms_aliases = sa.Table(
    "kms_aliases", metadata,
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),                # "alias/..."
    sa.Column("key_id", sa.String(36), sa.ForeignKey("kms_keys.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "region", "name", name="pk_kms_aliases"),
    sa.Index("ix_kms_aliases_key_id", "key_id"),
)
