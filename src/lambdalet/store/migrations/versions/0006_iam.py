"""IAM: users, roles (trust policies), managed policies and their versions, attachments, inline
policies, and STS role sessions (the session-token hash beside the session's access key).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_lower", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_iam_users"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name="fk_iam_users_account_id_accounts"),
        sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_users_account_name"),
    )
    op.create_table(
        "iam_roles",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_lower", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("trust_policy", sa.Text, nullable=False),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("max_session_duration", sa.Integer, nullable=False, server_default="3600"),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_iam_roles"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name="fk_iam_roles_account_id_accounts"),
        sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_roles_account_name"),
    )
    op.create_table(
        "iam_policies",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("name_lower", sa.String(128), nullable=False),
        sa.Column("path", sa.String(512), nullable=False, server_default="/"),
        sa.Column("arn", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False, server_default=""),
        sa.Column("default_version", sa.String(8), nullable=False, server_default="v1"),
        sa.Column("next_version", sa.Integer, nullable=False, server_default="2"),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_iam_policies"),
        sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_policies_account_name"),
        sa.UniqueConstraint("arn", name="uq_iam_policies_arn"),
    )
    op.create_table(
        "iam_policy_versions",
        sa.Column("policy_id", sa.String(32), nullable=False),
        sa.Column("version_id", sa.String(8), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("policy_id", "version_id", name="pk_iam_policy_versions"),
        sa.ForeignKeyConstraint(["policy_id"], ["iam_policies.id"], ondelete="CASCADE",
                                name="fk_iam_policy_versions_policy_id_iam_policies"),
    )
    op.create_table(
        "iam_attachments",
        sa.Column("principal_type", sa.String(8), nullable=False),
        sa.Column("principal_id", sa.String(32), nullable=False),
        sa.Column("policy_id", sa.String(32), nullable=False),
        sa.Column("attached_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("principal_type", "principal_id", "policy_id", name="pk_iam_attachments"),
        sa.ForeignKeyConstraint(["policy_id"], ["iam_policies.id"], name="fk_iam_attachments_policy_id_iam_policies"),
    )
    op.create_table(
        "iam_inline_policies",
        sa.Column("principal_type", sa.String(8), nullable=False),
        sa.Column("principal_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("principal_type", "principal_id", "name", name="pk_iam_inline_policies"),
    )
    op.create_table(
        "iam_sessions",
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("role_id", sa.String(32), nullable=False),
        sa.Column("role_arn", sa.String(2048), nullable=False),
        sa.Column("session_name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_iam_sessions"),
        sa.ForeignKeyConstraint(["access_key_id"], ["access_keys.access_key_id"], ondelete="CASCADE",
                                name="fk_iam_sessions_access_key_id_access_keys"),
    )


def downgrade() -> None:
    for table in ("iam_sessions", "iam_inline_policies", "iam_attachments", "iam_policy_versions", "iam_policies",
                  "iam_roles", "iam_users"):
        op.drop_table(table)
