"""Noisy neighbour (issue 21.7): the victim account's latency with and without another account's load,
measured in the same run against one real server (TLS, SigV4, boto3).

    sudo .venv/bin/python bench/noisy_neighbour.py [--long-polls 600] [--events 100] [--sleep 8] [--calls 40]

1. API: the victim's ListQueues and GetFunction (p50/p99 over --calls each), quiet, then while the
   noisy account keeps --long-polls SQS long polls (WaitTimeSeconds=20) open (one event loop of raw
   TLS connections, tests/integration/fair_support.py); the server's thread count too.
2. Event path: the delay from the victim's Event invoke of a warm no-op function to its OnSuccess
   record in an SQS queue (p50/p99 over --samples), quiet, then while the noisy account's --events
   Event invokes of a function sleeping --sleep s are queued and running.
3. Event source mappings: the delay from a message sent to the victim's mapped queue to its deletion
   (the victim's warm no-op function ran), quiet, then while the noisy account's --mappings mappings
   (MaximumConcurrency 5, each queue holding 20 records sleeping --sleep s) run; and the noisy
   account's batches in flight at most (its share of --esm-batches, 48 by default).
Bounded: about 2-3 minutes. Sandbox: namespace as root, else the `process` backend.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from conftest import LambdaletServer  # noqa: E402  (the test harness's server: subprocess, own data dir)
from tests.integration.e2e_support import WAIT, make_zip  # noqa: E402
from tests.integration.fair_support import LongPollFlood, pct, server_threads, timed  # noqa: E402
from tests.integration.tenancy_support import (LAMBDA_TRUST, client_as, destinations_role, make_role,  # noqa: E402
                                               mapping_role, second_account)

APP = ("import json, time\ndef handler(event, context):\n"
       "    for r in event.get('Records', []):\n        time.sleep(json.loads(r['body']).get('sleep', 0))\n"
       "    time.sleep(event.get('sleep', 0))\n    return None\n")


def ms(xs: list[float]) -> str:
    return f"p50 {pct(xs, 50) * 1e3:8.1f} ms   p99 {pct(xs, 99) * 1e3:8.1f} ms   (n={len(xs)})"


def function(lam, role: str, name: str) -> str:
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=role,
                        Code={"ZipFile": make_zip({"app.py": APP})}, Timeout=60)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--long-polls", type=int, default=600)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--sleep", type=float, default=8.0)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--mappings", type=int, default=12)
    args = ap.parse_args()
    extra = () if os.geteuid() == 0 else ("--sandbox", "process")
    srv = LambdaletServer(Path(tempfile.mkdtemp(prefix="noisy-")) / "data", extra).start()
    try:
        victim = second_account(srv, "victim")[1]
        lam_v, sqs_v = client_as(srv, "lambda", victim), client_as(srv, "sqs", victim)
        fast = function(lam_v, destinations_role(client_as(srv, "iam", victim)), "victim-fast")
        lam_n = srv.client()
        slow = function(lam_n, make_role(srv.client("iam"), LAMBDA_TRUST), "noisy-slow")
        calls = {"ListQueues": sqs_v.list_queues, "GetFunction": lambda: lam_v.get_function(FunctionName=fast)}

        print(f"victim API calls ({args.calls} each), noisy account holding {args.long_polls} long polls")
        url = srv.client("sqs").create_queue(QueueName="noisy-longpoll")["QueueUrl"]
        quiet = {k: timed(c, args.calls) for k, c in calls.items()}
        admin = {"AccessKeyId": srv.access_key, "SecretAccessKey": srv.secret_key}
        flood = LongPollFlood(srv.url, srv.region, admin, url, args.long_polls, srv.ca).start()
        try:
            time.sleep(1.0)
            loud = {k: timed(c, args.calls) for k, c in calls.items()}
            threads, still = server_threads(srv.pid), flood.open
        finally:
            flood.stop()
        for k in calls:
            print(f"  {k:12s} quiet  {ms(quiet[k])}")
            print(f"  {k:12s} noisy  {ms(loud[k])}")
        print(f"  long polls open while measuring: {still}; server threads: {threads}")

        dest = sqs_v.create_queue(QueueName="victim-done")["QueueUrl"]
        arn = sqs_v.get_queue_attributes(QueueUrl=dest, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        lam_v.put_function_event_invoke_config(FunctionName=fast, DestinationConfig={"OnSuccess": {"Destination": arn}})
        lam_v.invoke(FunctionName=fast, Payload=b"{}")

        def delay() -> float:
            t0 = time.monotonic()
            lam_v.invoke(FunctionName=fast, InvocationType="Event", Payload=b"{}")
            while time.monotonic() - t0 < 60:
                got = sqs_v.receive_message(QueueUrl=dest, WaitTimeSeconds=1).get("Messages", [])
                if got:
                    sqs_v.delete_message(QueueUrl=dest, ReceiptHandle=got[0]["ReceiptHandle"])
                    return time.monotonic() - t0
            return 60.0

        print(f"victim Event invoke -> OnSuccess record ({args.samples} samples), noisy account: "
              f"{args.events} Event invokes sleeping {args.sleep:g} s")
        quiet_e = [delay() for _ in range(args.samples)]
        body = json.dumps({"sleep": args.sleep}).encode()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: lam_n.invoke(FunctionName=slow, InvocationType="Event", Payload=body),
                          range(args.events)))
        time.sleep(min(3.0, args.sleep / 2))
        loud_e = [delay() for _ in range(args.samples)]
        print(f"  Event delay  quiet  {ms(quiet_e)}")
        print(f"  Event delay  noisy  {ms(loud_e)}")
        lam_n.put_function_concurrency(FunctionName=slow, ReservedConcurrentExecutions=0)
        mappings(srv, lam_v, sqs_v, lam_n, victim, args)
    finally:
        srv.stop()
        if srv.leaked:
            print("server teardown:", srv.leaked)


def mapped_queue(lam, sqs, fn: str, name: str, **kw) -> str:
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=1, **kw)
    return url


def drained(sqs, url: str, timeout_s: float = 60) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if not any(int(v) for v in attrs.values()):
            return time.monotonic() - t0
        time.sleep(0.02)
    return timeout_s


def mappings(srv, lam_v, sqs_v, lam_n, victim: dict, args) -> None:
    sqs_n = srv.client("sqs")
    fn_v = function(lam_v, mapping_role(client_as(srv, "iam", victim)), "victim-mapped")
    fn_n = function(lam_n, mapping_role(srv.client("iam")), "noisy-mapped")
    url_v = mapped_queue(lam_v, sqs_v, fn_v, "victim-src")

    def delay() -> float:
        sqs_v.send_message(QueueUrl=url_v, MessageBody="{}")
        return drained(sqs_v, url_v)

    delay()                                           # the victim's environment is warm from here on
    print(f"victim mapping: send -> deleted ({args.samples} samples), noisy account: {args.mappings} mappings "
          f"x 20 records sleeping {args.sleep:g} s")
    quiet = [delay() for _ in range(args.samples)]
    urls = [mapped_queue(lam_n, sqs_n, fn_n, f"noisy-src-{i}", ScalingConfig={"MaximumConcurrency": 5})
            for i in range(args.mappings)]
    body = json.dumps({"sleep": args.sleep})
    for url in urls:
        for _ in range(2):
            sqs_n.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": body} for j in range(10)])
    time.sleep(min(3.0, args.sleep / 2))
    peak, loud = 0, []
    for _ in range(args.samples):
        peak = max(peak, sum(int(sqs_n.get_queue_attributes(QueueUrl=u, AttributeNames=[
            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]["ApproximateNumberOfMessagesNotVisible"])
            for u in urls))
        loud.append(delay())
    print(f"  mapping delay quiet  {ms(quiet)}")
    print(f"  mapping delay noisy  {ms(loud)}")
    print(f"  noisy account's mapping batches in flight: at most {peak} seen; server threads: {server_threads(srv.pid)}")
    lam_n.put_function_concurrency(FunctionName=fn_n, ReservedConcurrentExecutions=0)


if __name__ == "__main__":
    main()
