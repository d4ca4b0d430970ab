"""The relational schema (SQLAlchemy Core). Portable types only, so PostgreSQL can follow SQLite.

Why the shape: the data plane resolves (account, region, name, qualifier) to ONE immutable
`function_versions` row. `$LATEST` is the only mutable version row; publishing copies it.
Secrets never sit here in plain text: `env_sealed` and `secret_sealed` are keyring envelopes.
Timestamps are epoch seconds (Float); the service formats them the way AWS does.
"""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
})

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

access_keys = sa.Table(
    "access_keys", metadata,
    sa.Column("access_key_id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), nullable=False, index=True),
    sa.Column("principal_arn", sa.String(2048), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="Active"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
)

functions = sa.Table(
    "functions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),            # uuid4: stable identity, bound into env AAD
    sa.Column("account_id", sa.String(12), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),          # functions are regional, as in AWS
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),   # never reused after deletes
    sa.Column("reserved_concurrency", sa.Integer, nullable=True),
    sa.Column("recursive_loop", sa.String(16), nullable=True),   # Allow | Terminate; NULL: Terminate (0019)
    sa.UniqueConstraint("account_id", "region", "name", name="uq_functions_account_region_name"),
)

function_versions = sa.Table(
    "function_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),          # "$LATEST" or "1", "2", ...
    sa.Column("version_num", sa.Integer, nullable=False),         # 0 for $LATEST: sort and page key
    sa.Column("config", sa.Text, nullable=False),                 # JSON of non-secret configuration
    sa.Column("env_sealed", sa.LargeBinary, nullable=True),       # keyring envelope of the Variables JSON
    sa.Column("code_sha256", sa.String(64), nullable=False),      # hex; the blob id
    sa.Column("code_size", sa.BigInteger, nullable=False),        # zipped bytes
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="Active"),
    sa.Column("last_update_status", sa.String(16), nullable=False, server_default="Successful"),
    sa.UniqueConstraint("function_id", "version", name="uq_function_versions_function_version"),
)

aliases = sa.Table(
    "aliases", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("function_version", sa.String(16), nullable=False),
    sa.Column("description", sa.String(256), nullable=False, server_default=""),
    sa.Column("routing", sa.Text, nullable=True),                 # JSON {"2": 0.1} or NULL
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("function_id", "name", name="uq_aliases_function_name"),
)

tags = sa.Table(
    "tags", metadata,
    sa.Column("resource_arn", sa.String(1024), primary_key=True),   # unqualified resource ARN
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

function_policies = sa.Table(
    "function_policies", metadata,                                # resource-based policies (AddPermission)
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("qualifier", sa.String(128), primary_key=True),    # "" for the unqualified function
    sa.Column("document", sa.Text, nullable=False),               # the policy JSON, as GetPolicy returns it
    sa.Column("revision_id", sa.String(36), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
