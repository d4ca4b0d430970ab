"""audit/: the chain, the seal and the digests detect a changed, removed, reordered or truncated trail."""
from __future__ import annotations

import os
import sqlite3

import pytest
import sqlalchemy as sa

from lambdalet.audit import AuditRecorder, verify_trail
from lambdalet.audit.digests import load_public_key, PUBLIC_FILE
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.store.db import Database, make_engine

CALLER = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")


def make_db(path) -> Database:
    db = Database(make_engine(f"sqlite:///{path}"))
    audit_events.metadata.create_all(db.engine, tables=[audit_events, audit_digests])
    return db


@pytest.fixture
def trail(tmp_path):
    """A recorder with 10 events sealed by digests of 4 (so 1-4, 5-8, then 9-10 at close)."""
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    db = make_db(tmp_path / "state.db")
    rec = AuditRecorder(db, keyring, tmp_path / "audit", digest_every=4, digest_interval_s=3600).start()
    ctx = RequestContext(CALLER, "us-east-1", "req", "https://x")
    for i in range(10):
        rec.submit(service="lambda", operation="CreateFunction", ctx=ctx,
                   params={"FunctionName": f"f{i}", "Code": {"ZipFile": b"PK.."}}, result={"FunctionName": f"f{i}"},
                   error=None, source_ip="127.0.0.1", user_agent="test", access_key_id=CALLER.access_key_id)
    rec.close()

    class T:
        pass
    t = T()
    t.db, t.keyring, t.path, t.rec = db, keyring, tmp_path / "state.db", rec
    t.key = load_public_key(tmp_path / "audit" / PUBLIC_FILE)
    t.verify = lambda: verify_trail(db, keyring, t.key)
    yield t
    db.close()


def sql(t, statement, *args):
    t.db.close()    # edit the file like an attacker would, with the server's connections closed
    con = sqlite3.connect(t.path)
    con.execute(statement, args)
    con.commit()
    con.close()


def test_intact_trail_verifies(trail):
    r = trail.verify()
    assert r.ok, r.summary()
    assert (r.events, r.highest_seq, r.digests, r.digest_last_seq) == (10, 10, 3, 10)
    assert "OK" in r.summary()


def test_one_byte_of_a_sealed_row_is_a_change(trail):
    with sqlite3.connect(trail.path) as con:
        body = bytearray(con.execute("SELECT body_sealed FROM audit_events WHERE seq = 6").fetchone()[0])
    body[len(body) // 2] ^= 0x01
    sql(trail, "UPDATE audit_events SET body_sealed = ? WHERE seq = 6", bytes(body))
    r = trail.verify()
    assert not r.ok
    assert (r.first_problem.seq, r.first_problem.kind) == (6, "changed")
    assert "does not decrypt" in r.first_problem.detail
    assert len(r.problems) == 1, r.summary()      # the rest of the chain still verifies


def test_index_column_edit_is_a_change(trail):
    sql(trail, "UPDATE audit_events SET event_name = 'GetAccountSettings20160819' WHERE seq = 3")
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (3, "changed")
    assert "event_name" in r.first_problem.detail


def test_event_id_edit_breaks_the_seal(trail):
    sql(trail, "UPDATE audit_events SET event_id = '00000000-0000-0000-0000-000000000000' WHERE seq = 2")
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (2, "changed")


def test_stored_hash_edit_is_a_change(trail):
    sql(trail, "UPDATE audit_events SET hash = ? WHERE seq = 5", "ab" * 32)
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (5, "changed")
    assert len(r.problems) == 1, r.summary()


def test_deleted_row_is_removed(trail):
    sql(trail, "DELETE FROM audit_events WHERE seq = 7")
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (7, "removed"), r.summary()


def test_deleted_row_with_renumbering_is_removed(trail):
    sql(trail, "DELETE FROM audit_events WHERE seq = 4")
    for s in range(5, 11):
        sql(trail, "UPDATE audit_events SET seq = ? WHERE seq = ?", s - 1, s)
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (4, "removed"), r.summary()


def test_swapped_rows_are_reordered(trail):
    sql(trail, "UPDATE audit_events SET seq = -1 WHERE seq = 5")
    sql(trail, "UPDATE audit_events SET seq = 5 WHERE seq = 6")
    sql(trail, "UPDATE audit_events SET seq = 6 WHERE seq = -1")
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (5, "reordered"), r.summary()
    assert {p.kind for p in r.problems} == {"reordered"}, r.summary()


def test_swapped_bodies_are_reordered(trail):
    with sqlite3.connect(trail.path) as con:
        a = con.execute("SELECT event_id, body_sealed, hash FROM audit_events WHERE seq = 2").fetchone()
        b = con.execute("SELECT event_id, body_sealed, hash FROM audit_events WHERE seq = 3").fetchone()
    sql(trail, "UPDATE audit_events SET event_id = 'tmp' WHERE seq = 2")
    sql(trail, "UPDATE audit_events SET event_id = ?, body_sealed = ?, hash = ? WHERE seq = 3", *a)
    sql(trail, "UPDATE audit_events SET event_id = ?, body_sealed = ?, hash = ? WHERE seq = 2", *b)
    r = trail.verify()
    assert not r.ok
    assert r.first_problem.seq == 2 and "reordered" in {p.kind for p in r.problems}, r.summary()


def test_truncated_tail_is_detected_against_the_last_digest(trail):
    sql(trail, "DELETE FROM audit_events WHERE seq > 8")
    r = trail.verify()
    assert (r.first_problem.seq, r.first_problem.kind) == (9, "truncated"), r.summary()


def test_truncated_tail_and_digest_rows_still_detected_by_digest_columns(trail):
    # Removing the tail and rewriting the last digest's columns: the signature no longer matches.
    sql(trail, "DELETE FROM audit_events WHERE seq > 8")
    sql(trail, "UPDATE audit_digests SET body = replace(body, '\"lastSeq\":10', '\"lastSeq\":8') WHERE number = 3")
    r = trail.verify()
    assert not r.ok and any(p.kind == "digest" for p in r.problems), r.summary()


def test_removed_digest_is_detected(trail):
    sql(trail, "DELETE FROM audit_digests WHERE number = 2")
    r = trail.verify()
    assert not r.ok and {p.kind for p in r.problems} == {"digest"}, r.summary()


def test_forged_signature_is_detected(trail):
    sql(trail, "UPDATE audit_digests SET signature = ? WHERE number = 1", "00" * 64)
    r = trail.verify()
    assert not r.ok and r.first_problem.kind == "digest" and "signature" in r.first_problem.detail


def test_other_public_key_refuses_every_digest(trail, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    other = Ed25519PrivateKey.generate().public_key()
    r = verify_trail(trail.db, trail.keyring, other)
    assert sum(p.kind == "digest" for p in r.problems) == 3


def test_restart_continues_the_chain(trail, tmp_path):
    rec = AuditRecorder(trail.db, trail.keyring, tmp_path / "audit", digest_every=100, digest_interval_s=3600).start()
    rec.submit(service="lambda", operation="DeleteFunction", ctx=RequestContext(CALLER, "us-east-1", "r2", "x"),
               params={"FunctionName": "f1"}, result={"StatusCode": 204}, error=None)
    rec.close()
    r = trail.verify()
    assert r.ok, r.summary()
    assert (r.highest_seq, r.digests, r.digest_last_seq) == (11, 4, 11)
    with trail.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar() == 11
