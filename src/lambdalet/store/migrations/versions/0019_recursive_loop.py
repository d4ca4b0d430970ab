"""A function's recursive loop detection setting (Get/PutFunctionRecursionConfig): NULL is AWS's
default, Terminate.

Revision ID: 0019
Revises: 0018
"""
from alembic import op
import sqlalchemy as sa

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("functions", sa.Column("recursive_loop", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("recursive_loop")
