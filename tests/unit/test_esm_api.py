"""Event source mappings: the API operations and the pollers, against the real QueueService and
LambdaService on a temporary SQLite file, with a fake function caller standing in for the invoker.

The database is built from the table definitions (metadata.create_all) so these tests do not depend
on other components' migrations; `test_migration_0005_builds_the_table` checks the migration itself.
"""
from __future__ import annotations

from functools import partial
import hashlib
import importlib.util
import io
import json
import os
import threading
import time
import zipfile
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations

from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.events import esm as esm_module
from lambdalet.events.esm import EventSourceMappings
from lambdalet.events.esm_poller import (MappingPoller, MappingSpec, chunk_records, failed_item_ids,
                                         sqs_record)
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import (ValidationException, InvalidParameterValueException, ResourceConflictException,
                                     ResourceNotFoundException, TooManyRequestsException)
from lambdalet.queues import QueueService
import lambdalet.queues.tables  # noqa: F401  (attaches the queue tables to metadata)
from lambdalet.sandbox.api import InvokeResult
from lambdalet.services.lambda_service import LambdaService
from lambdalet.store.db import MIGRATIONS_DIR, Database, make_engine
from lambdalet.store.schema import metadata

import polling

ACCOUNT = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/r"



# AWS answers a member that breaks its model constraint with ValidationException ("N validation
# error(s) detected: ..."), and the service's own checks with InvalidParameterValueException.
PARAM_ERRORS = (InvalidParameterValueException, ValidationException)


def assert_aws_kind(err) -> None:
    assert isinstance(err, ValidationException) == ("validation error detected" in err.message), repr(err)

def ctx_for(account: str = ACCOUNT, region: str = REGION) -> RequestContext:
    return RequestContext(Caller(account, f"arn:aws:iam::{account}:user/admin", "LKIA", "AIDA"), region, "req",
                          "https://127.0.0.1:9000")


def app_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


class FakeCaller:
    """Stands in for the invoker: records every event; `behaviour(event) -> (payload, function_error)`."""

    def __init__(self):
        self.events: list[dict] = []
        self.behaviour = lambda event: (b"null", None)
        self.timeout_s = 1
        self.delay_s = 0.0
        self.missing = False
        self.throttle_next = 0
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def resolve(self, spec):
        if self.missing:
            raise ResourceNotFoundException("Function not found")
        return SimpleNamespace(timeout_s=self.timeout_s)

    def invoke(self, spec, target, payload):
        with self._lock:
            if self.throttle_next:
                self.throttle_next -= 1
                raise TooManyRequestsException("Rate Exceeded.")
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            event = json.loads(payload)
            with self._lock:
                self.events.append(event)
            out, err = self.behaviour(event)
            return InvokeResult(payload=out if isinstance(out, bytes) else json.dumps(out).encode(),
                                function_error=err)
        finally:
            with self._lock:
                self.running -= 1

    def bodies(self) -> list[str]:
        with self._lock:
            return [r["body"] for e in self.events for r in e["Records"]]


