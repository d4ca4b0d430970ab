"""KMS: customer keys (metadata, state, key policy; the material is a KEK in the keyring) and aliases.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kms_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("key_usage", sa.String(32), nullable=False),
        sa.Column("key_spec", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deletion_date", sa.Float, nullable=True),
        sa.Column("pending_window_days", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kms_keys"),
    )
    op.create_index("ix_kms_keys_account_region", "kms_keys", ["account_id", "region"])
    op.create_table(
        "kms_aliases",
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["kms_keys.id"], name="fk_kms_aliases_key_id_kms_keys",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "region", "name", name="pk_kms_aliases"),
    )
    op.create_index("ix_kms_aliases_key_id", "kms_aliases", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_kms_aliases_key_id", table_name="kms_aliases")
    op.drop_table("kms_aliases")
    op.drop_index("ix_kms_keys_account_region", table_name="kms_keys")
    op.drop_table("kms_keys")
