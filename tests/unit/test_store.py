"""store/: migrations, SQLite pragmas, schema/migration agreement, transactions across threads."""
from __future__ import annotations

import importlib
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from lambdalet.store import open_database
from lambdalet.store import schema
from lambdalet.store.db import MIGRATIONS_DIR

# Other packages attach their tables to the shared metadata (and add migrations for them).
for _module in ("lambdalet.queues.tables", "lambdalet.logs.tables", "lambdalet.events.tables", "lambdalet.events.esm",
                "lambdalet.iam.tables", "lambdalet.audit.tables", "lambdalet.kms.tables", "lambdalet.signing.tables",
                "lambdalet.schedules.tables", "lambdalet.store.layer_tables",
                "lambdalet.store.function_url_tables", "lambdalet.iam.organizations"):
    try:
        importlib.import_module(_module)
    except ImportError:
        pass

TABLES = {"accounts", "access_keys", "functions", "function_versions", "aliases", "tags"}


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _tables(db) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


@pytest.mark.parametrize("where", ["memory", "file"])
def test_open_migrates_to_head(tmp_path, where):
    db = open_database("sqlite://" if where == "memory" else f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert TABLES <= _tables(db)
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == _head()
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            if where == "file":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        db.close()


def test_reopen_is_idempotent_and_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    db = open_database(url)
    with db.begin() as conn:
        conn.execute(schema.accounts.insert().values(account_id="111111111111", name="a", created_at=1.0))
    db.close()
    db = open_database(url)
    with db.read() as conn:
        assert conn.execute(sa.select(schema.accounts.c.name)).scalar() == "a"
    db.close()


def test_schema_module_matches_migrations():
    """The tables code uses (schema.py) are exactly what the migrations build."""
    db = open_database("sqlite://")
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    db.close()
    assert diff == []


def test_transaction_rolls_back_on_error(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RuntimeError):
        with db.begin() as conn:
            conn.execute(schema.accounts.insert().values(account_id="111111111111", name="a", created_at=1.0))
            raise RuntimeError("boom")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar() == 0
    db.close()


def test_foreign_keys_are_enforced(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sa.exc.IntegrityError):
        with db.begin() as conn:
            conn.execute(schema.functions.insert().values(id="f", account_id="999999999999", region="us-east-1",
                                                          name="n", created_at=1.0, next_version=1))
    db.close()


def test_concurrent_read_modify_write_from_threads(tmp_path):
    """Writers that read then write (as publish does) never deadlock or lose updates."""
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    f = schema.functions
    with db.begin() as conn:
        conn.execute(schema.accounts.insert().values(account_id="111111111111", name="a", created_at=1.0))
        conn.execute(f.insert().values(id="f", account_id="111111111111", region="us-east-1", name="n",
                                       created_at=1.0, next_version=1))
    errors = []

    def worker():
        try:
            for _ in range(20):
                with db.begin() as conn:
                    n = conn.execute(sa.select(f.c.next_version).where(f.c.id == "f")).scalar_one()
                    conn.execute(f.update().where(f.c.id == "f").values(next_version=n + 1))
                with db.read() as conn:
                    conn.execute(sa.select(f.c.next_version)).all()
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as conn:
        assert conn.execute(sa.select(f.c.next_version)).scalar() == 1 + 8 * 20
    db.close()


def test_in_memory_database_is_shared_across_threads():
    db = open_database("sqlite://")
    seen = []
    t = threading.Thread(target=lambda: seen.append(TABLES <= _tables(db)))
    t.start()
    t.join()
    assert seen == [True]
    db.close()
