"""IAM permissions boundaries (a managed policy ARN on a user or role) and what a role session
carries besides its role: the SourceIdentity it was created with, its session policies (inline
document and policy ARNs, JSON) and its session tags (JSON), all fixed for the session's life.

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("iam_users", sa.Column("permissions_boundary", sa.String(2048), nullable=True))
    op.add_column("iam_roles", sa.Column("permissions_boundary", sa.String(2048), nullable=True))
    op.add_column("iam_sessions", sa.Column("source_identity", sa.String(256), nullable=True))
    op.add_column("iam_sessions", sa.Column("session_policies", sa.Text, nullable=True))
    op.add_column("iam_sessions", sa.Column("tags", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("iam_sessions") as batch:
        batch.drop_column("tags")
        batch.drop_column("session_policies")
        batch.drop_column("source_identity")
    with op.batch_alter_table("iam_roles") as batch:
        batch.drop_column("permissions_boundary")
    with op.batch_alter_table("iam_users") as batch:
        batch.drop_column("permissions_boundary")
