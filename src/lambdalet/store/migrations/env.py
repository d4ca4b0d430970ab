"""Alembic environment, driven from code: `store.db.migrate` passes a live connection in
`config.attributes["connection"]` (so in-memory and temporary databases work); the alembic CLI
can still be used with `-x url=...` or sqlalchemy.url for development."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from lambdalet.store.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")   # SQLite ALTER via table copies
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
