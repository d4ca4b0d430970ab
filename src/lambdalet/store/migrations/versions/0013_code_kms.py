"""Function code sealed with customer KMS keys (SourceKMSKeyArn/KMSKeyArn): no schema change.

A version's SourceKMSKeyArn is kept in its stored configuration (function_versions.config), next to
the other per-version settings, so PublishVersion copies it with the rest; the sealed blob is found by
(code digest, key ARN, function ARN), see blobs/store.py. This revision stays in the chain as a no-op.

Revision ID: 0013
Revises: 0012
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
