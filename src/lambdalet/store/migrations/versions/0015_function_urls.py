"""Lambda function URLs (lambdalet/store/function_url_tables.py): one row per URL, on $LATEST or an
alias; deleted with its function or alias (cascade).

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_url_configs",
        sa.Column("url_id", sa.String(32), nullable=False),
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=False),
        sa.Column("alias_id", sa.Integer, nullable=True),
        sa.Column("auth_type", sa.String(16), nullable=False),
        sa.Column("invoke_mode", sa.String(16), nullable=False, server_default="BUFFERED"),
        sa.Column("cors", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"],
                                name="fk_function_url_configs_function_id_functions", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["alias_id"], ["aliases.id"],
                                name="fk_function_url_configs_alias_id_aliases", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("url_id", name="pk_function_url_configs"),
        sa.UniqueConstraint("function_id", "qualifier", name="uq_function_url_configs_function_id_qualifier"),
    )


def downgrade() -> None:
    op.drop_table("function_url_configs")
