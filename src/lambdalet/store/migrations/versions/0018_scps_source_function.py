"""AWS Organizations service control policies (policies, their targets, the policy types enabled on
the root) and the function a role session was issued to (lambda:SourceFunctionArn).

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("iam_sessions", sa.Column("source_function_arn", sa.String(2048), nullable=True))
    op.add_column("organizations", sa.Column("policy_types", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "organization_policies",
        sa.Column("id", sa.String(130), primary_key=True),
        sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(512), nullable=False, server_default=""),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_organization_policies_organization_id", "organization_policies", ["organization_id"])
    op.create_table(
        "organization_policy_targets",
        sa.Column("policy_id", sa.String(130), primary_key=True),
        sa.Column("target_id", sa.String(100), primary_key=True),
        sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("attached_at", sa.Float, nullable=False),
    )
    op.create_index("ix_organization_policy_targets_org_target", "organization_policy_targets",
                    ["organization_id", "target_id"])


def downgrade() -> None:
    op.drop_index("ix_organization_policy_targets_org_target", "organization_policy_targets")
    op.drop_table("organization_policy_targets")
    op.drop_index("ix_organization_policies_organization_id", "organization_policies")
    op.drop_table("organization_policies")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("policy_types")
    with op.batch_alter_table("iam_sessions") as batch:
        batch.drop_column("source_function_arn")
