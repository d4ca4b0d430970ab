"""Function URLs, the HTTP front: find the URL, authenticate and authorize the caller as its AuthType
says, turn the request into the function's event, invoke it synchronously through the Invoker (same
concurrency limits, environments and logs as Invoke), and turn the result into the HTTP response.

Two ways in, on this server's own port (ApiApp's internal routes, ahead of the AWS APIs):
- virtual host, the default (the FunctionUrl the API reports): `Host: <url-id>.lambda-url.<region>.localhost[:port]`,
  as AWS's `<url-id>.lambda-url.<region>.on.aws`, an origin of its own per URL; the server certificate
  covers `*.lambda-url.<region>.localhost`;
- path style, a non-browser fallback for clients that cannot resolve *.localhost:
  `https://<host>:<port>/lambda-url/<url-id>/<path>` (the function sees `/<path>` as rawPath). Every URL
  shares one origin there, so responses are sandboxed and cookies confined (api/function_url_origin.py).

Auth (urls-auth): AWS_IAM needs a SigV4 signature for service `lambda` in the URL's region and
`lambda:InvokeFunctionUrl` on the function (or alias) ARN, with `lambda:FunctionUrlAuthType` =
AWS_IAM, and (AWS's rule since October 2025) `lambda:InvokeFunction` with `lambda:InvokedViaFunctionUrl`
= true, decided by the same policy engine as the API (identity policy; another account also needs the
function's resource policy). NONE runs the request as an anonymous principal: only the function's
resource policy can allow it (AddPermission Principal "*" with FunctionUrlAuthType NONE, and
lambda:InvokeFunction with InvokedViaFunctionUrl). Every refusal,
and an unknown url-id, is the same 403 `{"Message":"Forbidden"}`, so the answer reveals nothing.

URL invocations are data events: not written to the audit trail (CloudTrail's default).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Callable
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Host, Route, Router

from lambdalet.api import function_url_origin as origin
from lambdalet.api import function_url_stream as url_stream
from lambdalet.api import sigv4
from lambdalet.api.function_url_payload import (HttpResult, InvalidFunctionResponse, apply_cors, build_event,
                                                combine_headers, is_preflight, map_response, preflight)
from lambdalet.invoke.invoker import MAX_SYNC_PAYLOAD as MAX_PAYLOAD   # request and response, as Invoke
from lambdalet.invoke.response_stream import ResponseStream
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import AwsError, TooManyRequestsException
from lambdalet.services.function_urls import url_host

log = logging.getLogger("lambdalet.function_url")

PATH_PREFIX = origin.PATH_PREFIX
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]   # what a function URL accepts
ANONYMOUS = Caller(account_id="", principal_arn="anonymous", access_key_id="")
FORBIDDEN = ("Forbidden", "AccessDeniedException")     # every refusal and an unknown url-id alike


def _json(status: int, message: str, error_type: str | None = None) -> HttpResult:
    headers = [("content-type", "application/json")]
    if error_type:
        headers.append(("x-amzn-errortype", error_type))
    return HttpResult(status, headers, json.dumps({"Message": message}).encode())


class _TooLarge(Exception):
    pass


class FunctionUrlFront:
    def __init__(self, lookup_url: Callable[[str], Any], lookup_key: Callable, authorize: Callable, invoker,
                 *, max_skew_s: int = 300, principal_org: Callable[[str], Any] | None = None):
        self.lookup_url = lookup_url       # url-id -> services.function_urls.UrlTarget | None
        self.lookup_key = lookup_key       # (access key id, session token) -> (Caller, secret) | None
        self.authorize = authorize         # iam.request_map.RequestAuthorizer
        self.invoker = invoker             # invoke.invoker.Invoker
        self.max_skew_s = max_skew_s
        self.principal_org = principal_org  # account -> (org id, root id) | None, for authorizer.iam

    def routes(self) -> list[BaseRoute]:
        vhost = Router(routes=[Route("/{path:path}", self._by_host, methods=METHODS)])
        return [Host("{url_id}.lambda-url.{region}.localhost", app=vhost),
                Route(PATH_PREFIX + "/{url_id}", self._by_path, methods=METHODS),
                Route(PATH_PREFIX + "/{url_id}/{path:path}", self._by_path, methods=METHODS)]

    # ---- the two ways in ----
    async def _by_host(self, request: Request) -> Response:
        domain = request.headers.get("host", "").split(":", 1)[0].lower()
        return await self._serve(request, request.path_params["url_id"], _raw_path(request), domain)

    async def _by_path(self, request: Request) -> Response:
        url_id = request.path_params["url_id"]
        raw = _raw_path(request)
        prefix = f"{PATH_PREFIX}/{url_id}"
        return await self._serve(request, url_id, raw[len(prefix):] if raw.startswith(prefix) else "/", None)

    # ---- one request ----
    async def _serve(self, request: Request, url_id: str, raw_path: str, domain: str | None) -> Response:
        request_id = str(uuid.uuid4())
        try:
            result = await self._handle(request, url_id, raw_path or "/", domain, request_id)
        except Exception:      # never a stack trace to a URL's caller
            log.exception("function URL request %s failed", request_id)
            result = _json(500, "Internal Server Error")
        # What a browser lets the response do to its origin: the URL's own host, or the shared one.
        result = origin.host_style(result, domain) if domain else origin.path_style(result, url_id)
        if isinstance(result, url_stream.StreamedResult):
            response: Response = StreamingResponse(result.chunks, status_code=result.status)
            del response.headers["content-type"]    # (Starlette's default; the function's own is below)
        else:
            response = Response(result.body, status_code=result.status)
        for name, value in result.headers:
            response.headers.append(name, value)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def _handle(self, request: Request, url_id: str, raw_path: str, domain: str | None,
                      request_id: str) -> HttpResult:
        url = await run_in_threadpool(self.lookup_url, url_id)
        if url is None or (domain is not None and domain != url_host(url_id, url.region)):
            return _json(403, *FORBIDDEN)
        method = request.method
        headers = combine_headers(request.headers.items())
        if url.cors and is_preflight(method, headers):   # without a Cors configuration, OPTIONS is the function's
            return preflight(url.cors, headers)          # browsers never sign preflights
        try:
            body = await _read_body(request)
        except _TooLarge:
            return _too_large()
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        source_ip = request.client.host if request.client else ""
        base_url = f"{request.url.scheme}://{headers.get('host', request.url.netloc)}"
        epoch_ms = int(time.time() * 1000)
        signed_path = _raw_path(request)      # what a SigV4 signer signed (path style keeps its prefix)
        protocol = f"HTTP/{request.scope.get('http_version', '1.1')}"

        def authenticate_authorize_invoke() -> HttpResult | ResponseStream:
            ctx, iam = self._caller(url, method, signed_path, raw_query, headers, body, request_id, base_url,
                                    source_ip)
            if ctx is None:
                return _json(403, *FORBIDDEN)
            event = build_event(url_id=url_id, domain_name=domain or url_host(url_id, url.region),
                                method=method, raw_path=raw_path, raw_query=raw_query,
                                headers=_forwarded(request.headers.items(), source_ip, request.url),
                                body=body, source_ip=source_ip, protocol=protocol,
                                request_id=request_id, epoch_ms=epoch_ms,
                                account_id=iam["accountId"] if iam else "anonymous", iam=iam)
            payload = json.dumps(event, separators=(",", ":")).encode()
            if len(payload) > MAX_PAYLOAD:      # the event counts (a base64 body grows by a third)
                return _too_large()
            return self._invoke(ctx, url, payload)

        result = await run_in_threadpool(authenticate_authorize_invoke)
        if isinstance(result, ResponseStream):      # RESPONSE_STREAM: the head once the function wrote it
            try:
                result = await url_stream.http_result(result, _bad_gateway())
            except TooManyRequestsException:
                result = _json(429, "Rate Exceeded.", "TooManyRequestsException")
            except AwsError as e:
                log.info("function URL %s: invocation failed: %s %s", url.url_id, e.code, e.message)
                result = _bad_gateway()
        return apply_cors(url.cors, headers.get("origin"), result)

    def _caller(self, url, method, raw_path, raw_query, headers, body, request_id, base_url, source_ip
                ) -> tuple[RequestContext | None, dict | None]:
        """(context to invoke with, authorizer.iam for the event), or (None, None) when refused."""
        iam = None
        if url.auth_type == "AWS_IAM":
            query = parse_qsl(raw_query, keep_blank_values=True)

            def secret(sreq: sigv4.SignedRequest) -> str | None:
                found = self.lookup_key(sreq.access_key_id, sreq.session_token)
                return found[1] if found else None
            try:
                signed = sigv4.verify(method, raw_path, query, headers, body, secret, self.max_skew_s)
            except AwsError as e:
                log.debug("function URL %s: unauthenticated request refused: %s", url.url_id, e.message)
                return None, None
            if signed.service != "lambda" or signed.region != url.region:
                return None, None
            caller = self.lookup_key(signed.access_key_id, signed.session_token)[0]
            org = self.principal_org(caller.account_id) if self.principal_org is not None else None
            iam = {"accessKey": caller.access_key_id, "accountId": caller.account_id, "callerId": caller.user_id,
                   "cognitoIdentity": None, "principalOrgId": org[0] if org else None,
                   "userArn": caller.principal_arn, "userId": caller.user_id}
        else:
            caller = ANONYMOUS
        ctx = RequestContext(caller=caller, region=url.region, request_id=request_id, base_url=base_url,
                             source_ip=source_ip, user_agent=headers.get("user-agent", ""))
        try:
            # AWS since October 2025: a URL invocation needs lambda:InvokeFunction too, decided with
            # lambda:InvokedViaFunctionUrl = true (AddPermission's InvokedViaFunctionUrl grants exactly that).
            self.authorize("lambda", "InvokeFunctionViaUrl",
                           {"FunctionName": url.function_arn, "InvokedViaFunctionUrl": "true"}, ctx)
            # Scoped to the function's owner when allowed (an anonymous caller has no account of its own).
            ctx = self.authorize("lambda", "InvokeFunctionUrl",
                                 {"FunctionName": url.function_arn, "AuthType": url.auth_type}, ctx)
        except AwsError as e:
            log.debug("function URL %s: %s", url.url_id, e.message)
            return None, None
        return ctx, iam

    def _invoke(self, ctx: RequestContext, url, payload: bytes) -> HttpResult | ResponseStream:
        try:
            target = self.invoker.resolve(ctx, url.function_name, url.qualifier)
            if url.invoke_mode == "RESPONSE_STREAM":
                return self.invoker.stream(ctx, target, payload)    # read on the event loop (_handle)
            result = self.invoker.run(ctx, target, payload)
        except TooManyRequestsException:
            return _json(429, "Rate Exceeded.", "TooManyRequestsException")
        except AwsError as e:
            log.info("function URL %s: invocation failed: %s %s", url.url_id, e.code, e.message)
            return _bad_gateway()
        if result.function_error:
            return _bad_gateway()
        try:
            return map_response(result.payload)
        except InvalidFunctionResponse as e:
            log.info("function URL %s: the function's response is not valid: %s", url.url_id, e)
            return _bad_gateway()


def _too_large() -> HttpResult:
    return _json(413, f"Request must be smaller than {MAX_PAYLOAD} bytes for the InvokeFunction operation",
                 "RequestTooLargeException")


def _bad_gateway() -> HttpResult:
    # What AWS answers when the function fails or its response cannot be used.
    return HttpResult(502, [("content-type", "application/json")], b"Internal Server Error")


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1").split("?", 1)[0] if raw else request.url.path


def _forwarded(pairs, source_ip: str, url) -> list[tuple[str, str]]:
    """The request's headers plus the X-Forwarded-* ones AWS's front end adds."""
    out = [(k, v) for k, v in pairs if k.lower() not in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-port")]
    out += [("x-forwarded-for", source_ip), ("x-forwarded-proto", url.scheme),
            ("x-forwarded-port", str(url.port or (443 if url.scheme == "https" else 80)))]
    return out


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_PAYLOAD:
        raise _TooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_PAYLOAD:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
