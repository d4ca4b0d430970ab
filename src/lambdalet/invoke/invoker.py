"""The Invoke operation (request-response): qualifier -> version -> concurrency slot -> a warm or
new environment of exactly that version -> one invocation -> AWS's response shape."""
from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from lambdalet.invoke.codecache import CodeCache
from lambdalet.invoke.concurrency import AccountShares, ConcurrencyLimiter
from lambdalet.invoke.pool import EnvironmentPool, PoolKey
from lambdalet.invoke.response_stream import ResponseStream
from lambdalet.models.context import RequestContext
from lambdalet.observe import metrics
from lambdalet.models.errors import (
    InvalidParameterValueException,
    RecursiveInvocationException,
    InvalidRequestContentException,
    RequestEntityTooLargeException,
    ServiceException,
    TooManyRequestsException,
)
from lambdalet.services import recursion, tenancy
from lambdalet.sandbox.api import (Backend, CapacityExceeded, EnvironmentSpec, InitFailed, InvokeRequest, InvokeResult,
                                   NotDelivered, SandboxError)

log = logging.getLogger("lambdalet.invoke")

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024          # 6 MB request and response, as AWS documents
MAX_CLIENT_CONTEXT = 3583                   # bytes of the base64 header
LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Target:
    """What the resolver hands the data plane: one immutable function version."""
    account_id: str
    function_name: str
    function_arn: str        # unqualified
    version: str             # "$LATEST" or "1", "2", ...
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    ephemeral_mb: int
    environment: dict
    code_sha256: str         # hex
    revision_id: str
    reserved_concurrency: int | None
    total_reserved: int      # the account's sum of reservations, for the unreserved pool
    invoked_arn: str = ""    # the ARN as the caller named it (alias or version kept), for the context
    region: str = ""         # the function's region (functions are regional)
    role: str = ""           # the execution role's ARN (invoke/credentials.py)
    code_kms_key_arn: str = ""   # SourceKMSKeyArn: checked, with kms_key_arn, for every new environment
    kms_key_arn: str = ""        # KMSKeyArn
    layers: tuple[str, ...] = ()  # blob digests of its layers, in order: merged and mounted at /opt
    egress: str = ""              # its `lambdalet:egress` tag (sandbox/egress_policy.py); "": the server's default
    log_format: str = "Text"     # LoggingConfig: format, group (created on first use) and levels
    log_group: str = ""
    app_log_level: str = ""
    system_log_level: str = ""
    tenant_isolated: bool = False   # TenancyConfig PER_TENANT: every invocation names a tenant
    recursive_loop: str = ""        # PutFunctionRecursionConfig ("": Terminate)


