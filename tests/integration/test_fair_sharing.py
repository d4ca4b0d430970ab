"""Tenants cannot starve each other through the platform's shared workers (issue 21.7), measured
with two accounts against a real server: account A misbehaves, account B's latency stays low.

(a) A keeps 600 SQS long polls open (more than the API's 512 worker threads): B's ListQueues and
    GetFunction stay fast, and the server does not hold a thread per poll.
(b) A floods Event invokes of a function that sleeps 8 s (more than the 16 Event workers can run at
    once): B's Event invoke of a warm, fast function reaches its OnSuccess destination within
    seconds, not after A's backlog.
(c) Within one account, the same backlog of one function does not delay the account's other function.
(d) A holds as many synchronous Invokes in flight as its share of the API's worker threads allows (the
    server's --account-sync-invokes, lowered here from 128 to SYNC_CAP): its next one is refused with
    AWS's 429 and Reason, while B's Invoke is still served at once.
(e) A's event source mappings (three, backlogged, slow function, up to 5 batches each) run at most
    their account's share of the server's mapping batches (--esm-batches, lowered here to ESM_BATCHES:
    3 for A), and B's mapping still delivers within seconds.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from .e2e_support import WAIT, make_zip, unique
from .fair_support import LongPollFlood, pct, server_threads, timed
from .tenancy_support import LAMBDA_TRUST, client_as, destinations_role, make_role, mapping_role, second_account

IS_ROOT = os.geteuid() == 0
SYNC_CAP = 4             # synchronous Invokes one account may have in flight on this module's server
ESM_BATCHES = 4          # mapping batches in flight on this module's server, all accounts (3 for one)
APP = """
import json, time
def handler(event, context):
    for record in event.get("Records", []):          # an event source mapping's batch
        time.sleep(json.loads(record["body"]).get("sleep", 0))
    time.sleep(event.get("sleep", 0))
    return {"rid": context.aws_request_id}
