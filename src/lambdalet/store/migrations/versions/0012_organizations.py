"""AWS Organizations subset: the organization, its member accounts and CreateAccount requests
(lambdalet/iam/tables.py, lambdalet/iam/organizations.py).

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(34), nullable=False),
        sa.Column("management_account_id", sa.String(12), nullable=False),
        sa.Column("root_id", sa.String(34), nullable=False),
        sa.Column("feature_set", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.ForeignKeyConstraint(["management_account_id"], ["accounts.account_id"],
                                name="fk_organizations_management_account_id_accounts"),
        sa.UniqueConstraint("management_account_id", name="uq_organizations_management_account_id"),
    )
    op.create_table(
        "organization_accounts",
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("organization_id", sa.String(34), nullable=False),
        sa.Column("email", sa.String(64), nullable=False),
        sa.Column("email_lower", sa.String(64), nullable=False),
        sa.Column("joined_method", sa.String(16), nullable=False),
        sa.Column("joined_at", sa.Float, nullable=False),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.PrimaryKeyConstraint("account_id", name="pk_organization_accounts"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"],
                                name="fk_organization_accounts_account_id_accounts"),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name="fk_organization_accounts_organization_id_organizations"),
        sa.UniqueConstraint("email_lower", name="uq_organization_accounts_email_lower"),
    )
    op.create_index("ix_organization_accounts_organization_id", "organization_accounts", ["organization_id"])
    op.create_table(
        "organization_create_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organization_id", sa.String(34), nullable=False),
        sa.Column("account_name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.Column("account_id", sa.String(12), nullable=True),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("completed_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_organization_create_requests"),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name="fk_organization_create_requests_organization_id_organizations"),
    )
    op.create_index("ix_organization_create_requests_org_time", "organization_create_requests",
                    ["organization_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_organization_create_requests_org_time", table_name="organization_create_requests")
    op.drop_table("organization_create_requests")
    op.drop_index("ix_organization_accounts_organization_id", table_name="organization_accounts")
    op.drop_table("organization_accounts")
    op.drop_table("organizations")
