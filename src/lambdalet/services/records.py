"""Row-level access shared by the resource modules: find functions, versions and aliases in a
caller's scope, and raise AWS's not-found errors with AWS's wording."""
from __future__ import annotations

import json
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lambdalet.models.errors import ResourceNotFoundException
from lambdalet.services.arns import VERSION_RE, Scope
from lambdalet.store import schema

F, V, A, T = schema.functions, schema.function_versions, schema.aliases, schema.tags
LATEST = "$LATEST"


def new_revision() -> str:
    return str(uuid.uuid4())


def ensure_account(conn: Connection, account_id: str) -> None:
    """Functions reference accounts; an account known only from its key row may lack one."""
    found = conn.execute(sa.select(schema.accounts.c.account_id).where(schema.accounts.c.account_id == account_id)).first()
    if not found:
        conn.execute(schema.accounts.insert().values(account_id=account_id, name=account_id, created_at=time.time()))


def function_not_found(scope: Scope, name: str, qualifier: str | None = None) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"Function not found: {scope.function_arn(name, qualifier)}")


def alias_not_found(scope: Scope, name: str, alias: str) -> ResourceNotFoundException:
    """AWS's words for an alias that does not exist (alias and permission operations)."""
    return ResourceNotFoundException(f"Cannot find alias arn: {scope.function_arn(name, alias)}")


def find_function(conn: Connection, scope: Scope, name: str) -> Row | None:
    return conn.execute(sa.select(F).where(F.c.account_id == scope.account_id, F.c.region == scope.region,
                                           F.c.name == name)).first()


def require_function(conn: Connection, scope: Scope, name: str, qualifier: str | None = None) -> Row:
    fn = find_function(conn, scope, name)
    if fn is None:
        raise function_not_found(scope, name, qualifier)
    return fn


def find_version(conn: Connection, function_id: str, version: str) -> Row | None:
    return conn.execute(sa.select(V).where(V.c.function_id == function_id, V.c.version == version)).first()


def find_alias(conn: Connection, function_id: str, name: str) -> Row | None:
    return conn.execute(sa.select(A).where(A.c.function_id == function_id, A.c.name == name)).first()


def resolve(conn: Connection, scope: Scope, name: str, qualifier: str | None) -> tuple[Row, Row, Row | None]:
    """(function, version row, alias row or None) for a qualifier: $LATEST, a version or an alias."""
    fn = require_function(conn, scope, name, qualifier)
    alias = None
    version = qualifier or LATEST
    if version != LATEST and not VERSION_RE.fullmatch(version):
        alias = find_alias(conn, fn.id, version)
        if alias is None:
            raise function_not_found(scope, name, qualifier)
        version = alias.function_version
    row = find_version(conn, fn.id, version)
    if row is None:
        raise function_not_found(scope, name, qualifier)
    return fn, row, alias


def config_of(row: Row) -> dict:
    return json.loads(row.config)


def dump_config(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def touch_latest(conn: Connection, version_row_id: int) -> None:
    """Any change to a function gives $LATEST a new RevisionId (AWS's optimistic-locking token)."""
    conn.execute(V.update().where(V.c.id == version_row_id).values(revision_id=new_revision()))
