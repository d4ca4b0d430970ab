"""audit/recorder.py under a failing store: the queue is bounded in bytes and holds no blobs or
exceptions, an answered success is never left unrecorded (its waiter is told False, and the hook
answers an error), recorded calls are refused while writes fail, and close() is bounded."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from lambdalet.audit import AuditRecorder, verify_trail
from lambdalet.audit.digests import PUBLIC_FILE, load_public_key
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.keyring import Keyring, MemoryKeyMaterialStore
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import ResourceConflictException
from lambdalet.store.db import Database, make_engine

CALLER = Caller("111111111111", "arn:aws:iam::111111111111:user/alice", "LKIAALICE", "AIDAALICE")
CTX = RequestContext(CALLER, "us-east-1", "req", "https://x", "127.0.0.1", "ua")


class FaultyDatabase:
    """The platform's Database, whose writes fail like a full disk while `full` is set."""

    def __init__(self, db: Database):
        self.db = db
        self.full = False
        self.attempts = 0

    def read(self):
        return self.db.read()

    @contextlib.contextmanager
    def begin(self):
        self.attempts += 1
        if self.full:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))
        with self.db.begin() as conn:
            yield conn


@pytest.fixture
def env(tmp_path):
    keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    db = Database(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    audit_events.metadata.create_all(db.engine, tables=[audit_events, audit_digests])
    yield FaultyDatabase(db), keyring, tmp_path
    db.close()


def count(db, table=audit_events) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


class Waiter:
    def __init__(self):
        self.event = threading.Event()
        self.ok = None

    def __call__(self, ok: bool) -> None:
        self.ok = ok
        self.event.set()

    def wait(self, timeout: float = 20.0):
        assert self.event.wait(timeout), "the record was never settled"
        return self.ok


def submit(rec, op="CreateFunction", **kw):
    base = dict(service="lambda", operation=op, ctx=CTX, params={"FunctionName": "f"}, result={}, error=None)
    base.update(kw)
    rec.submit(**base)


def test_queue_holds_neither_the_zip_nor_the_exception(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, batch_deadline_s=30).start()
    db.full = True                                   # the writer is stuck: whatever is queued stays queued
    zip_bytes = os.urandom(12 << 20)
    err = ResourceConflictException("exists")
    try:
        raise err
    except ResourceConflictException:                # a traceback whose frames hold the zip
        pass
    refs_zip, refs_err = sys.getrefcount(zip_bytes), sys.getrefcount(err)
    for _ in range(10):
        submit(rec, params={"FunctionName": "f", "Code": {"ZipFile": zip_bytes}}, error=err, result=None)
    assert sys.getrefcount(zip_bytes) == refs_zip and sys.getrefcount(err) == refs_err
    assert rec.queued_bytes < 10 * 8192, rec.queued_bytes
    db.full = False
    assert rec.flush(timeout=30)
    rec.close()
    assert count(db) == 10


def test_queue_is_bounded_in_bytes_and_overflow_is_refused(env):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, max_queue_bytes=64 * 1024,
                        batch_deadline_s=30).start()
    db.full = True
    waiters = [Waiter() for _ in range(200)]
    for w in waiters:
        submit(rec, params={"FunctionName": "f", "Description": "d" * 2000}, on_done=w)
        assert rec.queued_bytes <= 64 * 1024
    refused = [w for w in waiters if w.event.is_set()]
    assert refused and all(w.ok is False for w in refused)       # told at once: their calls fail
    assert not rec.admit("lambda", "CreateFunction")
    db.full = False
    rec.close()
    assert count(db) == len(waiters) - len(refused)