"""
ZIP = make_zip({"app.py": APP})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from harness import own_server
    yield from own_server(tmp_path_factory, "--account-sync-invokes", str(SYNC_CAP), "--esm-batches", str(ESM_BATCHES),
                          *(() if IS_ROOT else ("--sandbox", "process")), prefix="lambdalet-fair")


@pytest.fixture(scope="module")
def tenant_b(srv):
    return second_account(srv)[1]


def _function(lam, role: str, **kw) -> str:
    name = unique("fair")
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                        Code={"ZipFile": ZIP}, Timeout=30, **kw)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def test_long_polls_of_one_account_do_not_slow_another(srv, tenant_b):
    url = srv.client("sqs").create_queue(QueueName=unique("longpoll"))["QueueUrl"]
    sqs_b, lam_b = client_as(srv, "sqs", tenant_b), client_as(srv, "lambda", tenant_b)
    fn = _function(lam_b, make_role(client_as(srv, "iam", tenant_b), LAMBDA_TRUST))
    calls = [sqs_b.list_queues, lambda: lam_b.get_function(FunctionName=fn)]
    quiet = [t for call in calls for t in timed(call, 10)]
    admin = {"AccessKeyId": srv.access_key, "SecretAccessKey": srv.secret_key}
    flood = LongPollFlood(srv.url, srv.region, admin, url, 600, srv.ca).start()
    try:
        time.sleep(1.0)
        threads = server_threads(srv.pid)
        loud = [t for call in calls for t in timed(call, 30)]
        still_open = flood.open
    finally:
        flood.stop()
    assert not flood.errors, flood.errors[:3]
    assert still_open >= 590, f"A's long polls were answered early ({still_open} open)"
    print(f"\nB's p50/p99 quiet {pct(quiet, 50)*1e3:.1f}/{pct(quiet, 99)*1e3:.1f} ms, with 600 long polls of A "
          f"{pct(loud, 50)*1e3:.1f}/{pct(loud, 99)*1e3:.1f} ms; server threads {threads}")
    assert pct(loud, 99) < 1.0, f"B's p99 {pct(loud, 99):.2f} s while A long polls"
    # Worker threads start on demand for the polls' bursts of attempts, but none is held per poll:
    # before, the 512 workers were all asleep in long polls (and B waited up to 20 s).
    assert threads < 500, f"{threads} server threads: a thread per long poll?"


def _event_delay_probe(lam, sqs, iam):
    """A warm, fast function with an OnSuccess queue; -> delay(): seconds from its Event invoke to the
    destination record."""
    fast = _function(lam, destinations_role(iam))
    url = sqs.create_queue(QueueName=unique("done"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.put_function_event_invoke_config(FunctionName=fast, DestinationConfig={"OnSuccess": {"Destination": arn}})
    lam.invoke(FunctionName=fast, Payload=b"{}")              # warm: the delay is the queueing, not a cold start

    def delay() -> float:
        t0 = time.monotonic()
        lam.invoke(FunctionName=fast, InvocationType="Event", Payload=b"{}")
        while time.monotonic() - t0 < 60:
            got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            if got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
                return time.monotonic() - t0
        return float("inf")
    return delay


def _slow_backlog(lam, slow: str, n: int = 100) -> None:
    body = json.dumps({"sleep": 8}).encode()
    with ThreadPoolExecutor(8) as pool:                        # 100 x 8 s: 50 s of backlog at 16 workers
        list(pool.map(lambda _: lam.invoke(FunctionName=slow, InvocationType="Event", Payload=body), range(n)))
    time.sleep(3)                                              # the first wave is running, the rest buffered


def test_event_backlog_of_one_account_does_not_delay_another(srv, tenant_b):
    lam_a = srv.client()
    slow = _function(lam_a, make_role(srv.client("iam"), LAMBDA_TRUST))
    lam_b = client_as(srv, "lambda", tenant_b)
    delay = _event_delay_probe(lam_b, client_as(srv, "sqs", tenant_b), client_as(srv, "iam", tenant_b))
    quiet = delay()
    _slow_backlog(lam_a, slow)
    loud = [delay() for _ in range(3)]
    print(f"\nB's Event delay quiet {quiet:.2f} s, behind A's backlog {[round(x, 2) for x in loud]} s")
    lam_a.put_function_concurrency(FunctionName=slow, ReservedConcurrentExecutions=0)   # drop A's backlog
    assert max(loud) < 3.0, f"B's Event invokes waited {loud} s behind A's backlog (A's invocations take 8 s)"


def test_event_backlog_of_one_function_does_not_delay_its_accounts_other_function(srv, tenant_b):
    lam = client_as(srv, "lambda", tenant_b)
    iam = client_as(srv, "iam", tenant_b)
    slow = _function(lam, make_role(iam, LAMBDA_TRUST))
    delay = _event_delay_probe(lam, client_as(srv, "sqs", tenant_b), iam)
    quiet = delay()
    _slow_backlog(lam, slow)
    loud = [delay() for _ in range(3)]
    print(f"\nthe other function's Event delay quiet {quiet:.2f} s, behind its account's backlog "
          f"{[round(x, 2) for x in loud]} s")
    lam.put_function_concurrency(FunctionName=slow, ReservedConcurrentExecutions=0)     # drop the backlog
    assert max(loud) < 3.0, f"Event invokes waited {loud} s behind another function's backlog (8 s each)"


def test_sync_invokes_of_one_account_past_its_share_are_refused_while_another_is_served(srv, tenant_b):
    lam_a = srv.client()
    slow = _function(lam_a, make_role(srv.client("iam"), LAMBDA_TRUST))
    lam_b = client_as(srv, "lambda", tenant_b)
    fast = _function(lam_b, make_role(client_as(srv, "iam", tenant_b), LAMBDA_TRUST))
    lam_b.invoke(FunctionName=fast, Payload=b"{}")            # warm: B's time is the API's, not a cold start
    body = json.dumps({"sleep": 6}).encode()
    with ThreadPoolExecutor(SYNC_CAP) as pool:
        held = [pool.submit(lam_a.invoke, FunctionName=slow, Payload=body) for _ in range(SYNC_CAP)]
        time.sleep(3)                                          # A's calls hold their threads (cold starts done)
        assert not any(f.done() for f in held), "A's slow invocations ended early"
        with pytest.raises(ClientError) as refused:
            lam_a.invoke(FunctionName=slow, Payload=b"{}")
        t0 = time.monotonic()
        served = lam_b.invoke(FunctionName=fast, Payload=b"{}")
        b_took = time.monotonic() - t0
        assert all(f.result()["StatusCode"] == 200 and "FunctionError" not in f.result() for f in held)
    err = refused.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert err["Error"]["Code"] == "TooManyRequestsException"
    assert err.get("Reason") == "ConcurrentInvocationLimitExceeded", err
    assert served["StatusCode"] == 200 and "FunctionError" not in served
    assert b_took < 1.0, f"B's Invoke took {b_took:.2f} s while A held its share"
    assert lam_a.invoke(FunctionName=slow, Payload=b"{}")["StatusCode"] == 200, "A's share is given back"


def _streamed(lam, **kw) -> bytes:
    resp = lam.invoke_with_response_stream(**kw)
    return b"".join(e["PayloadChunk"]["Payload"] for e in resp["EventStream"] if "PayloadChunk" in e)


def test_streamed_invocations_count_in_the_accounts_share_of_long_held_calls(srv, tenant_b):
    """A streamed invocation runs in a thread of its own: it counts in the same per-account share as a
    synchronous Invoke's API thread, so one account cannot start threads without bound."""
    lam_a = srv.client()
    slow = _function(lam_a, make_role(srv.client("iam"), LAMBDA_TRUST))
    lam_b = client_as(srv, "lambda", tenant_b)
    fast = _function(lam_b, make_role(client_as(srv, "iam", tenant_b), LAMBDA_TRUST))
    _streamed(lam_b, FunctionName=fast, Payload=b"{}")          # warm
    body = json.dumps({"sleep": 6}).encode()
    with ThreadPoolExecutor(SYNC_CAP) as pool:
        held = [pool.submit(_streamed, lam_a, FunctionName=slow, Payload=body) for _ in range(SYNC_CAP)]
        time.sleep(3)
        assert not any(f.done() for f in held), "A's slow streamed invocations ended early"
        refusals = []
        for call in (lambda: _streamed(lam_a, FunctionName=slow, Payload=b"{}"),
                     lambda: lam_a.invoke(FunctionName=slow, Payload=b"{}")):
            with pytest.raises(ClientError) as refused:
                call()
            refusals.append(refused.value.response)
        t0 = time.monotonic()
        served = _streamed(lam_b, FunctionName=fast, Payload=b"{}")
        b_took = time.monotonic() - t0
        assert all(f.result() for f in held)
    for err in refusals:
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 429, err
        assert err["Error"]["Code"] == "TooManyRequestsException"
        assert err.get("Reason") == "ConcurrentInvocationLimitExceeded", err
    assert served and b_took < 1.0, f"B's streamed Invoke took {b_took:.2f} s while A held its share"
    assert _streamed(lam_a, FunctionName=slow, Payload=b"{}"), "A's share is given back"


