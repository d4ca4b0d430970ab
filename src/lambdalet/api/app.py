"""The ASGI application: read the request, authenticate it (SigV4), route it by the service in the
credential scope to that service's protocol, call the service, answer in AWS's shapes.

Nothing here knows what a function is: services are plain objects with one method per operation.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Host, Match

from lambdalet.api import audit_hook, event_stream, sigv4
from lambdalet.api.threads import AccountShares, WorkerThreads
from lambdalet.api.protocol import WireRequest, WireResponse, generic_error
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import (
    AwsError,
    InvalidParameterValueException,
    InvalidRequestContentException,
    ResourceNotFoundException,
    ServiceException,
    TooManyRequestsException,
    UnknownOperationException,
)
from lambdalet.models.service_model import snake_case
from lambdalet.observe.requestlog import request_done

log = logging.getLogger("lambdalet.api")

HEALTH_PATH = "/health"     # liveness/readiness for load balancers and systemd: no credentials, no details
# The largest request AWS accepts for a direct zip upload (CreateFunction / UpdateFunctionCode).
MAX_REQUEST_BYTES = 70_167_211
# Operations run in worker threads; long polls wait on the event loop (api/threads.py), but a
# synchronous Invoke holds its thread for the whole invocation: far more than anyio's default of 40,
# and one account holds at most a quarter of them (issue 21.7).
WORKER_THREADS = 512
SYNC_INVOKES_PER_ACCOUNT = WORKER_THREADS // 4


class RequestEntityTooLargeException(AwsError):
    code, status, sender_fault = "RequestEntityTooLargeException", 413, True


class RequestTimeoutException(AwsError):
    code, status, sender_fault = "RequestTimeoutException", 408, True


class SerializationException(AwsError):
    code, status, sender_fault = "SerializationException", 400, True


@dataclass(frozen=True)
class RequestLimits:
    """What a client can make the API hold before its signature is verified (docs/threat-model.md).
    A body over `precheck_above` bytes (or of unknown length) is read only after the Authorization
    header, the date and the key have been checked: an unauthenticated client is refused without the
    server buffering its body. Bodies read before verification share one byte budget (past it: 429,
    which every AWS SDK retries), and each must arrive within `body_timeout_s`."""
    precheck_above: int = 64 * 1024        # uvicorn holds this much of an unread body anyway
    unverified_body_bytes: int = 256 << 20
    body_timeout_s: float = 120.0
    sync_invokes_per_account: int = SYNC_INVOKES_PER_ACCOUNT   # worker threads one account's sync Invokes hold


class ServiceBinding:
    """One AWS service on this endpoint: its wire protocol and the method serving each operation.
    The server passes `table` (operation name -> method: server/bindings.py, checked against the
    model at start-up). Harnesses that serve one object may pass it instead; with several, the first
    with a method for an operation would win."""

    def __init__(self, protocol: Any, *implementations: Any, table: Mapping[str, Callable] | None = None):
        self.protocol = protocol
        self.implementations = implementations
        self.table = table

    def handler_for(self, operation_name: str) -> Callable | None:
        """`<operation>_deferrable` first: a variant that may answer a wait to await on the event loop."""
        if self.table is not None:
            return self.table.get(operation_name)
        attr = snake_case(operation_name)
        for impl in self.implementations:
            method = getattr(impl, attr + "_deferrable", None) or getattr(impl, attr, None)
            if method is not None:
                return method
        return None


class ApiApp:
    """The ASGI app. AWS API requests are served by `_serve` straight from the ASGI scope; Starlette
    keeps what needs routing (the internal routes: code download, function URLs) and the lifespan.
    Starlette's middleware, router and Request/Response objects, and anyio's thread hop (replaced by
    `WorkerThreads`), were about a third of the server's GIL time on a warm Invoke (py-spy; see
    docs/benchmarks.md, "Throughput, second pass")."""

    def __init__(self, services: dict[str, ServiceBinding],
                 lookup_key: Callable[[str, str | None], tuple[Caller, str] | None],
                 *, max_skew_s: int = 300, internal_routes: list[BaseRoute] | None = None,
                 authorize: Callable[[str, str, dict, RequestContext], RequestContext] | None = None,
                 limits: RequestLimits = RequestLimits(), sync_invokes: AccountShares | None = None):
        self.services = services
        self.lookup_key = lookup_key
        # (service, operation, params, ctx) -> the ctx to run with, or AccessDeniedException
        # (iam/request_map.py). None only for harnesses that test routing alone.
        self.authorize = authorize
        self.max_skew_s = max_skew_s
        self.limits = limits
        self._unverified = 0           # body bytes held by requests not yet answered (event loop only)
        self.internal_routes = list(internal_routes or [])
        self._route_hints = [_route_hint(r) for r in self.internal_routes]
        self.workers = WorkerThreads(WORKER_THREADS)
        # one account's synchronous Invokes; the server shares it with streamed invocations' threads
        self.sync_invokes = sync_invokes or AccountShares(limits.sync_invokes_per_account)
        self._starlette = Starlette(routes=self.internal_routes, lifespan=self._lifespan)
        self.ready = False      # /health: True between the lifespan's start and its end
        self.asgi = self        # the ASGI callable (an instance: uvicorn detects ASGI 3 by its __call__)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not self._internal(scope):
            if scope["path"] == HEALTH_PATH:
                await self._health(scope, send)
                return
            await self._serve(scope, receive, send)
        else:
            await self._starlette(scope, receive, send)

    def _internal(self, scope) -> bool:
        # The routes' fixed text first (a prefix, or the pieces of a host pattern): an API request
        # costs a few string tests instead of Starlette's matching of every route.
        path, host = scope["path"], None
        for route, prefix, host_parts in self._route_hints:
            if host_parts is not None:
                if host is None:
                    host = next((v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"host"), "")
                if not all(part in host for part in host_parts):
                    continue
            elif not path.startswith(prefix):
                continue
            if route.matches(scope)[0] is not Match.NONE:
                return True
        return False

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        # Internal routes' handlers run in anyio's threads (the API's in self.workers, as large).
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            self.workers.close()

    async def _read_body(self, receive, headers: dict[str, str], held: list[int]) -> bytes:
        """The whole body, within the size cap, the unverified-bytes budget and the body deadline.
        `held[0]` counts what this request took from the budget (given back by the caller)."""
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            raise RequestEntityTooLargeException(
                f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the operation")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > MAX_REQUEST_BYTES:
                        raise RequestEntityTooLargeException(
                            f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the operation")
                    if self._unverified + len(chunk) > self.limits.unverified_body_bytes:
                        raise TooManyRequestsException("Rate exceeded", extra={"Reason": "ServerBusy"})
                    self._unverified += len(chunk)
                    held[0] += len(chunk)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            raise RequestTimeoutException("The request body did not arrive in time.") from None

    async def _health(self, scope, send) -> None:
        """GET /health: no credentials, nothing but whether this server is up and serving (ready) or
        stopping. Not an AWS operation: no Authorization header is read."""
        status, body = (200, b'{"status":"ready"}') if self.ready else (503, b'{"status":"stopping"}')
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b'{"status":"method not allowed"}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})

    async def _serve(self, scope, receive, send) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        binding = None
        ctx = op = params = result = error = wire = service = None
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            k, v = k.decode("latin-1"), v.decode("latin-1")
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        client = scope.get("client")
        source_ip = client[0] if client else ""
        held, body_read = [0], False
        streamed = None
        try:
            declared = headers.get("content-length")
            if "transfer-encoding" in headers or (
                    declared and (not declared.isdigit() or int(declared) > self.limits.precheck_above)):
                # A large (or chunked) body is read only for a signed request from a known key.
                await self.workers.run(lambda: self._check_head(headers))
            body = await self._read_body(receive, headers, held)
            body_read = True
            raw_path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"]
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            wire = WireRequest(scope["method"], raw_path, query, headers, body)

            def lookup_secret(sreq: sigv4.SignedRequest) -> str | None:
                found = self.lookup_key(sreq.access_key_id, sreq.session_token)
                return found[1] if found else None

            # The claimed service picks the protocol first, so even an authentication failure is
            # answered in the shape that service's clients parse (XML for IAM/STS, JSON for others).
            try:
                binding = self.services.get(sigv4.parse_authorization(headers)[0].service)
            except AwsError:
                binding = None
            base_url = f"{scope.get('scheme', 'http')}://{headers.get('host') or _netloc(scope)}"

            def authenticated_call():
                """Verify, route, authorize and run the operation: ONE worker-thread hop for the lot
                (each hop costs a queue hand-off and two thread wake-ups). Progress goes to the
                enclosing variables, which the audit record and the error shape read."""
                nonlocal binding, ctx, service, op, params
                signed = sigv4.verify(wire.method, raw_path, query, headers, body, lookup_secret, self.max_skew_s)
                caller = self.lookup_key(signed.access_key_id, signed.session_token)[0]
                service = signed.service
                ctx = RequestContext(caller=caller, region=signed.region, request_id=request_id, base_url=base_url,
                                     source_ip=source_ip, user_agent=headers.get("user-agent", ""),
                                     trace_header=headers.get("x-amzn-trace-id", "")[:2048])
                binding = self.services.get(signed.service)
                if binding is None:
                    raise UnknownOperationException(f"lambdalet does not serve the '{signed.service}' service")
                op, labels = binding.protocol.match(wire)
                params = binding.protocol.parse(op, wire, labels)
                return self._call(service, op, binding.handler_for(op.name), ctx, params)

            result = await self.workers.run_deferrable(authenticated_call)
            streamed = event_stream.stream_of(result)
            if streamed is not None:        # InvokeWithResponseStream: the head waits for the first piece
                await streamed.started()    # (an error before it is answered as any error is)
                result = event_stream.head_members(result, streamed)
            out = binding.protocol.serialize(op, result)
        except _ClientGone:
            return                     # nobody to answer (nothing ran: the body was still arriving)
        except RecursionError as exc:  # a body nested deeper than any parser here follows: AWS answers 400
            error = exc
            out = _error_response(binding, _too_deep(service or _claimed_service(headers)), service)
        except AwsError as err:
            error = err
            out = _error_response(binding, err, service)
        except Exception as exc:  # never answer a stack trace; log it here instead
            error = exc
            log.exception("internal error in request %s", request_id)
            out = _error_response(binding, ServiceException("An internal error occurred. Request ID: " + request_id),
                                      service)
        finally:
            self._unverified -= held[0]
        committed = self._audit(source_ip, headers.get("user-agent", ""), ctx, service, wire, op, params, result,
                                error, request_id)
        if committed is not None and not await committed:    # never a success the trail lacks
            out = _error_response(binding, audit_hook.not_recorded(), service)
        out.headers["x-amzn-RequestId"] = request_id
        if not body_read:
            out.headers["Connection"] = "close"    # the unread body is not worth reading: end the connection
        raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in out.headers.items()
               if k.lower() != "content-length"]
        request_done(account=ctx.account_id if ctx is not None else None, service=service or _claimed_service(headers),
                     operation=op.name if op is not None else None, status=out.status,
                     latency_s=time.perf_counter() - started, request_id=request_id, source_ip=source_ip,
                     error=getattr(error, "code", None) or (type(error).__name__ if error is not None else None))
        if streamed is not None and error is None and out.status == 200:
            await event_stream.send_events(send, out.status, raw, streamed)   # chunked, as it comes
            return
        if streamed is not None:
            streamed.close()
        raw.append((b"content-length", str(len(out.body)).encode()))
        await send({"type": "http.response.start", "status": out.status, "headers": raw})
        await send({"type": "http.response.body", "body": out.body})

    def _check_head(self, headers: dict[str, str]) -> None:
        """sigv4.check_head with this server's keys (a worker thread: a session key is a database read)."""
        def secret(sreq: sigv4.SignedRequest) -> str | None:
            found = self.lookup_key(sreq.access_key_id, sreq.session_token)
            return found[1] if found else None
        sigv4.check_head(headers, secret, self.max_skew_s)

    def _call(self, service: str, op, method: Callable | None, ctx: RequestContext, params: dict):
        """Authorization, then the operation: one worker-thread hop for both."""
        if self.authorize is not None:
            ctx = self.authorize(service, op.name, params, ctx)
        if method is None:
            raise _not_implemented(op)
        audit_hook.admit(service, op.name)     # not run at all when its record could not be kept
        if service == "lambda" and op.name == "Invoke" and params.get("InvocationType") in (None, "RequestResponse"):
            with self.sync_invokes.hold(ctx.account_id):     # holds this worker thread until it returns
                return method(ctx, params)
        return method(ctx, params)

    def _audit(self, source_ip: str, user_agent: str, ctx, service, wire, op, params, result, error,
               request_id: str):
        """One audit event per request (queued for the writer thread; never raises). For a success,
        an awaitable of "its record is committed" (audit_hook.record_committed), else None."""
        if ctx is not None and error is None:
            return audit_hook.record_committed(ctx, service, op.name if op is not None else None, params, result,
                                               source_ip, user_agent, ctx.caller.access_key_id,
                                               request_id=request_id)
        if ctx is not None:      # authenticated, but the call failed
            audit_hook.record(ctx, service, op.name if op is not None else None, params, result, error,
                              source_ip, user_agent, ctx.caller.access_key_id, request_id=request_id)
        else:                    # refused before authentication: only what the request claims
            service, op_name, key, region = (audit_hook.refused_request_facts(self.services, wire)
                                             if wire is not None else (None, None, None, None))
            audit_hook.record(None, service, op_name, None, None, error, source_ip, user_agent, key,
                              request_id=request_id, region=region)
        return None


