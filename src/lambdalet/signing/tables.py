"""Code signing tables, attached to the platform's `metadata` (created by migration 0010_code_signing).

`signing_profiles`: one row per signing profile *version* (a key pair). The private key is a
keyring envelope bound to the profile version ARN; the public key is plain PEM. Revoking a
version records when the revocation takes effect: signatures made at or after that instant are
invalid, earlier ones stay valid (AWS Signer's RevokeSigningProfile semantics).

`signing_jobs`: every signature ever made (`lambdalet signer sign`), so a signature is only
trusted if the platform recorded it (a stolen key alone cannot back-date one) and a single
signature can be revoked (AWS Signer's RevokeSignature).

`code_signing_configs` and `function_code_signing_configs`: Lambda's CodeSigningConfig resource
and its association with functions (dropped with the function; a config in use cannot be deleted).
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

signing_profiles = sa.Table(
    "signing_profiles", metadata,
    sa.Column("arn", sa.String(512), primary_key=True),                # the profile *version* ARN
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("platform_id", sa.String(64), nullable=False),           # lambdalet-Ed25519 | lambdalet-SHA384-ECDSA
    sa.Column("validity_s", sa.BigInteger, nullable=False),            # signature validity period
    sa.Column("public_key", sa.Text, nullable=False),                  # PEM SubjectPublicKeyInfo
    sa.Column("private_key_sealed", sa.LargeBinary, nullable=False),   # keyring envelope of PKCS#8 DER
    sa.Column("status", sa.String(16), nullable=False),                # Active | Revoked
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revocation_effective_at", sa.Float, nullable=True),
    sa.Column("revocation_reason", sa.String(500), nullable=True),
    sa.UniqueConstraint("account_id", "region", "name", "version", name="uq_signing_profiles_account_id"),
)

signing_jobs = sa.Table(
    "signing_jobs", metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("job_arn", sa.String(512), nullable=False),
    sa.Column("profile_arn", sa.String(512), sa.ForeignKey("signing_profiles.arn"), nullable=False, index=True),
    sa.Column("package_digest", sa.String(64), nullable=False),       # hex, lambdalet-tree/1 scheme
    sa.Column("signed_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("revocation_reason", sa.String(500), nullable=True),
)

code_signing_configs = sa.Table(
    "code_signing_configs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),                  # csc-<17 chars>
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("arn", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.String(256), nullable=False, server_default=""),
    sa.Column("allowed_publishers", sa.Text, nullable=False),          # JSON list of profile version ARNs
    sa.Column("untrusted_artifact_on_deployment", sa.String(8), nullable=False),   # Warn | Enforce
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Index("ix_code_signing_configs_account_region", "account_id", "region", "id"),
)

function_code_signing_configs = sa.Table(
    "function_code_signing_configs", metadata,
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("config_id", sa.String(32), sa.ForeignKey("code_signing_configs.id"), nullable=False, index=True),
    sa.Column("attached_at", sa.Float, nullable=False),
)
