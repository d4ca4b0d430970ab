"""Tables of the asynchronous-invocation component, attached to the platform's `metadata`
(created by migration 0004_event_invoke).

- `event_invoke_configs`: PutFunctionEventInvokeConfig's settings, one row per function + qualifier
  ($LATEST, a version or an alias). Rows go with their function (ON DELETE CASCADE), so a function
  deleted and created again starts without configuration, as in AWS.
- `event_payloads`: Event payloads too large for one internal queue message (the queue service caps
  messages at 256 KB; Event invokes accept 1 MB). Sealed with the keyring (AAD names the row id);
  the queued message references the row. Deleted once the event is fully handled.
"""
from __future__ import annotations

import sqlalchemy as sa

from lambdalet.store.schema import metadata

event_invoke_configs = sa.Table(
    "event_invoke_configs", metadata,
    sa.Column("function_id", sa.String(36), sa.ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("qualifier", sa.String(128), nullable=False),
    sa.Column("max_retry_attempts", sa.Integer, nullable=True),
    sa.Column("max_event_age_s", sa.Integer, nullable=True),
    sa.Column("on_success", sa.String(350), nullable=True),
    sa.Column("on_failure", sa.String(350), nullable=True),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("function_id", "qualifier", name="pk_event_invoke_configs"),
)

event_payloads = sa.Table(
    "event_payloads", metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("payload_sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_event_payloads"),
)