def _claimed_service(headers: dict[str, str]) -> str | None:
    try:
        return sigv4.parse_authorization(headers)[0].service
    except AwsError:
        return None


def _too_deep(service: str | None) -> AwsError:
    message = "Could not parse request body into json: the document is nested too deeply."
    return InvalidRequestContentException(message) if service == "lambda" else SerializationException(message)


def _route_hint(route: BaseRoute) -> tuple[BaseRoute, str, tuple[str, ...] | None]:
    """(route, the fixed start of its path, the fixed pieces of its host pattern or None)."""
    host = getattr(route, "host", None)
    if isinstance(route, Host) and host:
        return route, "", tuple(p.lower() for p in re.split(r"\{[^}]*\}", host) if p)
    path = getattr(route, "path", None)
    return route, path.split("{", 1)[0] if isinstance(path, str) else "", None


class _ClientGone(Exception):
    """The client disconnected before its request's body had arrived."""


def _netloc(scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    default = {"http": 80, "https": 443}.get(scope.get("scheme", "http"))
    return host if port in (None, default) else f"{host}:{port}"


def _not_implemented(op) -> AwsError:
    """A modelled error for an operation lambdalet does not implement yet (4xx: clients must not retry)."""
    names = {e.name for e in op.error_shapes}
    msg = f"lambdalet does not implement {op.name} yet."
    if "InvalidParameterValueException" in names:
        return InvalidParameterValueException(msg)
    if "InvalidParameterException" in names:      # CloudWatch Logs' spelling
        err = InvalidParameterValueException(msg)
        err.code = "InvalidParameterException"
        return err
    if "InvalidInputException" in names:          # AWS Organizations' spelling
        err = InvalidParameterValueException(msg)
        err.code = "InvalidInputException"
        return err
    if "ResourceNotFoundException" in names:
        return ResourceNotFoundException(msg)
    return ServiceException(msg)


def _error_response(binding: ServiceBinding | None, err: AwsError, service: str | None = None) -> WireResponse:
    # Before a service is known (auth failures) the rest-json shape is what every AWS SDK parses.
    if binding is not None:
        return binding.protocol.serialize_error(err)
    foreign = _foreign_protocol(service)
    return foreign.serialize_error(err) if foreign is not None else generic_error(err)


_SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_foreign: dict[str, Any] = {}


def _foreign_protocol(service: str | None):
    """A service lambdalet does not serve still gets its error in the shape its SDK parses: XML for
    query-protocol services (CloudFormation, which `sam remote invoke NAME` asks first), so the tool
    reports our message instead of crashing in its response parser. JSON services parse the generic
    shape already. Only names botocore has a model for are loaded (and cached)."""
    if not service or not _SERVICE_NAME.match(service):
        return None
    if service not in _foreign:
        proto = None
        try:
            from lambdalet.api.protocol import load_service_model
            from lambdalet.api.query_protocol import QueryProtocol
            model = load_service_model(service)
            if model.metadata.get("protocol") == "query":
                proto = QueryProtocol(model)
        except Exception:          # botocore has no such service: the generic shape
            proto = None
        _foreign[service] = proto
    return _foreign[service]
