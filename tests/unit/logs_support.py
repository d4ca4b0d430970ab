"""What the log-store tests share: the log tables alone on a database, a settable clock, a stream's
messages read back."""
from __future__ import annotations

from lambdalet.logs.tables import log_batches, log_groups, log_streams
from lambdalet.store.db import Database, make_engine

ACCOUNT, REGION = "111122223333", "us-east-1"
GROUP = "/aws/lambda/fn"
TABLES = [log_groups, log_streams, log_batches]


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_db(url: str) -> Database:
    # Only the log tables: these tests must not depend on other packages' migrations.
    engine = make_engine(url)
    log_groups.metadata.create_all(engine, tables=TABLES)
    return Database(engine)


def messages(store, stream="s1", group=GROUP):
    g = store.get_group(ACCOUNT, REGION, group)
    st = store.get_stream(g.id, stream)
    return [e.message for e in store.read_forward(g, st, 0)]
