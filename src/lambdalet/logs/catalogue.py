"""Log groups and streams: look up, list, create, delete, retention setting.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lambdalet.logs.core import LogStoreCore
from lambdalet.logs.records import (
    Group,
    Stream,
    _group,
    _stream,
)
from lambdalet.logs.tables import log_batches, log_groups, log_streams


class LogCatalogue(LogStoreCore):
    # ---------------------------------------------------------------- groups and streams
    def get_group(self, account_id: str, region: str, name: str, conn: Connection | None = None) -> Group | None:
        g = log_groups
        stmt = sa.select(g).where(g.c.account_id == account_id, g.c.region == region, g.c.name == name)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.db.read() as c:
                row = c.execute(stmt).first()
        return _group(row) if row else None

    def list_groups(self, account_id: str, region: str, *, prefix: str | None = None, contains: str | None = None,
                    names: list[str] | None = None, after: str | None = None, limit: int = 50) -> list[Group]:
        g = log_groups
        stmt = sa.select(g).where(g.c.account_id == account_id, g.c.region == region)
        if prefix:
            stmt = stmt.where(g.c.name >= prefix, sa.func.substr(g.c.name, 1, len(prefix)) == prefix)
        if names is not None:
            stmt = stmt.where(g.c.name.in_(names))
        if after is not None:
            stmt = stmt.where(g.c.name > after)
        stmt = stmt.order_by(g.c.name)
        out: list[Group] = []
        with self.db.read() as conn:
            for row in conn.execute(stmt):   # `contains` is case-sensitive: filtered here, not with LIKE
                if contains and contains not in row.name:
                    continue
                out.append(_group(row))
                if len(out) >= limit:
                    break
        return out

    def create_group(self, account_id: str, region: str, name: str) -> bool:
        """False if it already exists."""
        with self.db.begin() as conn:
            if self.get_group(account_id, region, name, conn) is not None:
                return False
            conn.execute(log_groups.insert().values(account_id=account_id, region=region, name=name,
                                                    created_ms=int(self.clock() * 1000), stored_bytes=0))
        return True

    def delete_group(self, account_id: str, region: str, name: str) -> bool:
        g = log_groups
        with self.db.begin() as conn:
            found = self.get_group(account_id, region, name, conn)
            if found is None:
                return False
            # Explicit child deletes: correct even where foreign keys are not enforced.
            conn.execute(log_batches.delete().where(log_batches.c.group_id == found.id))
            conn.execute(log_streams.delete().where(log_streams.c.group_id == found.id))
            conn.execute(g.delete().where(g.c.id == found.id))
            self._streams.clear()
        self._account_bytes.pop(account_id, None)
        return True

    def set_retention(self, account_id: str, region: str, name: str, days: int | None) -> bool:
        g = log_groups
        with self.db.begin() as conn:
            n = conn.execute(g.update().where(g.c.account_id == account_id, g.c.region == region, g.c.name == name)
                             .values(retention_days=days)).rowcount
        return n > 0

    def get_stream(self, group_id: int, name: str) -> Stream | None:
        s = log_streams
        with self.db.read() as conn:
            row = conn.execute(sa.select(s).where(s.c.group_id == group_id, s.c.name == name)).first()
        return _stream(row) if row else None

    def create_stream(self, group_id: int, name: str) -> bool:
        s = log_streams
        with self.db.begin() as conn:
            if conn.execute(sa.select(s.c.id).where(s.c.group_id == group_id, s.c.name == name)).first():
                return False
            conn.execute(s.insert().values(group_id=group_id, name=name, created_ms=int(self.clock() * 1000),
                                           next_seq=0, stored_bytes=0))
        return True

    def delete_stream(self, group_id: int, name: str) -> bool:
        s = log_streams
        with self.db.begin() as conn:
            sid = conn.execute(sa.select(s.c.id).where(s.c.group_id == group_id, s.c.name == name)).scalar()
            if sid is None:
                return False
            conn.execute(log_batches.delete().where(log_batches.c.stream_id == sid))
            conn.execute(s.delete().where(s.c.id == sid))
            self._streams.clear()
            self._recount(conn, group_id)
        return True

    def list_streams(self, group_id: int, *, prefix: str | None = None, order_by: str = "LogStreamName",
                     descending: bool = False, after: tuple | None = None, limit: int = 50) -> list[Stream]:
        """`after` is the keyset position of the previous page: (name,) or (last_event_ms, id)."""
        s = log_streams
        stmt = sa.select(s).where(s.c.group_id == group_id)
        if prefix:
            stmt = stmt.where(sa.func.substr(s.c.name, 1, len(prefix)) == prefix)
        if order_by == "LastEventTime":
            t = sa.func.coalesce(s.c.last_event_ms, 0)
            if after is not None:
                at, aid = after
                stmt = stmt.where(sa.or_(t < at, sa.and_(t == at, s.c.id < aid)) if descending
                                  else sa.or_(t > at, sa.and_(t == at, s.c.id > aid)))
            stmt = stmt.order_by(*( (t.desc(), s.c.id.desc()) if descending else (t, s.c.id)))
        else:
            if after is not None:
                stmt = stmt.where(s.c.name < after[0] if descending else s.c.name > after[0])
            stmt = stmt.order_by(s.c.name.desc() if descending else s.c.name)
        with self.db.read() as conn:
            return [_stream(r) for r in conn.execute(stmt.limit(limit)).all()]
