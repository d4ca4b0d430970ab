"""What one environment may have buffered on the host through the API relay (issue 21.9): request
bodies in flight and responses being collected share a per-environment budget (runtime/api_proxy.py
MAX_HELD_BYTES); past it a request is refused (429, retryable) and a response dropped (502), and every
byte is given back once the answer is sent, whatever happened."""
from __future__ import annotations

import asyncio
import threading

import pytest

from lambdalet.runtime import api_proxy

MB = 1024 * 1024


def _relay(forwarder, limit=12 * MB):
    sent, threads = [], []
    relay = api_proxy.HostRelay(lambda k, h, b: sent.append((h, b)), forwarder, max_held_bytes=limit,
                                spawn=lambda fn: threads.append(fn))
    return relay, sent, threads


def _req(rid):
    return {"id": rid, "method": "POST", "target": "/2015-03-31/functions/f/invocations", "headers": []}


def test_request_bodies_in_flight_are_bounded_per_environment():
    relay, sent, threads = _relay(lambda *a: (200, [], b"ok"))
    relay.handle(_req(1), b"x" * (6 * MB))
    relay.handle(_req(2), b"x" * (5 * MB))
    assert len(threads) == 2 and relay.held.held == 11 * MB
    relay.handle(_req(3), b"x" * (2 * MB))              # 13 MiB would be held: refused, retryable
    assert sent[-1][0]["status"] == 429 and len(threads) == 2
    relay.handle(_req(4), b"x" * MB)                    # fits beside them
    assert len(threads) == 3
    other, _, other_threads = _relay(lambda *a: (200, [], b""))   # another environment has its own budget
    other.handle(_req(1), b"x" * (6 * MB))
    assert len(other_threads) == 1
    for fn in threads:
        fn()
    assert relay.held.held == 0 and [h["status"] for h, _ in sent[-3:]] == [200, 200, 200]


def test_a_request_larger_than_the_budget_is_413():
    relay, sent, threads = _relay(lambda *a: (200, [], b""), limit=MB)
    relay.handle(_req(1), b"x" * (MB + 1))
    assert sent[-1][0]["status"] == 413 and not threads


def test_bytes_are_given_back_when_the_forwarder_fails_or_the_environment_is_gone():
    relay, _, threads = _relay(lambda *a: 1 / 0)
    relay.handle(_req(1), b"x" * MB)
    threads[0]()
    assert relay.held.held == 0

    def gone(*a):
        raise OSError("environment is gone")
    relay = api_proxy.HostRelay(gone, lambda *a: (200, [], b"y" * MB), spawn=lambda fn: fn())
    relay.handle(_req(1), b"x" * MB)
    assert relay.held.held == 0


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.close()


def _in_process(loop, body_size: int, chunks: int = 4):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(chunks):
            await send({"type": "http.response.body", "body": b"r" * (body_size // chunks),
                        "more_body": i < chunks - 1})
    fwd = api_proxy.InProcessApi(app)
    asyncio.run_coroutine_threadsafe(fwd.wrap(app)({"type": "lifespan"}, None, None), loop).result(5)
    return fwd


def test_responses_are_charged_as_they_are_collected(loop):
    fwd = _in_process(loop, 4 * MB)
    relay, sent, threads = _relay(fwd, limit=12 * MB)
    relay.handle(_req(1), b"x" * (6 * MB))
    relay.handle(_req(2), b"x" * MB)
    threads[1]()                                         # 6 + 1 + 4 MiB fit
    assert sent[-1][0]["status"] == 200 and len(sent[-1][1]) == 4 * MB
    assert relay.held.held == 6 * MB
    big = _in_process(loop, 7 * MB)                      # 6 + 7 MiB do not: dropped, 502
    relay.forwarder = big
    relay.handle(_req(3), b"")
    threads[2]()
    assert sent[-1][0]["status"] == 502 and relay.held.held == 6 * MB
    threads[0]()
    assert relay.held.held == 0


def test_a_released_charge_takes_nothing_more():
    held = api_proxy.HeldBytes(10)
    charge = api_proxy.Charge(held)
    assert charge.take(4) and held.held == 4
    charge.release()
    assert held.held == 0 and not charge.take(1) and held.held == 0
