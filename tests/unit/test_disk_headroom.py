"""store/headroom.py and store/disk_gate.py: the marks, the levels (with a margin to leave one), what a
critical disk refuses and in which retryable shape, the status file, and logs dropped first."""
from __future__ import annotations

import json
import logging
import os

import pytest
from botocore.retries import standard

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.logs.store import LogStore
from lambdalet.store import headroom as headroom_mod
from lambdalet.store.disk_gate import DiskGate, admitting, changes_state, payload_bytes, refusal
from lambdalet.store.headroom import CRITICAL, LOW, OK, MiB, DiskHeadroom, Marks

from .logs_support import ACCOUNT, GROUP, REGION, make_db, messages

GiB = 1 << 30


def test_marks_scale_with_the_filesystem_and_leave_small_ones_room():
    assert Marks.for_filesystem(1000 * GiB) == Marks(20 * GiB, 10 * GiB)          # 2 %
    assert Marks.for_filesystem(10 * GiB) == Marks(256 * MiB, 128 * MiB)         # 256 MiB floor
    assert Marks.for_filesystem(48 * MiB) == Marks(12 * MiB, 6 * MiB)            # a quarter at most
    assert Marks.for_filesystem(10 * GiB, low_mb=1024) == Marks(GiB, GiB // 2)


def test_levels_need_a_margin_to_be_left():
    m = Marks(100 * MiB, 50 * MiB)
    assert m.level(200 * MiB) == OK
    assert m.level(99 * MiB) == LOW
    assert m.level(49 * MiB) == CRITICAL
    assert m.level(51 * MiB, previous=CRITICAL) == CRITICAL       # within 5 MiB of the mark: stays
    assert m.level(56 * MiB, previous=CRITICAL) == LOW
    assert m.level(101 * MiB, previous=LOW) == LOW
    assert m.level(106 * MiB, previous=LOW) == OK


class FakeDisk:
    def __init__(self, free: int, total: int = 1000 * MiB):
        self.free, self.total = free, total

    def __call__(self, _path):
        return self.free, self.total


@pytest.fixture
def disk(monkeypatch):
    fake = FakeDisk(900 * MiB)
    monkeypatch.setattr(headroom_mod, "free_space", fake)
    return fake


def test_monitor_moves_levels_logs_transitions_and_publishes(disk, tmp_path, caplog):
    status = tmp_path / "status.json"
    room = DiskHeadroom(tmp_path, low_mb=200, status_file=status)         # marks 200 / 100 MiB
    assert room.level == OK and json.loads(status.read_text())["level"] == OK
    caplog.set_level(logging.INFO, "lambdalet.disk")
    disk.free = 150 * MiB
    assert room.check() == LOW and room.logs_accepted() is False and room.writes_accepted()
    disk.free = 90 * MiB
    assert room.check() == CRITICAL and not room.writes_accepted()
    doc = json.loads(status.read_text())
    assert doc["level"] == CRITICAL and doc["free_bytes"] == 90 * MiB and doc["pid"] == os.getpid()
    disk.free = 500 * MiB
    assert room.check() == OK and room.writes_accepted(10 * MiB)
    assert not room.writes_accepted(450 * MiB)       # this call alone would take it below the critical mark
    text = caplog.text
    assert "DATA DISK LOW" in text and "DATA DISK CRITICAL" in text and "back to normal" in text
    room.close()
    assert not status.exists()


@pytest.mark.parametrize("service,op,params,writes", [
    ("lambda", "CreateFunction", {}, True), ("lambda", "UpdateFunctionConfiguration", {}, True),
    ("lambda", "Invoke", {"InvocationType": "Event"}, True), ("lambda", "Invoke", {}, False),
    ("lambda", "Invoke", {"InvocationType": "DryRun"}, False), ("lambda", "GetFunction", {}, False),
    ("lambda", "ListFunctions", {}, False), ("lambda", "DeleteFunction", {}, False),
    ("sqs", "SendMessage", {}, True), ("sqs", "SendMessageBatch", {}, True), ("sqs", "ReceiveMessage", {}, False),
    ("sqs", "DeleteMessage", {}, False), ("sqs", "PurgeQueue", {}, False), ("sqs", "CreateQueue", {}, True),
    ("logs", "FilterLogEvents", {}, False), ("logs", "PutRetentionPolicy", {}, True),
    ("kms", "Decrypt", {}, False), ("kms", "CreateKey", {}, True), ("sts", "AssumeRole", {}, False),
    ("iam", "CreateUser", {}, True), ("cloudtrail", "LookupEvents", {}, False),
])
def test_what_a_critical_disk_refuses(service, op, params, writes):
    assert changes_state(service, op, params) is writes


def test_payload_bytes_counts_zips_and_messages():
    assert payload_bytes({"Code": {"ZipFile": b"x" * 1000}, "FunctionName": "f"}) == 1001
    assert payload_bytes({"Entries": [{"Id": "1", "MessageBody": "abc"}]}) == 0 + 4


@pytest.mark.parametrize("service,code,status", [
    ("lambda", "TooManyRequestsException", 429), ("sqs", "RequestThrottled", 403),
    ("scheduler", "ThrottlingException", 429), ("logs", "ThrottlingException", 400),
    ("iam", "Throttling", 400),
])
def test_refusals_are_errors_botocore_retries_in_both_modes(disk, tmp_path, service, code, status):
    err = refusal(service, DiskHeadroom(tmp_path))
    assert (err.code, err.status) == (code, status) and "disk" in err.message
    # standard mode: by code; legacy (boto3's default): by status or the per-service rule in _retry.json
    assert code in standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    legacy = json.load(open(os.path.join(os.path.dirname(standard.__file__), "..", "data", "_retry.json")))
    rules = [r["applies_when"]["response"] for r in legacy["definitions"].values()
             if "response" in r["applies_when"]]
    rules += [p["applies_when"]["response"] for p in legacy["retry"].get(service, {}).get("__default__", {})
              .get("policies", {}).values()]
    assert any(r.get("http_status_code") == status and r.get("service_error_code") in (None, code) for r in rules)
    if service == "lambda":
        assert err.extra["Reason"] == "CallerRateLimitExceeded" and err.headers["Retry-After"]


def test_gate_refuses_writes_only_after_authorization(disk, tmp_path):
    room = DiskHeadroom(tmp_path, low_mb=200)
    calls = []
    authorize = admitting(lambda s, o, p, ctx: calls.append(o) or ctx, DiskGate(room))
    disk.free = 10 * MiB
    room.check()
    assert authorize("lambda", "GetFunction", {}, "ctx") == "ctx"
    with pytest.raises(Exception) as exc:
        authorize("lambda", "CreateFunction", {}, "ctx")
    assert exc.value.code == "TooManyRequestsException" and calls == ["GetFunction", "CreateFunction"]
    assert room.state.calls_refused == 1


def test_low_disk_drops_function_logs_with_a_line_and_critical_drops_everything(disk, tmp_path):
    db = make_db(f"sqlite:///{tmp_path / 'state.db'}")
    room = DiskHeadroom(tmp_path, low_mb=200)
    store = LogStore(db, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), background=False, headroom=room)
    try:
        sink = store.sink(ACCOUNT, REGION, GROUP, "s1")
        sink(b"kept\n")
        store.flush()
        disk.free = 150 * MiB
        room.check()
        sink(b"a" * 1000 + b"\n" + b"b\n")
        store.flush()
        got = messages(store)
        assert got[0] == "kept\n" and len(got) == 2 and "2 log events (1003 bytes) were dropped" in got[1]
        assert "data disk is low" in got[1]
        disk.free = 50 * MiB
        room.check()
        sink(b"c\n")
        store.flush()
        assert len(messages(store)) == 2                     # critical: not even the line
        assert room.state.log_bytes_dropped == 1005
        disk.free = 900 * MiB
        room.check()
        sink(b"back\n")
        store.flush()
        assert messages(store)[-1] == "back\n"
    finally:
        store.close()
        db.close()