def _mapped_queue(lam, sqs, fn: str, **kw) -> str:
    url = sqs.create_queue(QueueName=unique("src"), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1, **kw)["UUID"]
    return url, uuid


def _in_flight(sqs, urls) -> int:
    return sum(int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
                   ["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) for u in urls)


def _until_drained(sqs, url: str, timeout_s: float = 60) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if not any(int(v) for v in attrs.values()):
            return time.monotonic() - t0
        time.sleep(0.05)
    return float("inf")


def test_event_source_mappings_of_one_account_run_within_its_share(srv, tenant_b):
    lam_a, sqs_a = srv.client(), srv.client("sqs")
    slow = _function(lam_a, mapping_role(srv.client("iam")))
    lam_b, sqs_b = client_as(srv, "lambda", tenant_b), client_as(srv, "sqs", tenant_b)
    fast = _function(lam_b, mapping_role(client_as(srv, "iam", tenant_b)))
    url_b, uuid_b = _mapped_queue(lam_b, sqs_b, fast)
    sqs_b.send_message(QueueUrl=url_b, MessageBody="{}")
    assert _until_drained(sqs_b, url_b) < 30                      # B's environment is warm now
    sqs_b.send_message(QueueUrl=url_b, MessageBody="{}")
    quiet = _until_drained(sqs_b, url_b)
    mapped = [_mapped_queue(lam_a, sqs_a, slow, ScalingConfig={"MaximumConcurrency": 5}) for _ in range(3)]
    urls_a = [u for u, _ in mapped]
    try:
        for url in urls_a:                                        # 3 x 8 records of 3 s: each mapping scales out
            sqs_a.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"sleep": 3})} for i in range(8)])
        peak, loud = 0, []
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            peak = max(peak, _in_flight(sqs_a, urls_a))
            if len(loud) < 3 and time.monotonic() > deadline - 9:
                sqs_b.send_message(QueueUrl=url_b, MessageBody="{}")
                loud.append(_until_drained(sqs_b, url_b))
            time.sleep(0.1)
        print(f"\nA's mapping batches in flight at most {peak} (share {ESM_BATCHES - 1}); B's delivery quiet "
              f"{quiet:.2f} s, beside A's {[round(x, 2) for x in loud]} s")
        assert peak <= ESM_BATCHES - 1, f"A ran {peak} mapping batches at once, past its share"
        assert max(loud) < 5.0, f"B's mapping delivered after {loud} s beside A's"
    finally:
        for _, uuid in mapped + [(url_b, uuid_b)]:
            (lam_b if uuid == uuid_b else lam_a).delete_event_source_mapping(UUID=uuid)
