"""Lambda layers: layers, layer versions and their permissions (lambdalet/store/layer_tables.py).

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(140), nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_layers"),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_layers_account_region_name"),
    )
    op.create_table(
        "layer_versions",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("layer_id", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("license_info", sa.String(512), nullable=True),
        sa.Column("compatible_runtimes", sa.Text, nullable=True),
        sa.Column("compatible_architectures", sa.Text, nullable=True),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("unzipped_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["layer_id"], ["layers.id"], name="fk_layer_versions_layer_id_layers",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_layer_versions"),
        sa.UniqueConstraint("layer_id", "version", name="uq_layer_versions_layer_id_version"),
    )
    op.create_table(
        "layer_version_policies",
        sa.Column("layer_version_id", sa.Integer, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["layer_version_id"], ["layer_versions.id"],
                                name="fk_layer_version_policies_layer_version_id_layer_versions", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("layer_version_id", name="pk_layer_version_policies"),
    )


def downgrade() -> None:
    op.drop_table("layer_version_policies")
    op.drop_table("layer_versions")
    op.drop_table("layers")
