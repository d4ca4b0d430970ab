"""A nearly full data disk against a real server (issue 19.4): a 64 MiB tmpfs data dir (marks: low
16 MiB, critical 8 MiB) is filled from outside. Below the low-water mark function logs are dropped
with a line saying why; below the critical mark state-changing calls answer the throttling error
each SDK retries (never a 500) while reads, deletes, queue consumption and synchronous invokes keep
working; `lambdalet status` and the server log say so; once space returns everything works again."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness import mounted_tmpfs, run_lambdalet

from .e2e_support import create_function, make_zip

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
LOGGING_CODE = ("def handler(event, context):\n"
                "    print('line-from-the-function', event.get('n'))\n"
                "    return {'ok': event.get('n')}\n")


@pytest.fixture
def small_tmpfs(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "64m") as mnt:
        yield mnt


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_to(path: Path, filler: Path, leave: int) -> None:
    """Grow `filler` until about `leave` bytes of the filesystem are free."""
    with open(filler, "ab") as fh:
        while free_bytes(path) > leave + MiB:
            fh.write(b"\0" * min(MiB, free_bytes(path) - leave))
            fh.flush()
    os.truncate(filler, max(0, os.path.getsize(filler) - max(0, leave - free_bytes(path))))


def status(srv) -> subprocess.CompletedProcess:
    return run_lambdalet(srv, "status", "--json", timeout=60)


def wait_level(srv, level: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        res = status(srv)
        doc = json.loads(res.stdout)
        if doc["disk"]["level"] == level:
            return doc
        assert time.monotonic() < deadline, (level, res.stdout, res.stderr)
        time.sleep(0.5)


def log_messages(srv, name: str) -> list[str]:
    logs = srv.client("logs")
    return [e["message"] for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]]


def error(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.slow
def test_a_nearly_full_disk_sheds_logs_then_writes_with_retryable_errors_and_recovers(
        lambdalet_server_factory, small_tmpfs):
    srv = lambdalet_server_factory(data_dir=small_tmpfs / "data")
    lam, sqs = srv.client("lambda"), srv.client("sqs")
    name = f"disk-{uuid.uuid4().hex[:8]}"
    create_function(lam, name, zip_bytes=make_zip({"app.py": LOGGING_CODE}))
    queue = sqs.create_queue(QueueName=f"disk-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="before")
    lam.invoke(FunctionName=name, Payload=b'{"n": 0}')
    doc = wait_level(srv, "ok")
    assert doc["running"] and doc["disk"]["low_bytes"] == 16 * MiB and doc["disk"]["critical_bytes"] == 8 * MiB

    filler = small_tmpfs / "filler"
    # ---- low: logs go first, everything else works
    fill_to(small_tmpfs, filler, 12 * MiB)
    doc = wait_level(srv, "low")
    assert status(srv).returncode == 2
    assert json.loads(lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["Payload"].read()) == {"ok": 1}
    sqs.send_message(QueueUrl=queue, MessageBody="while low")
    deadline = time.monotonic() + 10
    while not any("data disk is low" in m for m in log_messages(srv, name)):
        assert time.monotonic() < deadline, log_messages(srv, name)
        time.sleep(0.3)
    assert sum("line-from-the-function" in m for m in log_messages(srv, name)) == 1      # only n=0's
    assert "DATA DISK LOW" in srv.log_text(limit=200_000)

    # ---- critical: writes refused with retryable throttling errors, reads keep working
    fill_to(small_tmpfs, filler, 4 * MiB)
    wait_level(srv, "critical")
    refusals = {
        "CreateFunction": lambda: create_function(lam, f"{name}-2", zip_bytes=make_zip({"app.py": LOGGING_CODE}),
                                                  wait=False),
        "UpdateFunctionConfiguration": lambda: lam.update_function_configuration(FunctionName=name, Timeout=9),
        "Invoke(Event)": lambda: lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}"),
        "SendMessage": lambda: sqs.send_message(QueueUrl=queue, MessageBody="while critical"),
        "CreateQueue": lambda: sqs.create_queue(QueueName=f"disk-{uuid.uuid4().hex[:8]}"),
        "PutRetentionPolicy": lambda: srv.client("logs").put_retention_policy(
            logGroupName=f"/aws/lambda/{name}", retentionInDays=1),
    }
    for what, call in refusals.items():
        with pytest.raises(ClientError) as exc:
            call()
        code, status_code = error(exc.value)
        assert status_code < 500 and code in ("TooManyRequestsException", "RequestThrottled", "ThrottlingException"), \
            (what, exc.value.response)
        assert "disk" in exc.value.response["Error"]["Message"], (what, exc.value.response)
    # boto3's default (legacy) retry mode retries the refusal by itself
    retrying = srv.client("sqs", config=Config(retries={"total_max_attempts": 3, "mode": "legacy"}))
    with pytest.raises(ClientError) as exc:
        retrying.send_message(QueueUrl=queue, MessageBody="retried")
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 2, exc.value.response
    assert lam.get_function(FunctionName=name)["Configuration"]["Timeout"] == 3
    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert queue in sqs.list_queues()["QueueUrls"]
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert {m["Body"] for m in got} == {"before", "while low"}
    sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                      for i, m in enumerate(got)])
    assert json.loads(lam.invoke(FunctionName=name, Payload=b'{"n": 2}')["Payload"].read()) == {"ok": 2}
    deadline = time.monotonic() + 5        # the monitor publishes its counters once a second
    while True:
        doc = json.loads(status(srv).stdout)
        if doc["disk"]["calls_refused"] >= len(refusals) + 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert doc["disk"]["calls_refused"] >= len(refusals) + 1 and doc["disk"]["log_bytes_dropped"] > 0, doc
    log = srv.log_text(limit=400_000)
    assert "DATA DISK CRITICAL" in log and "internal error" not in log and "Traceback" not in log, log[-4000:]

    # ---- space returns: everything works again
    filler.unlink()
    wait_level(srv, "ok")
    assert status(srv).returncode == 0
    create_function(lam, f"{name}-2", zip_bytes=make_zip({"app.py": LOGGING_CODE}))
    lam.update_function_configuration(FunctionName=name, Timeout=9)
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 3}')["StatusCode"] == 202
    sqs.send_message(QueueUrl=queue, MessageBody="after")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]] == ["after"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    lam.invoke(FunctionName=name, Payload=b'{"n": 4}')
    deadline = time.monotonic() + 15
    while sum("line-from-the-function" in m for m in log_messages(srv, name)) < 3:      # n=0, the Event n=3, n=4
        assert time.monotonic() < deadline, log_messages(srv, name)
        time.sleep(0.3)
    assert "back to normal" in srv.log_text(limit=400_000)
