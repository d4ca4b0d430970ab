"""Initial schema: accounts, access keys, functions, versions, aliases, tags.

Written out rather than `metadata.create_all`, so later migrations start from a fixed point.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("principal_arn", sa.String(2048), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="Active"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name="fk_access_keys_account_id_accounts"),
    )
    op.create_index("ix_access_keys_account_id", "access_keys", ["account_id"])
    op.create_table(
        "functions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("reserved_concurrency", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_functions"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name="fk_functions_account_id_accounts"),
        sa.UniqueConstraint("account_id", "region", "name", name="uq_functions_account_region_name"),
    )
    op.create_table(
        "function_versions",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("version_num", sa.Integer, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("env_sealed", sa.LargeBinary, nullable=True),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="Active"),
        sa.Column("last_update_status", sa.String(16), nullable=False, server_default="Successful"),
        sa.PrimaryKeyConstraint("id", name="pk_function_versions"),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"], ondelete="CASCADE",
                                name="fk_function_versions_function_id_functions"),
        sa.UniqueConstraint("function_id", "version", name="uq_function_versions_function_version"),
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("function_version", sa.String(16), nullable=False),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("routing", sa.Text, nullable=True),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"], ondelete="CASCADE",
                                name="fk_aliases_function_id_functions"),
        sa.UniqueConstraint("function_id", "name", name="uq_aliases_function_name"),
    )
    op.create_table(
        "tags",
        sa.Column("resource_arn", sa.String(1024), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("resource_arn", "key", name="pk_tags"),
    )


def downgrade() -> None:
    for table in ("tags", "aliases", "function_versions", "functions", "access_keys", "accounts"):
        op.drop_table(table)
