"""Function URLs' table (migration 0015_function_urls), attached to the platform's `metadata`.

One row per function URL: on a function's unpublished version ($LATEST, `qualifier` "") or on one
of its aliases (`qualifier` = the alias name, `alias_id` its row). `url_id` is the random 32-character
label of the URL's host name (`<url_id>.lambda-url.<region>.localhost`), the data plane's key.

Both foreign keys cascade: deleting the function or the alias deletes its URL, as in AWS (a URL
re-created afterwards gets a new url-id). `cors` is the Cors structure as JSON, NULL when unset.
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

function_url_configs = sa.Table(
    "function_url_configs", metadata,
    sa.Column("url_id", sa.String(32), primary_key=True),
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=False),            # "" for $LATEST, else an alias name
    sa.Column("alias_id", sa.Integer, sa.ForeignKey("aliases.id", ondelete="CASCADE"), nullable=True),
    sa.Column("auth_type", sa.String(16), nullable=False),             # AWS_IAM | NONE
    sa.Column("invoke_mode", sa.String(16), nullable=False, server_default="BUFFERED"),
    sa.Column("cors", sa.Text, nullable=True),                         # JSON of the Cors structure
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.UniqueConstraint("function_id", "qualifier", name="uq_function_url_configs_function_id_qualifier"),
)
