"""Lambda layers' tables (migration 0014_layers), attached to the platform's `metadata`.

- `layers`: one row per (account, region, layer name), created by its first PublishLayerVersion
  and kept after its versions are deleted, so `next_version` never hands a number out twice
  (AWS numbers a layer's versions 1, 2, 3... and never reuses one).
- `layer_versions`: immutable once written. The zip lives in the blob store (`code_sha256` is its
  id); `unzipped_size` is kept for the 250 MB function-plus-layers limit. Compatible runtimes and
  architectures are JSON lists, NULL when the publisher gave none (AWS then omits them).
- `layer_version_policies`: the resource-based policy of one layer version (AddLayerVersionPermission),
  stored as the JSON GetLayerVersionPolicy returns; it goes with its version (cascade).

Functions do not reference these rows: a function's configuration records each layer's ARN, size
and digest, so a function version keeps working after a layer version it uses is deleted (as in AWS).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

layers = sa.Table(
    "layers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(140), nullable=False),
    sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("account_id", "region", "name", name="uq_layers_account_region_name"),
)

layer_versions = sa.Table(
    "layer_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("layer_id", sa.Integer, sa.ForeignKey("layers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("description", sa.String(256), nullable=False, server_default=""),
    sa.Column("license_info", sa.String(512), nullable=True),
    sa.Column("compatible_runtimes", sa.Text, nullable=True),        # JSON list, NULL when not given
    sa.Column("compatible_architectures", sa.Text, nullable=True),   # JSON list, NULL when not given
    sa.Column("code_sha256", sa.String(64), nullable=False),         # hex; the blob id
    sa.Column("code_size", sa.BigInteger, nullable=False),           # zipped bytes
    sa.Column("unzipped_size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("layer_id", "version", name="uq_layer_versions_layer_id_version"),
)

layer_version_policies = sa.Table(
    "layer_version_policies", metadata,
    sa.Column("layer_version_id", sa.Integer, sa.ForeignKey("layer_versions.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("document", sa.Text, nullable=False),                  # as GetLayerVersionPolicy returns it
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
