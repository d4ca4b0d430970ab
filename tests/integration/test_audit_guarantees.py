"""The audit trail's guarantees against a real server: digests on an interval while idle, copies in
a digest directory, `audit verify` failing on truncation and on a deleted trail, naming a malformed
row's event, and — on a full disk — no call answered as a success without its record, and a
bounded shutdown that says what it lost."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from lambdalet.audit.tables import audit_events

from harness import mounted_tmpfs, run_lambdalet
from polling import wait_for


def digest_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*_CloudTrail-Digest_*.json"), key=lambda p: p.name)


def sql(db_path: Path, script: str) -> None:
    con = sqlite3.connect(db_path)
    con.executescript(script)
    con.commit()
    con.close()


@pytest.mark.slow
def test_idle_digests_the_digest_dir_and_truncation(lambdalet_server_factory, tmp_path):
    digest_dir = tmp_path / "digests"          # another directory than the data dir (ideally another mount)
    srv = lambdalet_server_factory("--audit-digest-interval", "1", "--audit-digest-dir", str(digest_dir))
    srv.client("sqs").create_queue(QueueName=f"audited-{uuid.uuid4().hex[:8]}")
    first = len(wait_for(lambda: digest_files(digest_dir), what="a first digest file"))
    wait_for(lambda: len(digest_files(digest_dir)) >= first + 2, what="digests while idle")
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in digest_files(digest_dir))
    res = run_lambdalet(srv, "audit", "verify", "--digest-dir", str(digest_dir))          # running: recent digests, all present
    assert res.returncode == 0, res.stdout + res.stderr
    srv.client("sqs").create_queue(QueueName=f"audited-{uuid.uuid4().hex[:8]}")
    srv.stop()
    res = run_lambdalet(srv, "audit", "verify", "--digest-dir", str(digest_dir), "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["unsealed_tail"] == 0, res.stdout + res.stderr

    db = srv.data_dir / "state.db"
    sql(db, "PRAGMA wal_checkpoint(TRUNCATE);")
    pristine = SimpleNamespace(data_dir=tmp_path / "copy")             # for the malformed-row case below
    shutil.copytree(srv.data_dir, pristine.data_dir)
    with sqlite3.connect(db) as con:
        last_seq = con.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
        number = con.execute("SELECT max(number) FROM audit_digests WHERE first_seq <= ?", (last_seq,)).fetchone()[0]
    # The attacker removes the newest events and every digest that covers or follows them.
    sql(db, f"DELETE FROM audit_events WHERE seq = {last_seq}; DELETE FROM audit_digests WHERE number >= {number};")
    res = run_lambdalet(srv, "audit", "verify")                                           # the database alone
    assert res.returncode == 1 and "gap" in res.stderr, res.stdout + res.stderr
    res = run_lambdalet(srv, "audit", "verify", "--digest-dir", str(digest_dir))
    assert res.returncode == 1 and "truncated" in res.stderr and "not in the database" in res.stderr, res.stderr

    sql(db, "DELETE FROM audit_events; DELETE FROM audit_digests;")   # the whole trail
    assert run_lambdalet(srv, "audit", "verify").returncode == 0                          # nothing left to prove anything with...
    res = run_lambdalet(srv, "audit", "verify", "--digest-dir", str(digest_dir))          # ...but the copies kept elsewhere
    assert res.returncode == 1 and "truncated" in res.stderr, res.stdout + res.stderr

    db = pristine.data_dir / "state.db"                               # a malformed row: named, no traceback
    with sqlite3.connect(db) as con:
        victim = con.execute("SELECT event_id FROM audit_events WHERE seq = 1").fetchone()[0]
    cols = ", ".join(c.name for c in audit_events.columns)
    sql(db, f"""ALTER TABLE audit_events RENAME TO old_events; CREATE TABLE audit_events ({cols});
                INSERT INTO audit_events SELECT {cols} FROM old_events; DROP TABLE old_events;
                UPDATE audit_events SET body_sealed = 'x', event_time = NULL WHERE seq = 1;""")
    res = run_lambdalet(pristine, "audit", "verify")
    assert res.returncode == 1 and victim in res.stderr and "Traceback" not in res.stderr, res.stderr


def _fill(path: Path) -> None:
    """Write until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


@pytest.fixture
def small_tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "48m") as mnt:
        yield mnt


@pytest.mark.slow
def test_a_full_disk_never_answers_an_unrecorded_success(lambdalet_server_factory, small_tmpfs):
    srv = lambdalet_server_factory(data_dir=small_tmpfs / "data")
    sqs = srv.client("sqs")
    sqs.create_queue(QueueName="before-the-disk-filled")
    filler = small_tmpfs / "filler"
    _fill(filler)
    answered, failed = [], []
    for i in range(30):        # a write, and reads: these still succeed, but their records cannot be written
        call = ((lambda: sqs.create_queue(QueueName=f"full-{i}-{uuid.uuid4().hex[:6]}")) if i % 3 == 0
                else sqs.list_queues)
        try:
            answered.append(call()["ResponseMetadata"]["RequestId"])
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] >= 500, e.response
            failed.append(e.response["Error"]["Code"])
    assert failed, "the disk never filled up"

    t0 = time.monotonic()
    rc = srv.stop(sig=signal.SIGTERM)                 # still full: the shutdown must not hang on retries
    took = time.monotonic() - t0
    print(f"answered {len(answered)}, failed {len(failed)} ({set(failed)}), SIGTERM took {took:.1f}s")
    assert took < 18 and not srv.leaked, (took, srv.leaked, srv.log_text())
    assert rc in (0, -signal.SIGTERM), srv.log_text()
    log = srv.log_text(limit=200_000)              # loud about what it could not write
    assert "AUDIT RECORDS LOST" in log and "no call answered as a success lacks its record" in log, log

    filler.unlink()
    srv.start()
    recorded = set()
    ct = srv.client("cloudtrail")
    for name in ("CreateQueue", "ListQueues"):
        kw = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": name}], "MaxResults": 50}
        while True:
            page = ct.lookup_events(**kw)
            recorded |= {json.loads(e["CloudTrailEvent"])["requestID"] for e in page["Events"]}
            if not page.get("NextToken"):
                break
            kw["NextToken"] = page["NextToken"]
    missing = [r for r in answered if r not in recorded]
    assert not missing, f"{len(missing)} of {len(answered)} calls answered as a success are not in the trail"
