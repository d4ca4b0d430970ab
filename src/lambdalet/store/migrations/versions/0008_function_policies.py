"""Resource-based policies on functions (AddPermission / RemovePermission / GetPolicy), one document
per function and qualifier ("" = the unqualified function); deleted with the function (cascade).

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_policies",
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"], name="fk_function_policies_function_id_functions",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("function_id", "qualifier", name="pk_function_policies"),
    )


def downgrade() -> None:
    op.drop_table("function_policies")