class Invoker:
    def __init__(self, resolve: Callable[[RequestContext, str, str | None], Target], backend: Backend,
                 code: CodeCache, pool: EnvironmentPool, limiter: ConcurrencyLimiter, region: str, logs=None, *,
                 layers=None, credentials=None, submit_event: Callable[[RequestContext, dict, Target], dict] | None = None,
                 stream_threads: AccountShares | None = None):
        self.logs = logs              # lambdalet.logs.LogStore: a sink per environment (log stream)
        self.layers = layers          # invoke.layercache.LayerCache: a function's layers merged for /opt
        self.credentials = credentials    # invoke.credentials.ExecutionRoles: the role's session per environment
        # InvocationType=Event: AsyncInvocations.submit_invoke (lambdalet.events), which queues durably and
        # answers 202. A function, not the component: the component's poller is what calls this invoker.
        self.submit_event = submit_event
        # A streamed invocation's own thread counts in its account's share of long-held calls (the share
        # synchronous Invokes' API threads count in): no account can start threads without bound.
        self.stream_threads = stream_threads
        self.resolve = resolve
        self.backend = backend
        self.code = code
        self.pool = pool
        self.limiter = limiter
        self.region = region
        self._expiry: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # sandbox -> credentials expiry

    def _checked(self, ctx: RequestContext, params: dict) -> tuple[str, bytes, str | None, Target, str]:
        """What Invoke and InvokeWithResponseStream check alike, in AWS's order: the payload, the client
        context, the function (and qualifier), then the tenant id."""
        payload = _checked_payload(params.get("Payload") or b"")
        client_context = _client_context(params.get("ClientContext"))
        target = self.resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        tenant_id = tenancy.check_invoke(target.tenant_isolated, params.get("TenantId"))
        return params.get("InvocationType") or "RequestResponse", payload, client_context, target, tenant_id

    # The api binds this as the `Invoke` operation.
    def invoke(self, ctx: RequestContext, params: dict) -> dict:
        kind, payload, client_context, target, tenant_id = self._checked(ctx, params)
        if kind == "DryRun":
            return {"StatusCode": 204, "ExecutedVersion": target.version}
        if kind == "Event":
            if self.submit_event is None:
                raise InvalidParameterValueException(
                    "InvocationType Event is not available yet on this lambdalet server; use RequestResponse.")
            return self.submit_event(ctx, params, target)   # lambdalet.events: queued durably, 202
        if kind != "RequestResponse":
            raise InvalidParameterValueException(f"Invalid InvocationType {kind!r}")
        result = self.run(ctx, target, payload or b"{}", client_context, tenant_id=tenant_id,
                          trace_header=ctx.trace_header)
        out: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": target.version, "Payload": result.payload}
        if result.function_error:
            out["FunctionError"] = result.function_error
        if params.get("LogType") == "Tail":
            out["LogResult"] = base64.b64encode(result.log_tail[-LOG_TAIL_BYTES:]).decode()
        return out

    # The api binds this as the `InvokeWithResponseStream` operation.
    def invoke_with_response_stream(self, ctx: RequestContext, params: dict) -> dict:
        """Invoke's checks, then the invocation in a thread of its own: the answer's EventStream is the
        ResponseStream the API turns into PayloadChunk / InvokeComplete events (api/event_stream.py) as
        the runtime streams. A function that does not stream arrives as one chunk, as on AWS."""
        kind, payload, client_context, target, tenant_id = self._checked(ctx, params)
        if kind == "DryRun":
            return {"StatusCode": 204, "ExecutedVersion": target.version}
        if kind != "RequestResponse":
            raise InvalidParameterValueException(f"Invalid InvocationType {kind!r}")
        stream = self.stream(ctx, target, payload or b"{}", client_context, tenant_id=tenant_id,
                             trace_header=ctx.trace_header)
        stream.tail = params.get("LogType") == "Tail"
        return {"StatusCode": 200, "ExecutedVersion": target.version, "EventStream": stream}

    def stream(self, ctx: RequestContext, target: Target, payload: bytes, client_context: str | None = None,
               **kw: Any) -> ResponseStream:
        """run() with its response streamed, in a thread of its own (the API's worker thread is not held
        for the invocation: the event loop reads the stream). An error before the first piece (a
        throttle, a platform failure) is raised by the stream's started()."""
        stream = ResponseStream()
        share = contextlib.ExitStack()
        if self.stream_threads is not None:
            share.enter_context(self.stream_threads.hold(target.account_id))    # 429 here, before any thread

        def invocation() -> None:
            with share:
                try:
                    stream.finish(self.run(ctx, target, payload, client_context, stream=stream, **kw))
                except BaseException as e:      # handed to the reader, which answers it
                    stream.fail(e)
        try:
            threading.Thread(target=invocation, name="invoke-stream", daemon=True).start()
        except BaseException:
            share.close()
            raise
        return stream

    def run(self, ctx: RequestContext, target: Target, payload: bytes, client_context: str | None = None,
            **kw: Any) -> InvokeResult:
        """_run, counted (observe/metrics.py: Invocations, Errors, Throttles, Duration) on every path."""
        with metrics.Invocation(target) as measured:
            return measured.done(self._run(ctx, target, payload, client_context, **kw))

    def _run(self, ctx: RequestContext, target: Target, payload: bytes, client_context: str | None = None, *,
             tenant_id: str = "", trace_header: str = "", stream: ResponseStream | None = None) -> InvokeResult:
        """One invocation of one version, holding a concurrency slot for its whole duration. tenant_id: a
        PER_TENANT function's tenant (its environments serve no other); trace_header: the caller's
        X-Amzn-Trace-Id, whose Lineage counts this chain's invocations (services/recursion.py)."""
        tenancy.check_invoke(target.tenant_isolated, tenant_id)   # every path (URLs, mappings, events) alike
        if recursion.is_loop(trace_header, target.function_arn, target.recursive_loop):
            log.warning("recursive loop: %s invoked more than %d times in one chain of requests; stopped",
                        target.function_arn, recursion.MAX_INVOCATIONS)
            raise RecursiveInvocationException(
                "Lambda detected that the function is being invoked in a recursive loop with other AWS resources "
                "and stopped its invocation.")
        trace_id = recursion.next_trace(trace_header, target.function_arn)
        key = PoolKey(target.account_id, target.function_arn, target.version, target.code_sha256, target.revision_id,
                      tenant_id)
        request_id = ctx.request_id or str(uuid.uuid4())
        qualified = target.invoked_arn or (
            f"{target.function_arn}:{target.version}" if target.version != "$LATEST" else target.function_arn)
        with self.limiter.slot(target.account_id, target.function_name, target.reserved_concurrency,
                               target.total_reserved):
            for attempt in (1, 2):    # a second one only when the first environment was dead on arrival
                try:
                    sandbox, cold = self._acquire(key, target, tenant_id)
                except InitFailed as failed:
                    return _as_unhandled(failed.result)
                except CapacityExceeded as e:      # the account's (or the host's) pids are at their limit
                    raise TooManyRequestsException(f"Rate Exceeded: {e}; retry once some of them end.",
                                                   extra={"Reason": "ConcurrentInvocationLimitExceeded"},
                                                   headers={"Retry-After": "1"}) from None
                except SandboxError as e:
                    log.error("environment for %s could not start: %s", qualified, e)
                    raise ServiceException("The execution environment could not be started.") from None
                try:
                    deadline_ms = int(time.time() * 1000) + target.timeout_s * 1000
                    result = sandbox.invoke(InvokeRequest(request_id, payload, deadline_ms, qualified,
                                                          client_context, trace_id, tenant_id, stream=stream))
                except NotDelivered as e:     # nothing ran there: safe to run it on a fresh environment
                    self.pool.discard(sandbox)
                    log.warning("environment for %s: %s", qualified, e)
                    if attempt == 1:
                        continue
                    result = e.result         # twice: the function's own doing, answered as its exit
                    break
                except SandboxError as e:
                    self.pool.discard(sandbox)
                    log.error("environment for %s failed: %s", qualified, e)
                    raise ServiceException("The execution environment failed.") from None
                except BaseException:
                    self.pool.discard(sandbox)
                    raise
                self.pool.release(sandbox)
                break
        if len(result.payload) > MAX_SYNC_PAYLOAD:
            result.payload = json.dumps({
                "errorMessage": f"Response payload size ({len(result.payload)} bytes) exceeded maximum allowed "
                                f"payload size ({MAX_SYNC_PAYLOAD} bytes).",
                "errorType": "Function.ResponseSizeTooLarge"}).encode()
            result.function_error = "Unhandled"
        return result

    def _acquire(self, key: PoolKey, target: Target, tenant_id: str = ""):
        """A pooled environment whose credentials outlive this invocation, else a new one: AWS sets them
        once per environment, so they are refreshed by replacing it (invoke/credentials.py)."""
        cap = None
        if tenant_id:     # AWS: 2,500 tenant environments per 1,000 of the function's concurrency
            cap = tenancy.environment_cap(target.reserved_concurrency if target.reserved_concurrency is not None
                                          else self.limiter.account_limit - target.total_reserved)
        while True:
            sandbox, cold = self.pool.acquire(key, lambda: self._start(target), target.memory_mb,   # budgeted
                                              tenant_cap=cap)
            expires = self._expiry.get(sandbox)
            if cold or expires is None or self.credentials is None or self.credentials.fresh(expires, target.timeout_s):
                return sandbox, cold
            self.pool.discard(sandbox)

    def _environment(self, target: Target) -> tuple[dict, float | None]:
        """The function's variables plus its role's temporary credentials (memory only, never stored)."""
        env = dict(target.environment)
        if self.credentials is None or not target.role:
            return env, None
        issued = self.credentials.for_environment(target.account_id, target.function_name, target.function_arn,
                                                  target.role)
        if issued is None:
            return env, None
        env.update(issued.env())
        return env, issued.expires_at

    def _start(self, target: Target):
        # First: a SourceKMSKeyArn that is not usable refuses the environment before credentials are issued.
        # The unpacked trees are leased while the environment lives: `leases` is kept alive by a
        # finalizer on the sandbox (below), or dropped with this frame if no sandbox comes to be.
        leases = _Leases()
        code_dir = self.code.path_for(target.code_sha256, target.code_kms_key_arn, target.function_arn,
                                      target.kms_key_arn, account_id=target.account_id, holder=leases)
        layers_dir = (self.layers.path_for(target.layers, account_id=target.account_id, holder=leases)
                      if target.layers and self.layers is not None else None)
        env, expires = self._environment(target)
        spec = EnvironmentSpec(
            env_id=uuid.uuid4().hex[:16], account_id=target.account_id, function_name=target.function_name,
            function_version=target.version, function_arn=target.function_arn, runtime=target.runtime,
            handler=target.handler, code_dir=str(code_dir), layers_dir=str(layers_dir) if layers_dir else None,
            memory_mb=target.memory_mb, ephemeral_mb=target.ephemeral_mb, timeout_s=float(target.timeout_s),
            env=env, log_group=target.log_group or f"/aws/lambda/{target.function_name}",
            log_format=target.log_format, app_log_level=target.app_log_level, system_log_level=target.system_log_level,
            log_stream=f"{time.strftime('%Y/%m/%d')}/[{target.version}]{uuid.uuid4().hex}",
            region=target.region or self.region, egress=target.egress)
        sink = self.logs.sink(target.account_id, spec.region, spec.log_group, spec.log_stream) if self.logs else None
        sandbox = self.backend.create(spec, log_sink=sink)
        weakref.finalize(sandbox, _keep, leases)
        if expires is not None:
            self._expiry[sandbox] = expires
        try:
            sandbox.start()
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    def close(self) -> None:
        self.pool.close()
        self.backend.close()
        self.code.clear()
        if self.layers is not None:
            self.layers.clear()


class _Leases:
    """Holds an environment's leases on unpacked trees (invoke/unpacked.py) for as long as it lives."""


def _keep(_leases: _Leases) -> None:
    """The finalizer's callback: dropping its argument ends the leases."""


def _checked_payload(payload: bytes) -> bytes:
    if len(payload) > MAX_SYNC_PAYLOAD:
        raise RequestEntityTooLargeException(     # AWS's code and words (not the model's RequestTooLarge)
            f"Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation")
    if payload:
        try:
            json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequestContentException(
                "Could not parse request body into json: Could not parse payload into json") from None
    return payload


def _client_context(raw: str | None) -> str | None:
    if not raw:
        return None
    if len(raw) > MAX_CLIENT_CONTEXT:
        raise InvalidParameterValueException("Client context must be a maximum of 3583 bytes base64-encoded.")
    try:
        text = base64.b64decode(raw, validate=True).decode()
        json.loads(text)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidParameterValueException("Client context must be a valid Base64-encoded JSON object.") from None
    return text


def _as_unhandled(result: InvokeResult) -> InvokeResult:
    result.function_error = result.function_error or "Unhandled"
    return result

