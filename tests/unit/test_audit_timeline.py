"""audit verify: the trail proves its own end. Truncation (events and the digests covering them),
missing digests, a deleted trail (against the digest directory) and malformed rows are reported,
naming the bad event, never raising."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from lambdalet.audit import AuditRecorder, verify_trail
from lambdalet.audit.digests import PUBLIC_FILE, load_public_key
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.store.db import Database, make_engine

CALLER = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")
CTX = RequestContext(CALLER, "us-east-1", "req", "https://x")


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def trail(tmp_path):
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    path = tmp_path / "state.db"
    db = Database(make_engine(f"sqlite:///{path}"))
    audit_events.metadata.create_all(db.engine, tables=[audit_events, audit_digests])

    class T:
        pass
    t = T()
    t.db, t.keyring, t.path, t.tmp = db, keyring, path, tmp_path
    t.digest_dir = tmp_path / "digests"

    def record(n: int, clock=None, interval=3600.0, close=True):
        rec = AuditRecorder(db, keyring, tmp_path / "audit", digest_every=4, digest_interval_s=interval,
                            digest_dir=t.digest_dir, **({"clock": clock} if clock else {})).start()
        for i in range(n):
            rec.submit(service="lambda", operation="CreateFunction", ctx=CTX, params={"FunctionName": f"f{i}"},
                       result={}, error=None)
        assert rec.flush()
        if close:
            rec.close()
        return rec
    t.record = record

    def verify(**kw):
        kw.setdefault("running", False)
        return verify_trail(db, keyring, load_public_key(tmp_path / "audit" / PUBLIC_FILE), **kw)
    t.verify = verify

    def sql(statement, *args):
        db.close()
        con = sqlite3.connect(path)
        con.executescript(statement) if not args else con.execute(statement, args)
        con.commit()
        con.close()
    t.sql = sql
    yield t
    db.close()


def kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


def test_a_clean_trail_verifies_with_and_without_the_digest_dir(trail):
    trail.record(10)
    assert trail.verify().ok, trail.verify().summary()
    r = trail.verify(digest_dir=trail.digest_dir)
    assert r.ok and r.notes, r.summary()


def test_deleting_the_newest_events_and_the_digest_covering_them_is_detected(trail):
    trail.record(10)                                  # digests 1-4, 5-8, then 9-10 (final) at close
    trail.sql("DELETE FROM audit_events WHERE seq > 8; DELETE FROM audit_digests WHERE number = 3;")
    r = trail.verify()                                # the database alone: the trail no longer ends cleanly
    assert not r.ok and "gap" in kinds(r), r.summary()
    r = trail.verify(digest_dir=trail.digest_dir)     # the digest directory names what is gone
    assert {"gap", "truncated"} <= kinds(r), r.summary()
    assert any("digest 3" in p.detail and p.kind == "truncated" for p in r.problems), r.summary()


def test_deleting_the_whole_trail_fails_only_against_the_digest_dir(trail):
    trail.record(6)
    trail.sql("DELETE FROM audit_events; DELETE FROM audit_digests;")
    assert trail.verify().ok                          # nothing left to prove anything with...
    r = trail.verify(digest_dir=trail.digest_dir)     # ...except the copies kept elsewhere
    assert not r.ok and "truncated" in kinds(r), r.summary()


def test_a_missing_interval_digest_is_a_gap_and_the_range_can_exclude_it(trail):
    clock = Clock(1_700_000_000.0)
    rec = trail.record(3, clock=clock, interval=60.0, close=False)
    assert rec.flush(digest=True)                     # digest 1 at t0; then the server "crashes" (no close)
    rec._closed = True
    clock.t += 1000                                   # restarted long after its next digest was due
    trail.record(2, clock=clock, interval=60.0)
    r = trail.verify(now=clock.t)
    gaps = [p for p in r.problems if p.kind == "gap"]
    assert len(gaps) == 1 and "no digest between" in gaps[0].detail, r.summary()
    assert trail.verify(now=clock.t, start=clock.t).ok             # a range after the gap is intact


def test_a_running_trail_must_have_a_recent_digest(trail):
    clock = Clock(1_700_000_000.0)
    rec = trail.record(2, clock=clock, interval=60.0, close=False)
    assert rec.flush(digest=True)
    assert trail.verify(now=clock.t + 30, running=True).ok
    r = trail.verify(now=clock.t + 600, running=True)
    assert [p.kind for p in r.problems] == ["gap"] and "no digest since" in r.problems[0].detail, r.summary()
    rec._closed = True


def test_malformed_rows_are_named_by_event_id_not_a_traceback(trail):
    trail.record(6)
    with sqlite3.connect(trail.path) as con:
        ids = dict(con.execute("SELECT seq, event_id FROM audit_events").fetchall())
    # An attacker who owns the file can drop the schema's constraints and types altogether.
    cols = [c.name for c in audit_events.columns]
    trail.sql(f"""
        ALTER TABLE audit_events RENAME TO old_events;
        CREATE TABLE audit_events ({', '.join(cols)});
        INSERT INTO audit_events SELECT {', '.join(cols)} FROM old_events;
        DROP TABLE old_events;
        UPDATE audit_events SET body_sealed = 'not a blob' WHERE seq = 2;
        UPDATE audit_events SET event_time = 'yesterday', read_only = 'perhaps' WHERE seq = 3;
        UPDATE audit_events SET hash = NULL WHERE seq = 4;
        UPDATE audit_events SET seq = NULL WHERE seq = 5;
        UPDATE audit_events SET event_id = NULL WHERE seq = 6;
        UPDATE audit_digests SET body = 'not json' WHERE number = 1;
    """)
    r = trail.verify()
    assert not r.ok
    by_seq = {p.seq: p for p in r.problems if p.seq is not None}
    assert by_seq[2].event_id == ids[2] and by_seq[2].kind == "malformed", r.summary()
    assert by_seq[3].event_id == ids[3] and "event_time" in by_seq[3].detail, r.summary()
    assert by_seq[4].event_id == ids[4] and by_seq[4].kind == "changed", r.summary()
    assert any(p.event_id == ids[5] and p.kind == "malformed" for p in r.problems), r.summary()
    assert by_seq[6].kind == "malformed" and "event_id" in by_seq[6].detail, r.summary()
    assert any(p.kind == "digest" and "malformed" in p.detail for p in r.problems), r.summary()
    assert ids[2] in r.summary()


def test_a_forged_file_in_the_digest_dir_is_refused(trail):
    trail.record(2)
    forged = next(trail.digest_dir.rglob("*.json"))
    doc = json.loads(forged.read_text())
    doc["body"] = doc["body"].replace('"lastSeq":2', '"lastSeq":1')
    forged.write_text(json.dumps(doc))
    r = trail.verify(digest_dir=trail.digest_dir)
    assert not r.ok and "digest" in kinds(r), r.summary()
