"""audit/recorder.py + api/audit_hook.py: the request path never waits; nothing is lost on close."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from lambdalet.api import audit_hook
from lambdalet.api.protocol import WireRequest
from lambdalet.audit import AuditRecorder, verify_trail
from lambdalet.audit.digests import PRIVATE_FILE, PUBLIC_FILE, load_public_key
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.store.db import Database, make_engine

CALLER = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")
CTX = RequestContext(CALLER, "us-east-1", "req", "https://x", "127.0.0.1", "ua")


@pytest.fixture
def env(tmp_path):
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    db = Database(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    audit_events.metadata.create_all(db.engine, tables=[audit_events, audit_digests])
    yield db, keyring, tmp_path
    db.close()


def count(db, table=audit_events) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def submit(rec, op="CreateFunction", **kw):
    base = dict(service="lambda", operation=op, ctx=CTX, params={"FunctionName": "f"}, result={}, error=None)
    base.update(kw)
    rec.submit(**base)


def test_close_flushes_everything_and_seals_it(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_every=100, digest_interval_s=3600).start()
    threads = [threading.Thread(target=lambda: [submit(rec) for _ in range(250)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    assert count(db) == 1000
    report = verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE))
    # ten digests of 100 events, then close's final digest (empty: it marks the clean shutdown)
    assert report.ok and report.digest_last_seq == 1000 and report.digests == 11, report.summary()


def test_submit_never_waits_for_a_locked_database(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600).start()
    blocker = sqlite3.connect(tmp / "state.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")            # every write now waits (busy_timeout)
    try:
        t0 = time.perf_counter()
        for _ in range(200):
            submit(rec)
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.5, f"200 submits took {elapsed:.3f}s with the database locked"
        assert not rec.flush(timeout=0.3)         # the writer is stuck behind the lock...
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert rec.flush(timeout=20)                  # ...and catches up without losing anything
    rec.close()
    assert count(db) == 200


def test_data_events_only_when_enabled(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit").start()
    submit(rec, "Invoke", params={"FunctionName": "f", "Payload": b"{}"})
    submit(rec, "CreateFunction")
    rec.close()
    assert count(db) == 1
    rec = AuditRecorder(db, keyring, tmp / "audit", data_events=True).start()
    submit(rec, "Invoke", params={"FunctionName": "f", "Payload": b"{}"})
    rec.close()
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_events.c.event_name, audit_events.c.category)
                            .order_by(audit_events.c.seq)).all()
    assert [tuple(r) for r in rows] == [("CreateFunction20150331", "Management"), ("Invoke", "Data")]


def test_digests_keep_coming_while_idle_each_chained_to_the_last(env):
    """CloudTrail delivers a digest every hour whether or not anything happened: an idle recorder
    signs (empty) digests on its interval, each naming the previous one's signature and hash and
    starting where it ended."""
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_every=1000, digest_interval_s=0.2).start()
    submit(rec)
    assert rec.flush()
    deadline = time.monotonic() + 10
    while count(db, audit_digests) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    rec.close()
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_digests).order_by(audit_digests.c.number)).all()
    from lambdalet.audit.digests import Digest, body_hash
    parsed = [Digest.parse(r.body) for r in rows]
    assert len(parsed) >= 5 and parsed[0].last_seq == 1 and all(d.last_seq == 1 for d in parsed[1:])
    for prev, d in zip(rows, parsed[1:]):
        assert d.previous_signature == prev.signature and d.previous_hash == body_hash(prev.body)
    assert all(b.start_time == a.time for a, b in zip(parsed, parsed[1:]))
    assert [d.final for d in parsed] == [False] * (len(parsed) - 1) + [True]
    report = verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE), running=False)
    assert report.ok, report.summary()


def test_flush_with_digest_and_submit_after_close(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600).start()
    submit(rec)
    assert rec.flush(digest=True) and count(db, audit_digests) == 1
    rec.close()
    submit(rec, "DeleteFunction")                 # a straggler after close is written synchronously
    # digests: the flush's, close's final one, and the straggler's own final one
    assert count(db) == 2 and count(db, audit_digests) == 3
    assert verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE)).ok


def test_signing_key_is_sealed_and_stable(env):
    db, keyring, tmp = env
    AuditRecorder(db, keyring, tmp / "audit").start().close()
    pub = (tmp / "audit" / PUBLIC_FILE).read_bytes()
    sealed = (tmp / "audit" / PRIVATE_FILE).read_bytes()
    assert sealed.startswith(b"LE") and (tmp / "audit" / PRIVATE_FILE).stat().st_mode & 0o077 == 0
    AuditRecorder(db, keyring, tmp / "audit").start().close()
    assert (tmp / "audit" / PUBLIC_FILE).read_bytes() == pub
    other = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    with pytest.raises(ValueError):               # DecryptionError: the key is not readable without the keyring
        AuditRecorder(db, other, tmp / "audit").start()


def test_hook_queues_and_refused_facts(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit",
                        resolve_account=lambda k: "111111111111" if k == "LKIAALICE" else None).start()
    audit_hook.record(None, "lambda", "CreateFunction", {"FunctionName": "f"}, None, None, "1.2.3.4", "ua", None)
    assert rec.flush() and count(db) == 0        # nothing installed: nothing recorded
    audit_hook.install(rec)
    try:
        audit_hook.record(CTX, "lambda", "CreateFunction", {"FunctionName": "f"}, {}, None, "1.2.3.4", "ua",
                          "LKIAALICE", request_id="r1")
        from lambdalet.models.errors import InvalidSignatureException
        audit_hook.record(None, "lambda", "ListFunctions", None, None, InvalidSignatureException("no"), "1.2.3.4",
                          "ua", "LKIAALICE", request_id="r2", region="us-east-1")
        audit_hook.record(None, None, None, None, None, InvalidSignatureException("no"), "1.2.3.4", "ua", None)
    finally:
        audit_hook.uninstall()
    rec.close()
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_events).order_by(audit_events.c.seq)).all()
    assert [(r.event_name, r.account_id, r.access_key_id) for r in rows] == [
        ("CreateFunction20150331", "111111111111", "LKIAALICE"),
        ("ListFunctions20150331", "111111111111", "LKIAALICE"),    # refused, filed under the key's account
        ("Unknown", "", ""),
    ]


def test_refused_request_facts():
    from lambdalet.api.app import ServiceBinding
    from lambdalet.api.protocol import RestJsonProtocol, load_service_model
    services = {"lambda": ServiceBinding(RestJsonProtocol(load_service_model("lambda")))}
    auth = ("AWS4-HMAC-SHA256 Credential=LKIAX/20240101/eu-west-1/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    wire = WireRequest("GET", "/2015-03-31/functions/", [], {"authorization": auth, "host": "h"}, b"")
    assert audit_hook.refused_request_facts(services, wire) == ("lambda", "ListFunctions", "LKIAX", "eu-west-1")
    wire.headers.pop("authorization")
    assert audit_hook.refused_request_facts(services, wire) == (None, None, None, None)


def test_refused_requests_are_rate_limited_and_counted(env):
    db, keyring, tmp = env
    from lambdalet.models.errors import InvalidSignatureException
    rec = AuditRecorder(db, keyring, tmp / "audit", refused_per_s=0.0001, refused_burst=3).start()
    for _ in range(10):
        rec.submit(service="lambda", operation="ListFunctions", ctx=None, params=None, result=None,
                   error=InvalidSignatureException("no"), access_key_id="LKIAX")
    submit(rec)                                   # authenticated calls are never limited
    assert rec.suppressed == 7
    rec._tokens = 1.0                             # time passes...
    rec.submit(service="lambda", operation="ListFunctions", ctx=None, params=None, result=None,
               error=InvalidSignatureException("no"), access_key_id="LKIAX")
    rec.close()
    from lambdalet.audit import chain
    import json
    with db.read() as conn:
        rows = conn.execute(sa.select(audit_events).order_by(audit_events.c.seq)).all()
    assert len(rows) == 5
    last = json.loads(chain.open_event(keyring, rows[-1].event_id, rows[-1].body_sealed))["event"]
    assert last["additionalEventData"] == {"refusedRequestsNotRecordedBefore": 7}
