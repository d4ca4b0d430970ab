"""IAM's tables, attached to the platform's `metadata` (created by migration 0006_iam).

Names are unique per account without regard to case, as in AWS (`name_lower`). Policy documents
are stored as the caller sent them (JSON text); they are not secrets. Managed policies owned by
AWS (`arn:aws:iam::aws:policy/...`) have `account_id = "aws"`. Role sessions (STS) are access
keys (`access_keys`, with `expires_at`) plus a row in `iam_sessions` holding the SHA-256 of the
session token, which must accompany every request signed with the key.
Times are epoch seconds (Float).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

iam_users = sa.Table(
    "iam_users", metadata,
    sa.Column("id", sa.String(32), primary_key=True),                # AIDA...: AWS's UserId
    sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("name_lower", sa.String(64), nullable=False),
    sa.Column("path", sa.String(512), nullable=False, server_default="/"),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),  # JSON [{"Key":..,"Value":..}]
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("permissions_boundary", sa.String(2048), nullable=True),   # managed policy ARN (migration 0017)
    sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_users_account_name"),
)

iam_roles = sa.Table(
    "iam_roles", metadata,
    sa.Column("id", sa.String(32), primary_key=True),                # AROA...: AWS's RoleId
    sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("name_lower", sa.String(64), nullable=False),
    sa.Column("path", sa.String(512), nullable=False, server_default="/"),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("trust_policy", sa.Text, nullable=False),
    sa.Column("description", sa.String(1000), nullable=False, server_default=""),
    sa.Column("max_session_duration", sa.Integer, nullable=False, server_default="3600"),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("permissions_boundary", sa.String(2048), nullable=True),   # managed policy ARN (migration 0017)
    sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_roles_account_name"),
)

iam_policies = sa.Table(
    "iam_policies", metadata,
    sa.Column("id", sa.String(32), primary_key=True),                # ANPA...: AWS's PolicyId
    sa.Column("account_id", sa.String(12), nullable=False),          # "aws" for AWS-managed policies
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
    sa.UniqueConstraint("account_id", "name_lower", name="uq_iam_policies_account_name"),
    sa.UniqueConstraint("arn", name="uq_iam_policies_arn"),
)

iam_policy_versions = sa.Table(
    "iam_policy_versions", metadata,
    sa.Column("policy_id", sa.String(32), sa.ForeignKey("iam_policies.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version_id", sa.String(8), primary_key=True),          # v1, v2, ...
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

iam_attachments = sa.Table(
    "iam_attachments", metadata,
    sa.Column("principal_type", sa.String(8), primary_key=True),      # "user" | "role"
    sa.Column("principal_id", sa.String(32), primary_key=True),       # iam_users.id / iam_roles.id
    sa.Column("policy_id", sa.String(32), sa.ForeignKey("iam_policies.id"), primary_key=True),
    sa.Column("attached_at", sa.Float, nullable=False),
)

iam_inline_policies = sa.Table(
    "iam_inline_policies", metadata,
    sa.Column("principal_type", sa.String(8), primary_key=True),      # "user" | "role"
    sa.Column("principal_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

iam_sessions = sa.Table(
    "iam_sessions", metadata,
    sa.Column("access_key_id", sa.String(32), sa.ForeignKey("access_keys.access_key_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),         # hex SHA-256 of the session token
    sa.Column("role_id", sa.String(32), nullable=False),
    sa.Column("role_arn", sa.String(2048), nullable=False),
    sa.Column("session_name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),                # aws:TokenIssueTime
    # migration 0017: fixed for the session's life (AssumeRole's SourceIdentity, Policy/PolicyArns, Tags)
    sa.Column("source_identity", sa.String(256), nullable=True),
    sa.Column("session_policies", sa.Text, nullable=True),            # JSON {"Policy": str|null, "PolicyArns": [..]}
    sa.Column("tags", sa.Text, nullable=True),                        # JSON {"Tags": {k: v}, "Transitive": [k..]}
    # migration 0018: the function whose environments got this session (lambda:SourceFunctionArn)
    sa.Column("source_function_arn", sa.String(2048), nullable=True),
)

# ---------------------------------------------------------------- AWS Organizations (migration 0012)
# One organization per platform (its management account is the bootstrap account); every member,
# the management account included, has a row in `organization_accounts` (an account is in at most
# one organization). CreateAccount requests are kept so DescribeCreateAccountStatus can answer.

organizations = sa.Table(
    "organizations", metadata,
    sa.Column("id", sa.String(34), primary_key=True),                 # o-xxxxxxxxxx
    sa.Column("management_account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("root_id", sa.String(34), nullable=False),              # r-xxxx
    sa.Column("feature_set", sa.String(32), nullable=False),          # ALL | CONSOLIDATED_BILLING
    sa.Column("created_at", sa.Float, nullable=False),
    # migration 0018: policy types enabled on the root, JSON ["SERVICE_CONTROL_POLICY"]
    sa.Column("policy_types", sa.Text, nullable=False, server_default="[]"),
    sa.UniqueConstraint("management_account_id", name="uq_organizations_management_account_id"),
)

organization_accounts = sa.Table(
    "organization_accounts", metadata,
    sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), primary_key=True),
    sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("email", sa.String(64), nullable=False),
    sa.Column("email_lower", sa.String(64), nullable=False),
    sa.Column("joined_method", sa.String(16), nullable=False),        # CREATED | INVITED
    sa.Column("joined_at", sa.Float, nullable=False),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),  # JSON [{"Key":..,"Value":..}]
    sa.UniqueConstraint("email_lower", name="uq_organization_accounts_email_lower"),
    sa.Index("ix_organization_accounts_organization_id", "organization_id"),
)

organization_create_requests = sa.Table(
    "organization_create_requests", metadata,
    sa.Column("id", sa.String(36), primary_key=True),                 # car-<32 hex>
    sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("account_name", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),                # IN_PROGRESS | SUCCEEDED | FAILED
    sa.Column("failure_reason", sa.String(64), nullable=True),
    sa.Column("account_id", sa.String(12), nullable=True),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("completed_at", sa.Float, nullable=True),
    sa.Index("ix_organization_create_requests_org_time", "organization_id", "requested_at"),
)

# ---------------------------------------------------------------- service control policies (migration 0018)
# Customer-managed SCPs of the organization; the AWS-managed FullAWSAccess (p-FullAWSAccess) is not
# a row here, only its attachments are. Targets are the root id or a member account id.

organization_policies = sa.Table(
    "organization_policies", metadata,
    sa.Column("id", sa.String(130), primary_key=True),                # p-xxxxxxxxxx
    sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),                 # SERVICE_CONTROL_POLICY
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("description", sa.String(512), nullable=False, server_default=""),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_organization_policies_organization_id", "organization_id"),
)

organization_policy_targets = sa.Table(
    "organization_policy_targets", metadata,
    sa.Column("policy_id", sa.String(130), primary_key=True),         # no FK: p-FullAWSAccess has no row
    sa.Column("target_id", sa.String(100), primary_key=True),         # r-xxxx | account id
    sa.Column("organization_id", sa.String(34), sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("attached_at", sa.Float, nullable=False),
    sa.Index("ix_organization_policy_targets_org_target", "organization_id", "target_id"),
)