def test_a_failing_store_fails_the_waiting_call_and_refuses_new_ones_until_it_recovers(env, caplog):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, batch_deadline_s=1.0).start()
    assert rec.admit("lambda", "CreateFunction")
    db.full = True
    w = Waiter()
    t0 = time.monotonic()
    submit(rec, on_done=w)
    assert w.wait() is False and time.monotonic() - t0 < 5      # the call is answered an error, promptly
    assert rec.failing and not rec.admit("lambda", "CreateFunction")
    assert rec.admit("lambda", "Invoke")                         # data events are not recorded: no reason to refuse
    db.full = False
    submit(rec, "GetFunction", error=ResourceConflictException("refused"))   # a refusal's record probes the store
    w2 = Waiter()
    assert rec.flush(timeout=10)
    assert not rec.failing and rec.admit("lambda", "CreateFunction")
    submit(rec, on_done=w2)
    assert w2.wait() is True
    rec.close()
    assert rec.lost_awaited == 1 and rec.lost_unawaited == 0
    report = verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE), running=False)
    assert report.ok and report.events == 2, report.summary()


def test_close_on_a_failing_store_is_bounded_and_says_what_was_lost(env, caplog):
    db, keyring, tmp = env
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, close_timeout_s=2.0).start()
    submit(rec)
    assert rec.flush()
    db.full = True
    waiters = [Waiter() for _ in range(5)]
    for w in waiters:
        submit(rec, on_done=w)
    submit(rec, "GetFunction", error=ResourceConflictException("x"))
    caplog.set_level(logging.ERROR, logger="lambdalet.audit")
    t0 = time.monotonic()
    rec.close()
    assert time.monotonic() - t0 < 6
    assert all(w.wait(0) is False for w in waiters)
    lost = [r.getMessage() for r in caplog.records if "AUDIT RECORDS LOST" in r.getMessage()]
    assert lost and "6 could not be written: 5 of calls answered with ServiceException" in lost[0], lost
    assert count(db) == 1


def test_digest_file_written_first_and_withdrawn_when_the_row_fails(env):
    db, keyring, tmp = env
    digest_dir = tmp / "digests"
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, digest_dir=digest_dir).start()
    submit(rec)
    assert rec.flush(digest=True)
    files = sorted(digest_dir.rglob("*.json"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert "_CloudTrail-Digest_" in files[0].name
    writer = rec._writer
    real = writer._insert_digest
    writer._insert_digest = lambda *a: (_ for _ in ()).throw(sa.exc.OperationalError("x", {}, Exception("full")))
    submit(rec)
    rec.flush(digest=True, timeout=10)
    assert len(list(digest_dir.rglob("*.json"))) == 1          # the file of the digest that did not commit is gone
    writer._insert_digest = real
    rec.close()
    assert len(list(digest_dir.rglob("*.json"))) == 2
    report = verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE), running=False,
                          digest_dir=digest_dir)
    assert report.ok, report.summary()


def test_a_digest_file_whose_row_never_committed_is_adopted_at_the_next_start(env, monkeypatch):
    """A crash between writing a digest's file and committing its row: the next start commits the
    row as signed (it continues the chain), so the directory and the database agree again."""
    db, keyring, tmp = env
    digest_dir = tmp / "digests"
    rec = AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, digest_dir=digest_dir).start()
    submit(rec)
    assert rec.flush(digest=True)
    from lambdalet.audit import digest_files
    monkeypatch.setattr(digest_files, "remove", lambda path: None)        # the process dies before withdrawing it
    submit(rec)
    assert rec.flush()
    rec._closed = True                                                     # crashed: no close(), no final digest
    rec._writer._insert_digest = lambda *a: (_ for _ in ()).throw(SystemError("killed"))
    with pytest.raises(SystemError):
        rec._writer.write_digest()                                         # the file is written, then the crash
    monkeypatch.undo()
    assert len(list(digest_dir.rglob("*.json"))) == 2 and count(db, audit_digests) == 1
    AuditRecorder(db, keyring, tmp / "audit", digest_interval_s=3600, digest_dir=digest_dir).start().close()
    assert count(db, audit_digests) == 3                                   # adopted, then the final one
    report = verify_trail(db, keyring, load_public_key(tmp / "audit" / PUBLIC_FILE), running=False,
                          digest_dir=digest_dir)
    assert report.ok, report.summary()