class Env:
    def __init__(self, tmp_path):
        engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        metadata.create_all(engine)
        self.db = Database(engine)
        self.keyring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
        settings = Settings(data_dir=tmp_path, region=REGION)
        self.svc = LambdaService(self.db, self.keyring, BlobStore(tmp_path / "blobs", self.keyring), settings)
        self.queues = QueueService(self.db, self.keyring, settings)
        self.caller = FakeCaller()
        self.esm = EventSourceMappings(self.db, self.queues, caller=self.caller, poll_wait_s=0.2, vis_margin_s=0)
        self.ctx = ctx_for()

    def function(self, name: str = "fn", **kw) -> str:
        params = dict(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                      Code={"ZipFile": app_zip()}, Timeout=1)
        params.update(kw)
        self.svc.create_function(self.ctx, params)
        return name

    def queue(self, name: str = "q", **attrs) -> str:
        attrs.setdefault("VisibilityTimeout", "1")
        self.queues.create_queue(self.ctx, {"QueueName": name, "Attributes": {k: str(v) for k, v in attrs.items()}})
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def send(self, queue: str, *bodies: str, **kw) -> None:
        for b in bodies:
            self.queues.send_message(self.ctx, {"QueueUrl": f"{ACCOUNT}/{queue}", "MessageBody": b, **kw})

    def counts(self, queue: str) -> tuple[int, int]:
        a = self.queues.get_queue_attributes(self.ctx, {"QueueUrl": f"{ACCOUNT}/{queue}", "AttributeNames": ["All"]})
        a = a["Attributes"]
        return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])

    def create(self, **params) -> dict:
        params.setdefault("FunctionName", "fn")
        params.setdefault("EventSourceArn", f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")
        return self.esm.create_event_source_mapping(self.ctx, params)

    def call(self, op: str, **params) -> dict:
        return getattr(self.esm, op)(self.ctx, params)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.esm.close(timeout=5)
    e.db.close()


@pytest.fixture
def started(env):
    env.function()
    env.queue()
    env.esm.start()
    return env


wait_for = partial(polling.wait_for, timeout=15.0, interval=0.05)


# ============================================================================ API

def test_create_answers_creating_then_enabled(started):
    out = started.create()
    assert out["State"] == "Creating"
    assert out["BatchSize"] == 10 and out["MaximumBatchingWindowInSeconds"] == 0
    assert out["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
    assert out["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"
    assert out["EventSourceMappingArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{out['UUID']}"
    assert out["FunctionResponseTypes"] == [] and out["StateTransitionReason"] == "USER_INITIATED"
    assert isinstance(out["LastModified"], float)
    got = started.call("get_event_source_mapping", UUID=out["UUID"])
    assert got["State"] == "Enabled"
    assert {k: v for k, v in got.items() if k != "State"} == {k: v for k, v in out.items() if k != "State"}


def test_create_disabled_and_qualified(started):
    started.svc.publish_version(started.ctx, {"FunctionName": "fn"})
    started.svc.create_alias(started.ctx, {"FunctionName": "fn", "Name": "live", "FunctionVersion": "1"})
    out = started.create(FunctionName=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn:live", Enabled=False,
                         BatchSize=100, MaximumBatchingWindowInSeconds=2,
                         FunctionResponseTypes=["ReportBatchItemFailures"], ScalingConfig={"MaximumConcurrency": 3},
                         FilterCriteria={"Filters": [{"Pattern": '{"body": {"k": [1]}}'}]})
    assert out["FunctionArn"].endswith(":function:fn:live")
    assert out["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert out["FilterCriteria"] == {"Filters": [{"Pattern": '{"body": {"k": [1]}}'}]}
    assert started.call("get_event_source_mapping", UUID=out["UUID"])["State"] == "Disabled"
    assert started.esm.poller(out["UUID"]) is None
    # one mapping per function ARN and queue; another qualifier is another function ARN
    started.create()
    with pytest.raises(ResourceConflictException) as ei:
        started.create(FunctionName="fn:live")
    assert out["UUID"] in ei.value.message


@pytest.mark.parametrize("params, fragment", [
    ({"BatchSize": 11}, "Maximum batch window in seconds must be greater than 0"),
    ({"BatchSize": 0}, "greater than or equal to 1"),
    ({"BatchSize": 10001, "MaximumBatchingWindowInSeconds": 1}, "less than or equal to 10000"),
    ({"MaximumBatchingWindowInSeconds": 301}, "less than or equal to 300"),
    ({"StartingPosition": "LATEST"}, "StartingPosition"),
    ({"ParallelizationFactor": 2}, "ParallelizationFactor"),
    ({"FunctionResponseTypes": ["Nope"]}, "ReportBatchItemFailures"),
    ({"ScalingConfig": {"MaximumConcurrency": 1}}, "greater than or equal to 2"),
    ({"ScalingConfig": {"MaximumConcurrency": 1001}}, "less than or equal to 1000"),
    ({"FilterCriteria": {"Filters": [{"Pattern": "{bad"}]}}, "Invalid filter pattern definition."),
    ({"EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:missing"}, "NonExistentQueue"),
    ({"EventSourceArn": f"arn:aws:sqs:{REGION}:{OTHER}:q"}, "not in this account"),
    ({"EventSourceArn": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q"}, "not in this account and region"),
    ({"EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/s"}, "SQS queues"),
])
def test_create_validation(started, params, fragment):
    with pytest.raises(PARAM_ERRORS) as ei:
        started.create(**params)
    assert fragment in ei.value.message
    assert_aws_kind(ei.value)


def test_batch_size_over_ten_with_a_window(started):
    out = started.create(BatchSize=10000, MaximumBatchingWindowInSeconds=1)
    assert out["BatchSize"] == 10000


def test_function_must_exist_and_fit_the_visibility_timeout(started):
    with pytest.raises(ResourceNotFoundException):
        started.create(FunctionName="nope")
    with pytest.raises(ResourceNotFoundException):
        started.create(FunctionName="fn:7")
    started.function("slow", Timeout=60)
    with pytest.raises(InvalidParameterValueException) as ei:
        started.create(FunctionName="slow")
    assert ei.value.message == "Queue visibility timeout: 1 seconds is less than Function timeout: 60 seconds"


def test_get_update_delete_unknown_or_foreign(started):
    out = started.create()
    for op in ("get_event_source_mapping", "update_event_source_mapping", "delete_event_source_mapping"):
        with pytest.raises(ResourceNotFoundException):
            started.call(op, UUID="00000000-0000-4000-8000-000000000000")
        with pytest.raises(ResourceNotFoundException):
            started.call(op, UUID="not-a-uuid")
        with pytest.raises(ResourceNotFoundException):
            getattr(started.esm, op)(ctx_for(OTHER), {"UUID": out["UUID"]})
    assert started.esm.list_event_source_mappings(ctx_for(OTHER), {})["EventSourceMappings"] == []


def test_update_states_and_settings(started):
    uuid = started.create()["UUID"]
    out = started.call("update_event_source_mapping", UUID=uuid, BatchSize=5)
    assert out["State"] == "Updating" and out["BatchSize"] == 5
    assert started.esm.poller(uuid).spec.batch_size == 5
    assert started.call("get_event_source_mapping", UUID=uuid)["State"] == "Enabled"
    with pytest.raises(InvalidParameterValueException):
        started.call("update_event_source_mapping", UUID=uuid, BatchSize=50)     # still no window
    out = started.call("update_event_source_mapping", UUID=uuid, BatchSize=50, MaximumBatchingWindowInSeconds=1,
                       FilterCriteria={"Filters": [{"Pattern": '{"body": ["x"]}'}]},
                       ScalingConfig={"MaximumConcurrency": 4})
    assert out["FilterCriteria"] and out["ScalingConfig"] == {"MaximumConcurrency": 4}
    out = started.call("update_event_source_mapping", UUID=uuid, FilterCriteria={}, ScalingConfig={})
    assert "FilterCriteria" not in out and "ScalingConfig" not in out and out["BatchSize"] == 50
    out = started.call("update_event_source_mapping", UUID=uuid, Enabled=False)
    assert out["State"] == "Disabling"
    wait_for(lambda: started.call("get_event_source_mapping", UUID=uuid)["State"] == "Disabled", what="Disabled")
    assert started.esm.poller(uuid) is None
    out = started.call("update_event_source_mapping", UUID=uuid, Enabled=True)
    assert out["State"] == "Enabling"
    assert started.call("get_event_source_mapping", UUID=uuid)["State"] == "Enabled"
    assert started.esm.poller(uuid) is not None
    before = out["LastModified"]
    started.function("other")
    out = started.call("update_event_source_mapping", UUID=uuid, FunctionName="other")
    assert out["FunctionArn"].endswith(":function:other") and out["LastModified"] >= before
    assert started.esm.poller(uuid).spec.function_name == "other"


def test_delete(started):
    uuid = started.create()["UUID"]
    poller = started.esm.poller(uuid)
    out = started.call("delete_event_source_mapping", UUID=uuid)
    assert out["State"] == "Deleting" and out["UUID"] == uuid
    assert poller.stopped
    wait_for(lambda: not started.call("list_event_source_mappings")["EventSourceMappings"], what="deleted")
    with pytest.raises(ResourceNotFoundException):
        started.call("get_event_source_mapping", UUID=uuid)


def test_list_filters_and_pages(started):
    started.function("g")
    started.queue("q2")
    a = started.create()["UUID"]
    b = started.create(EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:q2")["UUID"]
    c = started.create(FunctionName="g")["UUID"]
    everything = started.call("list_event_source_mappings")["EventSourceMappings"]
    assert sorted(m["UUID"] for m in everything) == sorted([a, b, c])
    by_fn = started.call("list_event_source_mappings", FunctionName="fn")["EventSourceMappings"]
    assert sorted(m["UUID"] for m in by_fn) == sorted([a, b])
    by_arn = started.call("list_event_source_mappings", FunctionName=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:g")
    assert [m["UUID"] for m in by_arn["EventSourceMappings"]] == [c]
    by_src = started.call("list_event_source_mappings", EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:q2")
    assert [m["UUID"] for m in by_src["EventSourceMappings"]] == [b]
    seen, marker = [], None
    while True:
        params = {"MaxItems": 2, **({"Marker": marker} if marker else {})}
        resp = started.call("list_event_source_mappings", **params)
        seen += [m["UUID"] for m in resp["EventSourceMappings"]]
        marker = resp.get("NextMarker")
        if not marker:
            break
    assert sorted(seen) == sorted([a, b, c])


def test_restart_settles_states_and_resumes(env, tmp_path):
    env.function()
    env.queue()
    uuid = env.create()["UUID"]          # not started: stays Creating
    gone = env.create(FunctionName="fn:$LATEST")["UUID"]
    env.call("delete_event_source_mapping", UUID=gone)
    assert env.call("get_event_source_mapping", UUID=uuid)["State"] == "Creating"
    env.esm.start()
    assert env.call("get_event_source_mapping", UUID=uuid)["State"] == "Enabled"
    assert [m["UUID"] for m in env.call("list_event_source_mappings")["EventSourceMappings"]] == [uuid]
    env.send("q", "after-restart")
    wait_for(lambda: env.caller.bodies() == ["after-restart"], what="delivery")


def test_migration_0005_builds_the_table(tmp_path):
    path = MIGRATIONS_DIR / "versions" / "0005_event_source_mappings.py"
    spec = importlib.util.spec_from_file_location("m0005", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (mod.revision, mod.down_revision) == ("0005", "0004")
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            mod.upgrade()
    only = sa.MetaData(naming_convention=metadata.naming_convention)
    esm_module.event_source_mappings.to_metadata(only)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), only) == []
    engine.dispose()


# ============================================================================ pollers

def test_drains_the_queue_with_the_sqs_event_shape(started):
    started.send("q", *[f"m{i}" for i in range(25)])
    started.queues.send_message(started.ctx, {
        "QueueUrl": f"{ACCOUNT}/q", "MessageBody": '{"k": 1}',
        "MessageAttributes": {"s": {"DataType": "String", "StringValue": "v"},
                              "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}})
    started.create()
    wait_for(lambda: len(started.caller.bodies()) == 26, what="26 records")
    wait_for(lambda: started.counts("q") == (0, 0), what="empty queue")
    assert sorted(started.caller.bodies()) == sorted([f"m{i}" for i in range(25)] + ['{"k": 1}'])
    assert all(len(e["Records"]) <= 10 for e in started.caller.events)
    rec = next(r for e in started.caller.events for r in e["Records"] if r["body"] == '{"k": 1}')
    assert list(rec)[:6] == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody"]
    assert rec["eventSource"] == "aws:sqs" and rec["awsRegion"] == REGION
    assert rec["eventSourceARN"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"
    assert rec["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(rec["attributes"])
    assert rec["messageAttributes"]["s"] == {"stringValue": "v", "stringListValues": [], "binaryListValues": [],
                                             "dataType": "String"}
    assert rec["messageAttributes"]["b"]["binaryValue"] == "AAE="
    assert rec["md5OfBody"] == hashlib.md5(b'{"k": 1}').hexdigest()
    assert len(rec["md5OfMessageAttributes"]) == 32


def test_report_batch_item_failures(started):
    bodies = [f"m{i}" for i in range(30)]
    fail_once = {"m3", "m14", "m25"}

    def behaviour(event):
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                    if r["body"] in fail_once and r["attributes"]["ApproximateReceiveCount"] == "1"]
        return {"batchItemFailures": failures}, None

    started.caller.behaviour = behaviour
    started.send("q", *bodies)
    started.create(FunctionResponseTypes=["ReportBatchItemFailures"])
    wait_for(lambda: len(started.caller.bodies()) == 33, what="30 + 3 redeliveries")
    wait_for(lambda: started.counts("q") == (0, 0), what="empty queue")
    time.sleep(1.5)                                     # nothing else comes back after a visibility timeout
    got = started.caller.bodies()
    assert len(got) == 33
    assert {b for b in set(got) if got.count(b) == 2} == fail_once


def test_without_report_batch_item_failures_the_response_is_ignored(started):
    started.caller.behaviour = lambda event: ({"batchItemFailures": [{"itemIdentifier": event["Records"][0]
                                                                       ["messageId"]}]}, None)
    started.send("q", "a", "b", "c")
    started.create()
    wait_for(lambda: started.counts("q") == (0, 0) and len(started.caller.bodies()) >= 3, what="drained")
    time.sleep(1.5)
    assert sorted(started.caller.bodies()) == ["a", "b", "c"]


@pytest.mark.parametrize("response", [
    b"not json", {"batchItemFailures": [{"itemIdentifier": ""}]}, {"batchItemFailures": [{"itemIdentifier": None}]},
    {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}, {"batchItemFailures": [{"id": "x"}]},
    {"batchItemFailures": "x"},
])
def test_invalid_partial_response_fails_the_whole_batch(started, response):
    calls = []

    def behaviour(event):
        calls.append(len(event["Records"]))
        return (response if len(calls) == 1 else None), None

    started.caller.behaviour = behaviour
    started.send("q", "a", "b")
    started.create(FunctionResponseTypes=["ReportBatchItemFailures"])
    wait_for(lambda: started.counts("q") == (0, 0) and sum(calls) >= 4, what="redelivery after failure")
    assert sorted(started.caller.bodies()) == ["a", "a", "b", "b"]


def test_failed_item_ids_rules():
    ids = {"a", "b"}
    for ok in (b"", b"null", b"{}", b'""', b'{"batchItemFailures": []}', b'{"batchItemFailures": null}',
               b'{"other": 1}'):
        assert failed_item_ids(ok, ids) == set(), ok
    assert failed_item_ids(b'{"batchItemFailures": [{"itemIdentifier": "a"}]}', ids) == {"a"}
    for bad in (b"[", b"[1]", b"5", b'{"batchItemFailures": [{"itemIdentifier": "c"}]}',
                b'{"batchItemFailures": [{"itemIdentifier": 1}]}', b'{"batchItemFailures": ["a"]}'):
        assert failed_item_ids(bad, ids) is None, bad


def test_function_error_returns_the_batch_and_redrive_moves_it(started):
    dlq = started.queue("dlq")
    started.queues.set_queue_attributes(started.ctx, {"QueueUrl": f"{ACCOUNT}/q", "Attributes": {
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq, "maxReceiveCount": 2})}})
    started.caller.behaviour = lambda event: ({"errorMessage": "boom"}, "Unhandled")
    started.send("q", "poison")
    started.create()
    wait_for(lambda: started.counts("dlq")[0] == 1, what="message in the DLQ")
    assert started.caller.bodies() == ["poison", "poison"]
    assert started.counts("q") == (0, 0)


def test_filtered_records_are_deleted_without_invoking(started):
    started.send("q", '{"kind": "keep", "n": 1}', '{"kind": "drop"}', "plain text", '{"kind": "keep", "n": 2}')
    uuid = started.create(FilterCriteria={"Filters": [{"Pattern": '{"body": {"kind": ["keep"]}}'}]})["UUID"]
    wait_for(lambda: started.counts("q") == (0, 0), what="drained")
    wait_for(lambda: started.esm.poller(uuid).stats.filtered == 2, what="2 filtered")
    assert sorted(started.caller.bodies()) == ['{"kind": "keep", "n": 1}', '{"kind": "keep", "n": 2}']


def test_batching_window_gathers_more_than_ten(started):
    started.send("q", *[f"m{i}" for i in range(35)])
    started.create(BatchSize=30, MaximumBatchingWindowInSeconds=1)
    wait_for(lambda: len(started.caller.bodies()) == 35, what="35 records")
    sizes = [len(e["Records"]) for e in started.caller.events]
    assert max(sizes) == 30 and sum(sizes) == 35


def test_window_waits_for_a_full_batch(started):
    uuid = started.create(BatchSize=5, MaximumBatchingWindowInSeconds=2)["UUID"]
    time.sleep(0.5)
    started.send("q", "a", "b")
    time.sleep(0.3)
    started.send("q", "c", "d", "e")
    wait_for(lambda: len(started.caller.bodies()) == 5, what="5 records")
    assert [len(e["Records"]) for e in started.caller.events] == [5]
    assert started.esm.poller(uuid).stats.batches == 1


@pytest.mark.slow
def test_concurrency_scales_up_to_maximum_concurrency(started):
    started.caller.delay_s = 0.3
    started.send("q", *[f"m{i}" for i in range(60)])
    started.create(BatchSize=1, ScalingConfig={"MaximumConcurrency": 3})
    wait_for(lambda: len(started.caller.bodies()) == 60, timeout=30, what="60 records")
    assert started.caller.max_running == 3


def test_default_concurrency_is_bounded(started):
    started.caller.delay_s = 0.2
    started.send("q", *[f"m{i}" for i in range(40)])
    started.create(BatchSize=1)
    wait_for(lambda: len(started.caller.bodies()) == 40, timeout=30, what="40 records")
    assert 2 <= started.caller.max_running <= 5


def test_disable_stops_and_enable_resumes(started):
    uuid = started.create()["UUID"]
    started.send("q", "one")
    wait_for(lambda: started.caller.bodies() == ["one"], what="first")
    started.call("update_event_source_mapping", UUID=uuid, Enabled=False)
    wait_for(lambda: started.call("get_event_source_mapping", UUID=uuid)["State"] == "Disabled", what="Disabled")
    started.send("q", "two")
    time.sleep(1.0)
    assert started.caller.bodies() == ["one"] and started.counts("q") == (1, 0)
    started.call("update_event_source_mapping", UUID=uuid, Enabled=True)
    wait_for(lambda: started.caller.bodies() == ["one", "two"], what="second")


def test_batch_size_update_applies_to_the_next_batch(started):
    uuid = started.create(BatchSize=2)["UUID"]
    started.send("q", "a", "b", "c")
    wait_for(lambda: len(started.caller.bodies()) == 3, what="3 records")
    assert max(len(e["Records"]) for e in started.caller.events) <= 2
    started.call("update_event_source_mapping", UUID=uuid, BatchSize=10)
    started.caller.events.clear()
    time.sleep(0.5)             # a receive already waiting when the update came still uses the old size
    started.queues.send_message_batch(started.ctx, {"QueueUrl": f"{ACCOUNT}/q", "Entries": [
        {"Id": f"x{i}", "MessageBody": f"x{i}"} for i in range(10)]})
    wait_for(lambda: len(started.caller.bodies()) == 10, what="10 records")
    assert max(len(e["Records"]) for e in started.caller.events) > 2


def test_throttled_invocations_give_messages_back(started):
    started.caller.throttle_next = 2
    started.send("q", "a")
    started.create()
    wait_for(lambda: started.caller.bodies() == ["a"], timeout=15, what="delivered after throttling")
    wait_for(lambda: started.counts("q") == (0, 0), what="deleted")


def test_missing_function_leaves_messages_alone(started):
    started.caller.missing = True
    started.send("q", "a")
    uuid = started.create()["UUID"]
    time.sleep(0.5)
    assert started.counts("q") == (1, 0)                   # never received
    assert "PROBLEM" in started.esm.poller(uuid).stats.last_problem


def test_delete_stops_polling(started):
    uuid = started.create()["UUID"]
    started.call("delete_event_source_mapping", UUID=uuid)
    wait_for(lambda: not started.call("list_event_source_mappings")["EventSourceMappings"], what="deleted")
    started.send("q", "late")
    time.sleep(0.8)
    assert started.caller.bodies() == [] and started.counts("q") == (1, 0)


def test_chunks_respect_the_payload_limit():
    records = [{"body": "x" * 1000, "messageId": str(i)} for i in range(10)]
    chunks = chunk_records(records, limit=3500)
    assert [len(c) for c, _ in chunks] == [3, 3, 3, 1]
    assert all(len(p) <= 3500 for _, p in chunks)
    assert [r["messageId"] for c, _ in chunks for r in c] == [str(i) for i in range(10)]


def test_sqs_record_shape():
    msg = SimpleNamespace(message_id="id-1", receipt="rh", body=b"Test message.", attributes={},
                          system_attributes={"SenderId": "AIDA", "SentTimestamp": "1", "ApproximateReceiveCount": "2",
                                             "ApproximateFirstReceiveTimestamp": "3"},
                          queue_arn="arn:aws:sqs:us-east-2:123456789012:my-queue")
    rec = sqs_record(msg, "us-east-2")
    assert rec == {
        "messageId": "id-1", "receiptHandle": "rh", "body": "Test message.",
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "SenderId": "AIDA",
                       "ApproximateFirstReceiveTimestamp": "3"},
        "messageAttributes": {}, "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue", "awsRegion": "us-east-2"}


def test_poller_stop_is_prompt_when_idle():
    class Empty:
        def claim(self, arn, n, vis, wait):
            time.sleep(wait)
            return []

        def visibility_timeout(self, arn):
            return 30

    caller = FakeCaller()
    spec = MappingSpec("u" * 36, ACCOUNT, REGION, "fn", None, f"arn:aws:sqs:{REGION}:{ACCOUNT}:q")
    p = MappingPoller(spec, Empty(), caller, poll_wait_s=0.2)
    p.start()
    time.sleep(0.3)
    assert p.worker_count() == 1
    p.stop()
    assert p.join(2.0)
