"""Execution roles in process: Role checks (PassRole + trust), role sessions for environments
(sharing, expiry, refresh by replacement), and the API path's two ends (runtime/api_proxy.py)."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
import uuid

import pytest

from lambdalet.iam.authz import Authorizer
from lambdalet.invoke.credentials import (CANNOT_ASSUME, DEFAULT_ROLE_NAME, LAMBDA_TRUST_POLICY, ExecutionRoles,
                                          ensure_default_role)
from lambdalet.invoke.invoker import Invoker, Target
from lambdalet.invoke.pool import EnvironmentPool
from lambdalet.models.context import RequestContext
from lambdalet.models.errors import AccessDeniedException, InvalidParameterValueException
from lambdalet.runtime import api_proxy, bridge

from .iam_support import in_memory_iam

ACCOUNT = "000000000000"
FN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env():
    db, identity, admin, directory = in_memory_iam()
    clock = Clock(time.time())

    class Env:
        pass
    e = Env()
    e.db, e.identity, e.directory, e.clock = db, identity, directory, clock
    e.authorizer = Authorizer(directory)
    e.roles = ExecutionRoles(directory, identity, e.authorizer, clock=clock)

    def ctx(key_id, token=None):
        caller, _ = identity.lookup(key_id, token)
        return RequestContext(caller, "us-east-1", str(uuid.uuid4()), "https://localhost")
    e.ctx = ctx
    e.admin = ctx(admin.access_key_id)
    yield e
    db.close()


def _role(env, name: str, trust: str = LAMBDA_TRUST_POLICY) -> str:
    return env.directory.create_role(ACCOUNT, name, trust)["Arn"]


# ---------------------------------------------------------------- control plane


def test_default_role_is_created_once_with_basic_execution_only(env):
    assert ensure_default_role(env.directory) is True
    assert ensure_default_role(env.directory) is False
    assert [p["PolicyName"] for p in env.directory.list_attached(ACCOUNT, "role", DEFAULT_ROLE_NAME)] == [
        "AWSLambdaBasicExecutionRole"]
    env.roles.check(env.admin, FN, f"arn:aws:iam::{ACCOUNT}:role/{DEFAULT_ROLE_NAME}")


def test_missing_untrusted_and_foreign_roles_are_refused(env):
    ec2 = _role(env, "ec2", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    for arn in (f"arn:aws:iam::{ACCOUNT}:role/missing", ec2, f"arn:aws:iam::{ACCOUNT}:role/wrong/path/ec2"):
        with pytest.raises(InvalidParameterValueException) as e:
            env.roles.check(env.admin, FN, arn)
        assert e.value.message == CANNOT_ASSUME
    with pytest.raises(AccessDeniedException):       # another account's role cannot be passed at all
        env.roles.check(env.admin, FN, "arn:aws:iam::123456789012:role/x")


def test_trust_conditions_and_configured_principals(env):
    arn = _role(env, "cond", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole",
         "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]}))
    env.roles.check(env.admin, FN, arn)
    other = _role(env, "other", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.example.internal"}, "Action": "sts:AssumeRole"}]}))
    with pytest.raises(InvalidParameterValueException):
        env.roles.check(env.admin, FN, other)
    ExecutionRoles(env.directory, env.identity, env.authorizer,
                   principals=("lambda.example.internal",)).check(env.admin, FN, other)


def test_pass_role_is_required_and_allow_unknown_only_skips_the_trust_check(env):
    arn = _role(env, "r")
    env.directory.create_user(ACCOUNT, "dev")
    env.directory.put_inline(ACCOUNT, "user", "dev", "p", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}))
    user = env.directory.get_user(ACCOUNT, "dev")
    with env.directory.transaction() as conn:
        key_id, _, _ = env.identity.create_user_key(conn, ACCOUNT, user["Arn"], user["UserId"])
    dev = env.ctx(key_id)
    with pytest.raises(AccessDeniedException, match="iam:PassRole"):
        env.roles.check(dev, FN, arn)
    lax = ExecutionRoles(env.directory, env.identity, env.authorizer, allow_unknown=True)
    lax.check(env.admin, FN, f"arn:aws:iam::{ACCOUNT}:role/nope")       # accepted with a warning
    with pytest.raises(AccessDeniedException):
        lax.check(dev, FN, f"arn:aws:iam::{ACCOUNT}:role/nope")
    env.directory.attach(ACCOUNT, "user", "dev", "arn:aws:iam::aws:policy/AWSLambda_FullAccess")
    env.directory.invalidate()
    env.roles.check(dev, FN, arn)


# ---------------------------------------------------------------- data plane


def test_sessions_are_named_after_the_function_shared_and_renewed(env):
    arn = _role(env, "exec")
    a = env.roles.for_environment(ACCOUNT, "f", FN, arn)
    assert a.session_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/exec/f"
    assert set(a.env()) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert a.secret_access_key not in repr(a) and a.session_token not in repr(a)
    caller, secret = env.identity.lookup(a.access_key_id, a.session_token)
    assert (caller.principal_arn, secret) == (a.session_arn, a.secret_access_key)
    assert env.identity.lookup(a.access_key_id, None) is None          # the token is required
    env.clock.t += 60
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is a        # a burst of cold starts: one session
    env.clock.t += env.roles.ttl_s / 2
    b = env.roles.for_environment(ACCOUNT, "f", FN, arn)
    assert b.access_key_id != a.access_key_id and b.expires_at > a.expires_at


def test_freshness_leaves_room_for_the_invocation(env):
    now = env.clock()
    assert env.roles.fresh(now + 3600, 900)
    assert not env.roles.fresh(now + 900 + env.roles.refresh_margin_s, 900)
    assert env.roles.fresh(now + 700, 3) and not env.roles.fresh(now + 250, 3)


def test_unassumable_role_gives_no_credentials(env):
    assert env.roles.for_environment(ACCOUNT, "f", FN, f"arn:aws:iam::{ACCOUNT}:role/gone") is None
    arn = _role(env, "later-untrusted")
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is not None
    env.directory.update_trust_policy(ACCOUNT, "later-untrusted", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    env.clock.t += env.roles.ttl_s          # the cached session is too old: a new one is refused
    assert env.roles.for_environment(ACCOUNT, "f", FN, arn) is None


class _FakeSandbox:
    def __init__(self, spec):
        self.spec, self.alive, self.invocations = spec, True, 0

    def start(self):
        pass

    def invoke(self, req):
        from lambdalet.sandbox.api import InvokeResult
        self.invocations += 1
        return InvokeResult(payload=json.dumps(self.spec.env.get("AWS_ACCESS_KEY_ID")).encode())

    def freeze(self):
        pass

    def thaw(self):
        pass

    def destroy(self):
        self.alive = False


class _FakeBackend:
    def __init__(self):
        self.created = []

    def create(self, spec, log_sink=None):
        self.created.append(_FakeSandbox(spec))
        return self.created[-1]

    def close(self):
        pass


class _FakeCode:
    def path_for(self, sha, *args, **kw):
        return "/nonexistent"

    def clear(self):
        pass


def test_invoker_replaces_an_environment_before_its_credentials_expire(env):
    from lambdalet.invoke.concurrency import ConcurrencyLimiter
    arn = _role(env, "inv")
    target = Target(ACCOUNT, "f", FN, "$LATEST", "python3.11", "app.handler", 128, 30, 512, {"MINE": "1"}, "00",
                    "rev", None, 0, role=arn)
    backend = _FakeBackend()
    pool = EnvironmentPool(3600, 7200, reap_interval_s=3600)
    invoker = Invoker(lambda *a: target, backend, _FakeCode(), pool, ConcurrencyLimiter(10), "us-east-1")
    invoker.credentials = env.roles
    ctx = env.admin
    try:
        first = json.loads(invoker.run(ctx, target, b"{}").payload)
        assert first.startswith("LSIA") and backend.created[0].spec.env["MINE"] == "1"
        assert json.loads(invoker.run(ctx, target, b"{}").payload) == first and len(backend.created) == 1
        env.clock.t += env.roles.ttl_s - 30 - env.roles.refresh_margin_s   # too close to expiry for a 30 s run
        second = json.loads(invoker.run(ctx, target, b"{}").payload)
        assert len(backend.created) == 2 and not backend.created[0].alive and second != first
    finally:
        pool.close()


# ---------------------------------------------------------------- the API path


def _relay(forwarder, **kw):
    sent, threads = [], []
    relay = api_proxy.HostRelay(lambda k, h, b: sent.append((k, h, b)), forwarder,
                                spawn=lambda fn: threads.append(fn), **kw)
    return relay, sent, threads


def _req(rid=1, **kw):
    hdr = {"id": rid, "method": "POST", "target": "/2015-03-31/functions/x/invocations",
           "headers": [["Host", "127.0.0.1:9002"]]}
    hdr.update(kw)
    return hdr


def test_relay_forwards_unchanged_and_answers_by_frame():
    seen = []
    relay, sent, threads = _relay(lambda *a: (seen.append(a), (200, [["X", "1"]], b"ok"))[1])
    relay.handle(_req(7), b"{}")
    assert not sent and len(threads) == 1          # off the bridge-reading thread
    threads[0]()
    assert seen == [("POST", "/2015-03-31/functions/x/invocations", [["Host", "127.0.0.1:9002"]], b"{}")]
    assert sent == [(bridge.API_RESPONSE, {"id": 7, "status": 200, "headers": [["X", "1"]]}, b"ok")]


@pytest.mark.parametrize("bad", [{"method": "CONNECT"}, {"target": "http://169.254.169.254/"}, {"headers": "x"},
                                 {"headers": [["a"]]}, {"target": "/" + "a" * 20000}])
def test_relay_refuses_malformed_requests(bad):
    relay, sent, threads = _relay(lambda *a: pytest.fail("forwarded"))
    relay.handle(_req(**bad), b"")
    assert sent[0][1]["status"] == 400 and not threads
    relay.handle({"id": "x"}, b"")                # no id to answer: dropped
    assert len(sent) == 1


def test_relay_bounds_size_concurrency_and_rate():
    clock = Clock(0.0)
    relay, sent, threads = _relay(lambda *a: (200, [], b""), rate_per_s=10, burst=3, max_in_flight=2, clock=clock)
    relay.handle(_req(1), b"x" * (api_proxy.MAX_REQUEST_BODY + 1))
    assert sent[-1][1]["status"] == 413
    relay.handle(_req(2), b"")
    relay.handle(_req(3), b"")
    relay.handle(_req(4), b"")                     # two in flight already
    assert sent[-1][1]["status"] == 429 and len(threads) == 2
    for fn in threads:
        fn()
    relay.handle(_req(5), b"")                     # burst of 3 used up (2 forwarded + this one)
    assert len(threads) == 3
    relay.handle(_req(6), b"")
    assert sent[-1][1]["status"] == 429 and dict(sent[-1][1]["headers"])["x-amzn-ErrorType"] == "TooManyRequestsException"
    clock.t += 1.0                                 # 10 tokens later
    relay.handle(_req(7), b"")
    assert len(threads) == 4


def test_relay_without_a_forwarder_and_oversized_responses():
    relay, sent, _ = _relay(None)
    relay.handle(_req(1), b"")
    assert sent[-1][1]["status"] == 503
    relay, sent, threads = _relay(lambda *a: (200, [], b"x" * (api_proxy.MAX_RESPONSE_BODY + 1)))
    relay.handle(_req(2), b"")
    threads[0]()
    assert sent[-1][1]["status"] == 502


def test_init_proxy_round_trip_over_a_bridge():
    """init's HTTP proxy -> API_REQUEST frame -> (a fake host) -> API_RESPONSE -> HTTP answer."""
    init_end, host_end = socket.socketpair()
    lock = threading.Lock()

    def send(kind, header=None, body=b""):
        with lock:
            bridge.send(init_end, kind, header, body)
    proxy = api_proxy.ApiProxy(send)
    url = proxy.start("127.0.0.1", 0)

    def host():
        reader = bridge.FrameReader()
        relay = api_proxy.HostRelay(lambda k, h, b: bridge.send(host_end, k, h, b),
                                    lambda m, t, h, b: (201, [["Content-Type", "text/plain"]],
                                                        f"{m} {t} {dict(h).get('X-Test')} {b.decode()}".encode()))
        while True:
            try:
                kind, hdr, body = bridge.recv_blocking(host_end, reader)
            except (bridge.BridgeClosed, OSError):
                return
            assert kind == bridge.API_REQUEST
            relay.handle(hdr, body)

    def init_loop():
        reader = bridge.FrameReader()
        while True:
            try:
                kind, hdr, body = bridge.recv_blocking(init_end, reader)
            except (bridge.BridgeClosed, OSError):
                return
            if kind == bridge.API_RESPONSE:
                proxy.deliver(hdr, body)

    threading.Thread(target=host, daemon=True).start()
    threading.Thread(target=init_loop, daemon=True).start()
    try:
        req = urllib.request.Request(url + "/a/b?c=d", data=b"payload", headers={"X-Test": "yes"}, method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201 and resp.read() == b"PUT /a/b?c=d yes payload"
    finally:
        proxy.server.server_close()     # (serve_forever polls hourly: no shutdown() wait)
        host_end.close()
        init_end.close()


def test_in_process_api_runs_the_asgi_app_on_the_server_loop():
    import asyncio
    seen = {}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        seen.update(scope=scope, body=(await receive())["body"], thread=threading.get_ident())
        await send({"type": "http.response.start", "status": 403, "headers": [(b"x-amzn-errortype", b"AccessDenied")]})
        await send({"type": "http.response.body", "body": b"no"})

    fwd = api_proxy.InProcessApi(app)
    assert fwd("GET", "/", [], b"")[0] == 503                  # no loop yet
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        asyncio.run_coroutine_threadsafe(fwd.wrap(app)({"type": "lifespan"}, None, None), loop).result(5)
        status, headers, body = fwd("POST", "/2015-03-31/functions/f%3A1/invocations?x=1",
                                    [["Host", "127.0.0.1:9002"], ["Authorization", "sig"]], b"{}")
        assert (status, headers, body) == (403, [["x-amzn-errortype", "AccessDenied"]], b"no")
        s = seen["scope"]
        assert (s["method"], s["path"], s["raw_path"], s["query_string"]) == (
            "POST", "/2015-03-31/functions/f:1/invocations", b"/2015-03-31/functions/f%3A1/invocations", b"x=1")
        assert (b"authorization", b"sig") in s["headers"] and s["client"][0] == "127.0.0.1"
        assert seen["body"] == b"{}" and seen["thread"] == t.ident
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()
