"""events/: acceptance, delivery and outcome handling in process, with a real database, keyring,
queue service and control plane, and a fake invoker (no sandbox): what gets acked when, retries with
backoff, throttles not counted, age limit, destinations, DLQ, large payloads, orphan release."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from lambdalet.config import Settings
from lambdalet.events import build_async_events
from lambdalet.events.acks import BatchedAcks
from lambdalet.events.messages import EventMessage
from lambdalet.events.async_invoke import INLINE_MAX, INTERNAL_ACCOUNT
from lambdalet.events.tables import event_payloads
from lambdalet.invoke.targets import TargetResolver
from lambdalet.models.errors import (RequestEntityTooLargeException, RequestTooLargeException, ServiceException,
                                     TooManyRequestsException)
from lambdalet.queues import QueueService
from lambdalet.queues.tables import sqs_messages
from lambdalet.sandbox.api import InvokeResult

from .services_support import ACCOUNT, REGION, build_env, make_ctx


class FakeInvoker:
    def __init__(self, resolve):
        self.resolve = resolve
        self.calls: list[tuple[str, bytes]] = []
        self.outcomes: list = []          # per call: InvokeResult, or an exception to raise

    def run(self, ctx, target, payload, client_context=None, *, tenant_id="", trace_header=""):   # as Invoker.run
        self.calls.append((ctx.request_id, payload))
        out = self.outcomes.pop(0) if self.outcomes else InvokeResult(b'{"ok":true}')
        if isinstance(out, BaseException):
            raise out
        return out


@dataclass
class World:
    env: object
    queues: QueueService
    invoker: FakeInvoker
    events: object

    @property
    def ctx(self):
        return make_ctx()

    def queue(self, name: str) -> tuple[str, str]:
        url = self.queues.create_queue(self.ctx, {"QueueName": name})["QueueUrl"]
        return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def receive(self, url: str) -> list[dict]:
        got = self.queues.receive_message(self.ctx, {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                                     "MessageAttributeNames": ["All"]})
        return got.get("Messages", [])

    def event(self, name: str, payload: dict | bytes, **kw) -> str:
        ctx = make_ctx()
        ctx = type(ctx)(**{**ctx.__dict__, "request_id": str(uuid.uuid4())})
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        assert self.events.submit_invoke(ctx, {"FunctionName": name, "Payload": body, **kw}) == {"StatusCode": 202}
        return ctx.request_id

    def step(self, wait: float = 0) -> list[str]:
        """Claim whatever is receivable (after `wait` s) and process it; -> outcomes."""
        if wait:
            time.sleep(wait)
        out = []
        for arn in self.events.invocations.internal_queue_arns():
            for m in self.queues.claim(arn, 10, 120, 0):
                out.append(self.events.poller.process(m))
        return out


@pytest.fixture
def w(tmp_path):
    env = build_env(tmp_path)
    db = env.svc.deps.db
    settings = Settings(data_dir=tmp_path, async_retry_scale=0.01)
    queues = QueueService(db, env.keyring, settings)
    invoker = FakeInvoker(TargetResolver(env.svc.resolver, db))
    events = build_async_events(db, env.keyring, queues, invoker, env.svc.resolver, settings)
    env.create("fn")
    yield World(env, queues, invoker, events)
    db.close()


def test_success_goes_to_on_success_and_is_acked(w):
    url, arn = w.queue("ok")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn",
                                                      "DestinationConfig": {"OnSuccess": {"Destination": arn}}})
    rid = w.event("fn", {"a": 1})
    assert w.step() == ["Success"]
    assert w.invoker.calls == [(rid, b'{"a": 1}')]
    [m] = w.receive(url)
    rec = json.loads(m["Body"])
    assert rec["requestContext"]["condition"] == "Success" and rec["responsePayload"] == {"ok": True}
    assert w.step() == [], "acked: not delivered again"


def test_function_error_retries_with_backoff_then_failure_and_dlq(w):
    f_url, f_arn = w.queue("fail")
    d_url, d_arn = w.queue("dlq")
    w.env.call("update_function_configuration", FunctionName="fn", DeadLetterConfig={"TargetArn": d_arn})
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn", "MaximumRetryAttempts": 2,
                                                      "DestinationConfig": {"OnFailure": {"Destination": f_arn}}})
    err = InvokeResult(b'{"errorMessage":"nope","errorType":"E"}', function_error="Unhandled")
    w.invoker.outcomes = [err, err, err]
    rid = w.event("fn", {"x": 1})
    assert w.step() == ["retried"]
    assert w.step() == [], "the retry waits for its backoff (60 s * 0.01 -> 1 s)"
    assert w.step(wait=1.1) == ["retried"]
    assert w.step(wait=0.5) == [], "second backoff is longer (120 s * 0.01 -> 2 s)"
    assert w.step(wait=1.7) == ["RetriesExhausted"]
    assert [c[0] for c in w.invoker.calls] == [rid] * 3, "the request id is kept across retries"
    [m] = w.receive(f_url)
    rec = json.loads(m["Body"])
    assert rec["requestContext"]["approximateInvokeCount"] == 3 and rec["responsePayload"]["errorMessage"] == "nope"
    [d] = w.receive(d_url)
    assert json.loads(d["Body"]) == {"x": 1}
    assert d["MessageAttributes"]["RequestID"]["StringValue"] == rid
    assert d["MessageAttributes"]["ErrorMessage"]["StringValue"] == "nope"


def test_throttles_are_not_attempts(w):
    f_url, f_arn = w.queue("fail")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn", "MaximumRetryAttempts": 0,
                                                      "DestinationConfig": {"OnFailure": {"Destination": f_arn}}})
    w.invoker.outcomes = [TooManyRequestsException("Rate Exceeded."), TooManyRequestsException("Rate Exceeded."),
                          InvokeResult(b"{}", function_error="Unhandled")]
    w.event("fn", {})
    assert w.step() == ["throttled"]
    assert w.step(wait=1.1) == ["throttled"]
    assert w.step(wait=2.1) == ["RetriesExhausted"]
    [m] = w.receive(f_url)
    assert json.loads(m["Body"])["requestContext"]["approximateInvokeCount"] == 1


def test_event_age_exceeded(w):
    f_url, f_arn = w.queue("fail")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn", "MaximumEventAgeInSeconds": 60,
                                                      "DestinationConfig": {"OnFailure": {"Destination": f_arn}}})
    w.event("fn", {"old": True})
    time.sleep(0.7)          # 60 s * 0.01
    assert w.step() == ["EventAgeExceeded"]
    assert w.invoker.calls == []
    rec = json.loads(w.receive(f_url)[0]["Body"])
    assert rec["requestContext"]["condition"] == "EventAgeExceeded" and rec["requestPayload"] == {"old": True}


def test_platform_fault_is_not_acked_and_not_an_attempt(w):
    w.invoker.outcomes = [ServiceException("The execution environment could not be started.")]
    w.event("fn", {})
    assert w.step() == ["platform_error"]
    assert w.step(wait=1.1) == ["Success"]


def test_destination_fault_leaves_the_event_queued(w, monkeypatch):
    _, arn = w.queue("ok")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn",
                                                      "DestinationConfig": {"OnSuccess": {"Destination": arn}}})
    w.event("fn", {})
    real = w.queues.enqueue

    def broken(*a, **kw):
        raise ServiceException("disk full")
    monkeypatch.setattr(w.queues, "enqueue", broken)
    arn_internal = w.events.invocations.internal_queue_arns()[0]
    [m] = w.queues.claim(arn_internal, 10, 1, 0)
    with pytest.raises(ServiceException):
        w.events.poller.process(m)
    monkeypatch.setattr(w.queues, "enqueue", real)
    assert w.step(wait=1.1) == ["Success"], "not acked: delivered again after the visibility timeout"


def test_deleted_destination_queue_is_logged_and_event_acked(w, caplog):
    url, arn = w.queue("gone")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn",
                                                      "DestinationConfig": {"OnSuccess": {"Destination": arn}}})
    w.queues.delete_queue(w.ctx, {"QueueUrl": url})
    w.event("fn", {})
    assert w.step() == ["Success"]
    assert "could not deliver" in caplog.text
    assert w.step() == []


def test_large_payload_uses_side_table_and_is_cleaned_up(w):
    body = json.dumps({"x": "a" * (INLINE_MAX + 10)}).encode()
    w.event("fn", body)
    with w.env.svc.deps.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(event_payloads)).scalar() == 1
    assert w.step() == ["Success"]
    assert w.invoker.calls[0][1] == body
    with w.env.svc.deps.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(event_payloads)).scalar() == 0
        sealed = conn.execute(sa.select(sqs_messages.c.body_sealed)).all()
    assert all(b"aaaa" not in row[0] for row in sealed)


def test_payload_limits(w):
    with pytest.raises(RequestEntityTooLargeException):     # AWS's code for an Event payload over 1 MB
        w.event("fn", b'"' + b"a" * 1_048_576 + b'"')
    with pytest.raises(RequestTooLargeException):
        w.events.invoke_async(w.ctx, {"FunctionName": "fn", "InvokeArgs": b'"' + b"a" * 262_144 + b'"'})
    assert w.events.invoke_async(w.ctx, {"FunctionName": "fn", "InvokeArgs": b'{"k":1}'}) == {"Status": 202}
    assert w.step() == ["Success"]


def test_orphaned_claims_are_released_at_start(w):
    w.event("fn", {})
    arn = w.events.invocations.internal_queue_arns()[0]
    assert len(w.queues.claim(arn, 10, 600, 0)) == 1     # a crashed process's claim
    assert w.step() == []
    assert w.events.poller.release_orphans() == 1
    assert w.step() == ["Success"]


def test_internal_queue_is_owned_by_the_reserved_account(w):
    w.event("fn", {})
    [arn] = w.events.invocations.internal_queue_arns()
    assert f":{INTERNAL_ACCOUNT}:" in arn
    assert "QueueUrls" not in w.queues.list_queues(w.ctx, {})


def test_running_poller_delivers_and_closes(w):
    url, arn = w.queue("ok")
    w.events.put_function_event_invoke_config(w.ctx, {"FunctionName": "fn",
                                                      "DestinationConfig": {"OnSuccess": {"Destination": arn}}})
    w.events.start()
    try:
        rids = {w.event("fn", {"i": i}) for i in range(25)}
        got: set[str] = set()
        deadline = time.monotonic() + 20
        while got != rids and time.monotonic() < deadline:
            for m in w.receive(url):
                got.add(json.loads(m["Body"])["requestContext"]["requestId"])
                w.queues.delete_message(w.ctx, {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
        assert got == rids
    finally:
        w.events.close(5)


def _rows(w, table) -> int:
    with w.env.svc.deps.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_batched_acks_apply_at_flush_and_drop_payloads_only_after(w, monkeypatch):
    acks = BatchedAcks(w.queues, w.events.invocations.drop_payloads)
    w.event("fn", {"small": 1})
    w.event("fn", json.dumps({"x": "a" * (INLINE_MAX + 10)}).encode())
    arn = w.events.invocations.internal_queue_arns()[0]
    ms = w.queues.claim(arn, 10, 120, 0)
    assert [w.events.poller.process(m, acks=acks) for m in ms] == ["Success", "Success"]
    assert _rows(w, sqs_messages) == 2 and _rows(w, event_payloads) == 1, "recorded, not yet applied"

    def broken(*a, **kw):
        raise OSError("disk on fire")
    monkeypatch.setattr(w.queues, "settle", broken)
    assert acks.flush() == 0
    assert _rows(w, event_payloads) == 1, "the ack failed: the payload stays for the redelivery"
    monkeypatch.undo()
    for m in ms:                     # recorded again (the failed batch was given up)
        acks.ack(m.receipt, EventMessage.decode(m.body).payload_ref)
    acks.ack(ms[0].receipt, None)    # a duplicate ack is harmless
    assert acks.flush() == 3
    assert _rows(w, sqs_messages) == 0 and _rows(w, event_payloads) == 0
