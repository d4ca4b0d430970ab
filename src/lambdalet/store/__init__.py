"""Persistent state: SQLAlchemy Core schema, Alembic migrations, and the Database handle."""
from lambdalet.store.db import Database, open_database

__all__ = ["Database", "open_database"]
