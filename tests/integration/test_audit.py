"""The audit trail end to end: a real server, boto3's lambda and cloudtrail clients, and
`lambdalet audit verify` before and after one byte of the trail is edited on disk."""
from __future__ import annotations

import json
import sqlite3
import uuid

import pytest
from botocore.exceptions import ClientError

from harness import run_lambdalet

from .e2e_support import create_function, default_zip, expect_error


def lookup(ct, name: str) -> list[dict]:
    out = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])
    return [json.loads(e["CloudTrailEvent"]) | {"_lookup": e} for e in out["Events"]]


def flip_one_byte_of_event(db_path, seq: int) -> None:
    """Edit the SQLite file itself: one byte in the middle of event `seq`'s stored row."""
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    blob = con.execute("SELECT body_sealed FROM audit_events WHERE seq = ?", (seq,)).fetchone()[0]
    con.close()
    raw = bytearray(db_path.read_bytes())
    at = raw.find(blob)
    assert at >= 0 and raw.find(blob, at + 1) < 0, "the sealed row is not stored contiguously once"
    raw[at + len(blob) // 2] ^= 0x20
    db_path.write_bytes(bytes(raw))


@pytest.mark.slow
def test_audit_trail_end_to_end(fresh_server):
    srv = fresh_server
    lam, ct = srv.client("lambda"), srv.client("cloudtrail")
    secret = f"hunter2-{uuid.uuid4().hex}"
    code_marker = f"code-marker-{uuid.uuid4().hex}"
    name = f"audited-{uuid.uuid4().hex[:8]}"
    created = create_function(lam, name, zip_bytes=default_zip(code_marker),
                              Environment={"Variables": {"DB_PASSWORD": secret}})
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=f"{name}-missing")
    bad = srv.client("lambda", aws_secret_access_key="wrong-secret-" + "x" * 28)
    with pytest.raises(ClientError) as refused:
        bad.list_functions()
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"

    # LookupEvents: the CreateFunction event, CloudTrail's fields, secrets redacted.
    events = lookup(ct, "CreateFunction")
    mine = [e for e in events if e["requestParameters"].get("functionName") == name]
    assert len(mine) == 1, events
    ev = mine[0]
    assert ev["eventName"] == "CreateFunction20150331" and ev["_lookup"]["EventName"] == "CreateFunction20150331"
    assert ev["eventSource"] == "lambda.amazonaws.com" and ev["eventCategory"] == "Management"
    assert ev["userIdentity"]["type"] == "IAMUser" and ev["userIdentity"]["accessKeyId"] == srv.access_key
    assert ev["userIdentity"]["userName"] == "admin" and ev["_lookup"]["Username"] == "admin"
    assert ev["requestID"] == created["ResponseMetadata"]["RequestId"]
    assert ev["sourceIPAddress"] == "127.0.0.1" and "Boto3" in ev["userAgent"]
    assert ev["requestParameters"]["environment"]["variables"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert "zipFile" not in ev["requestParameters"]["code"]
    assert ev["responseElements"]["functionArn"] == created["FunctionArn"]
    assert "errorCode" not in ev and ev["readOnly"] is False
    text = json.dumps(events, default=str)
    assert secret not in text and "DB_PASSWORD" not in text and code_marker not in text

    failed = [e for e in lookup(ct, "GetFunction") if e.get("errorCode")]
    assert failed and failed[0]["errorCode"] == "ResourceNotFoundException"
    assert failed[0]["requestParameters"]["functionName"] == f"{name}-missing"
    denied = [e for e in lookup(ct, "ListFunctions") if e.get("errorCode") == "InvalidSignatureException"]
    assert denied and denied[0]["userIdentity"] == {"type": "Unknown", "accessKeyId": srv.access_key}
    assert denied[0]["requestParameters"] is None
    lookups = lookup(ct, "LookupEvents")            # reading the trail is itself a management event
    assert lookups and lookups[0]["eventSource"] == "cloudtrail.amazonaws.com" and lookups[0]["readOnly"] is True

    res = run_lambdalet(srv, "audit", "verify")                         # safe while the server runs
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout

    srv.stop()                                      # a clean shutdown seals everything with a digest
    res = run_lambdalet(srv, "audit", "verify", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and report["unsealed_tail"] == 0 and report["digests"] >= 1 and report["events"] >= 8
    db_path = srv.data_dir / "state.db"
    for f in srv.data_dir.glob("state.db*"):        # encrypted at rest
        assert secret.encode() not in f.read_bytes() and b"DB_PASSWORD" not in f.read_bytes()

    with sqlite3.connect(db_path) as con:
        seq = con.execute("SELECT seq FROM audit_events WHERE event_name = 'CreateFunction20150331'").fetchone()[0]
    flip_one_byte_of_event(db_path, seq)
    res = run_lambdalet(srv, "audit", "verify")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"first bad event seq {seq}: changed" in res.stderr, res.stderr
    report = json.loads(run_lambdalet(srv, "audit", "verify", "--json").stdout)
    assert (report["first_bad_seq"], report["first_bad_kind"]) == (seq, "changed")
    assert len(report["problems"]) == 1, report

    # The server still starts on a damaged trail, keeps appending, and the damage stays reported.
    srv.start()
    lam = srv.client("lambda")
    lam.delete_function(FunctionName=name)
    deletes = lookup(srv.client("cloudtrail"), "DeleteFunction")
    assert [e["requestParameters"]["functionName"] for e in deletes] == [name]
    srv.stop()
    report = json.loads(run_lambdalet(srv, "audit", "verify", "--json").stdout)
    assert not report["ok"] and (report["first_bad_seq"], report["first_bad_kind"]) == (seq, "changed")
    assert len(report["problems"]) == 1 and report["unsealed_tail"] == 0, report


def test_a_forwarded_for_header_does_not_change_the_recorded_source_ip(server):
    """The server trusts no proxy header (server/run.py): a local client cannot pass off another
    address in the trail (or in aws:SourceIp) by sending X-Forwarded-For."""
    lam, ct = server.client("lambda"), server.client("cloudtrail")

    def spoof(request, **_):
        request.headers["X-Forwarded-For"] = "203.0.113.9"
        request.headers["X-Forwarded-Proto"] = "http"
    lam.meta.events.register("before-send.lambda", spoof)
    name = f"spoofed-{uuid.uuid4().hex[:8]}"
    with expect_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=name)
    mine = [e for e in lookup(ct, "GetFunction") if e["requestParameters"].get("functionName") == name]
    assert len(mine) == 1 and mine[0]["sourceIPAddress"] == "127.0.0.1", mine
