"""The state store on PostgreSQL: the migrations build exactly the tables the code declares (on
SQLite and on PostgreSQL), and a real `lambdalet serve --database-url postgresql+psycopg://…`
works end to end through boto3.

The PostgreSQL tests start a private, throw-away cluster (initdb in a temp dir, unix socket only,
no TCP) and skip when no PostgreSQL server binaries or no psycopg are installed (`.ci/run`
installs both).
"""
from __future__ import annotations

import glob
import importlib
import os
import pkgutil
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import lambdalet
from lambdalet.store.db import open_database

from .e2e_support import ROLE, unique

PY_ZIP_SOURCE = b"def handler(event, context):\n    return {'echo': event, 'db': 'postgresql'}\n"


def _pg_bin() -> Path | None:
    for cand in [os.path.dirname(shutil.which("pg_ctl") or "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                                         reverse=True):
        if cand and os.path.exists(os.path.join(cand, "initdb")) and os.path.exists(os.path.join(cand, "pg_ctl")):
            return Path(os.path.realpath(os.path.join(cand, "pg_ctl"))).parent
    return None


def _import_every_table_module() -> sa.MetaData:
    """Tables are declared next to their owners; import them all so the metadata is complete."""
    for mod in pkgutil.walk_packages(lambdalet.__path__, "lambdalet."):
        if mod.name.startswith(("lambdalet.runtime.", "lambdalet.__main__")):
            continue                                   # code that runs inside environments
        importlib.import_module(mod.name)
    from lambdalet.store.schema import metadata
    return metadata


def _drift(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = _import_every_table_module()
    db = open_database(url)                            # migrates to head
    try:
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        db.engine.dispose()


def test_migrations_build_exactly_the_declared_tables_on_sqlite(tmp_path):
    assert _drift(f"sqlite:///{tmp_path / 'state.db'}") == []


# ------------------------------------------------------------------------------------------------ PostgreSQL

class PgCluster:
    def __init__(self, bindir: Path, base: Path):
        self.bindir, self.base = bindir, base
        self.data, self.sock = base / "data", base / "sock"
        # postgres refuses to run as root: as root, run it as the `postgres` system user
        self.runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        subprocess.run(self.runas + list(argv), check=True, capture_output=True, timeout=120)

    def start(self) -> "PgCluster":
        self.sock.mkdir(parents=True)
        if self.runas:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "lambdalet",
                  "--no-sync", "-E", "UTF8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60",
                  "-o", f"-k {self.sock} -c listen_addresses='' -c fsync=off", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://lambdalet@/{database}?host={self.sock}"

    def create_database(self) -> str:
        name = "l" + uuid.uuid4().hex[:12]
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="module")
def pg():
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'lambdalet[postgresql]')")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this host")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user to run PostgreSQL as")
    # Not under pytest's 0700 temp root: the cluster runs as the `postgres` user.
    base = Path(tempfile.mkdtemp(prefix="lambdalet-pg-"))
    os.chmod(base, 0o755)
    cluster = PgCluster(bindir, base)
    try:
        cluster.start()
    except subprocess.CalledProcessError as e:
        pytest.fail(f"PostgreSQL did not start: {e.stderr!r}\n{(base / 'log').read_text() if (base / 'log').exists() else ''}")
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_migrations_build_exactly_the_declared_tables_on_postgresql(pg):
    assert _drift(pg.create_database()) == []


def test_server_on_postgresql_end_to_end(pg, lambdalet_server_factory, monkeypatch):
    from .functions_support import zip_dir

    url = pg.create_database()
    # The env var reaches `lambdalet serve` and `lambdalet env` alike (config.default_database_url).
    monkeypatch.setenv("LAMBDALET_DATABASE_URL", url)
    srv = lambdalet_server_factory("--sandbox", "namespace" if os.geteuid() == 0 else "process")
    lam, sqs = srv.client("lambda"), srv.client("sqs")
    name = unique("pg")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": zip_dir(extra={"app.py": PY_ZIP_SOURCE})},
                        Environment={"Variables": {"SECRET_MARKER": "pg-secret-1"}})
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    resp = lam.invoke(FunctionName=name, Payload=b'{"x": 1}')
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert resp["Payload"].read() == b'{"echo": {"x": 1}, "db": "postgresql"}'
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]

    q = sqs.create_queue(QueueName=unique("pgq"))["QueueUrl"]
    sqs.send_message(QueueUrl=q, MessageBody="hello")
    [m] = sqs.receive_message(QueueUrl=q, WaitTimeSeconds=2)["Messages"]
    assert m["Body"] == "hello"

    # The state is in PostgreSQL, not in a SQLite file beside it, and secrets are sealed there too.
    assert not (srv.data_dir / "state.db").exists()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = [r[0] for r in conn.exec_driver_sql("SELECT name FROM functions")]
        dump = b"".join(bytes(r[0]) for r in conn.exec_driver_sql(
            "SELECT env_sealed FROM function_versions WHERE env_sealed IS NOT NULL"))
    engine.dispose()
    assert name in names and b"pg-secret-1" not in dump

    srv.restart()                                      # everything is still there after a restart
    lam = srv.client("lambda")
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"
    assert lam.invoke(FunctionName=name, Payload=b'{"x": 2}')["Payload"].read() == \
        b'{"echo": {"x": 2}, "db": "postgresql"}'
