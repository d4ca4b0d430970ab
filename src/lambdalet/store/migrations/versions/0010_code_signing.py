"""Code signing: signing profiles (versions, sealed private keys, revocation), signing jobs, Lambda
code signing configs and their association with functions.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_profiles",
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("platform_id", sa.String(64), nullable=False),
        sa.Column("validity_s", sa.BigInteger, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("private_key_sealed", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("revocation_effective_at", sa.Float, nullable=True),
        sa.Column("revocation_reason", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("arn", name="pk_signing_profiles"),
        sa.UniqueConstraint("account_id", "region", "name", "version", name="uq_signing_profiles_account_id"),
    )
    op.create_table(
        "signing_jobs",
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("job_arn", sa.String(512), nullable=False),
        sa.Column("profile_arn", sa.String(512), nullable=False),
        sa.Column("package_digest", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("revocation_reason", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_signing_jobs"),
        sa.ForeignKeyConstraint(["profile_arn"], ["signing_profiles.arn"],
                                name="fk_signing_jobs_profile_arn_signing_profiles"),
    )
    op.create_index("ix_signing_jobs_profile_arn", "signing_jobs", ["profile_arn"])
    op.create_table(
        "code_signing_configs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("arn", sa.String(200), nullable=False),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("allowed_publishers", sa.Text, nullable=False),
        sa.Column("untrusted_artifact_on_deployment", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_code_signing_configs"),
        sa.UniqueConstraint("arn", name="uq_code_signing_configs_arn"),
    )
    op.create_index("ix_code_signing_configs_account_region", "code_signing_configs", ["account_id", "region", "id"])
    op.create_table(
        "function_code_signing_configs",
        sa.Column("function_id", sa.String(36), nullable=False),
        sa.Column("config_id", sa.String(32), nullable=False),
        sa.Column("attached_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("function_id", name="pk_function_code_signing_configs"),
        sa.ForeignKeyConstraint(["function_id"], ["functions.id"], ondelete="CASCADE",
                                name="fk_function_code_signing_configs_function_id_functions"),
        sa.ForeignKeyConstraint(["config_id"], ["code_signing_configs.id"],
                                name="fk_function_code_signing_configs_config_id_code_signing_configs"),
    )
    op.create_index("ix_function_code_signing_configs_config_id", "function_code_signing_configs", ["config_id"])


def downgrade() -> None:
    op.drop_index("ix_function_code_signing_configs_config_id", table_name="function_code_signing_configs")
    op.drop_table("function_code_signing_configs")
    op.drop_index("ix_code_signing_configs_account_region", table_name="code_signing_configs")
    op.drop_table("code_signing_configs")
    op.drop_index("ix_signing_jobs_profile_arn", table_name="signing_jobs")
    op.drop_table("signing_jobs")
    op.drop_table("signing_profiles")
