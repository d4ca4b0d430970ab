"""The audit hooks ApiApp calls: `admit` before an authenticated call runs, then once per request,
after the answer is built, `record_committed` (a call about to be answered as a success) or
`record` (a failed or refused one).

- `admit` refuses a recorded call (ServiceException, 500: every SDK retries it) while the audit
  writer could not keep its record (failing store, queue nearly full), so nothing runs unrecorded.
- `record_committed` queues the call's facts and returns an awaitable that is True once its record
  is committed: the caller answers the success only then, and answers `not_recorded()` on False.
  The wait is on the event loop (no thread is held); the writer's group commit makes it one shared
  commit per batch.
- `record` only queues (never touches the database, never raises): a failed call's record is not
  waited for — the call did not succeed, so nothing answered as a success can be missing.
Nothing is recorded until the server installs a recorder (`install`), so tests that build an
ApiApp alone are unaffected.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable

from lambdalet.api import sigv4
from lambdalet.models.errors import ServiceException

log = logging.getLogger("lambdalet.audit")

_recorder: Any = None
_MAX_FIELD = 1024
# A safety net only: the writer settles every record within its batch deadline (5 s, twice that
# behind a failing batch), so this fires only if the writer thread itself is gone.
COMMIT_TIMEOUT_S = 30.0


def install(recorder: Any) -> None:
    global _recorder
    _recorder = recorder


def uninstall() -> None:
    global _recorder
    _recorder = None


def not_recorded() -> ServiceException:
    return ServiceException("The audit trail cannot record this call right now, so it was not answered as a "
                            "success; retry later.")


def admit(service: str | None, operation_name: str | None) -> None:
    """Raise ServiceException when a recorded call must not run now (see module doc)."""
    rec = _recorder
    if rec is not None and not rec.admit(service, operation_name):
        raise ServiceException("The audit trail cannot record calls right now; this call was not run. "
                               "Retry later.")


def record_committed(ctx: Any, service: str | None, operation_name: str | None, params: dict | None,
                     result: dict | None, source_ip: str | None, user_agent: str | None, access_key_id: str | None,
                     *, request_id: str | None = None) -> Awaitable[bool] | None:
    """Queue a successful authenticated call; an awaitable of "its record is committed", or None
    when there is nothing to wait for (no recorder installed). Call on the event loop."""
    rec = _recorder
    if rec is None or not rec.recorded(service, operation_name):    # Invoke: no wait on the hot path
        return None
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(ok: bool) -> None:      # any thread
        loop.call_soon_threadsafe(_settle, fut, ok)
    try:
        rec.submit(service=service, operation=operation_name, ctx=ctx, params=params, result=result, error=None,
                   source_ip=(source_ip or "")[:_MAX_FIELD], user_agent=(user_agent or "")[:_MAX_FIELD],
                   access_key_id=(access_key_id or "")[:128] or None, request_id=request_id, on_done=done)
    except Exception:
        log.exception("audit: could not queue %s", operation_name)
        return _constant(False)
    return _wait(fut)


def _settle(fut: asyncio.Future, ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)


async def _wait(fut: asyncio.Future) -> bool:
    try:
        return await asyncio.wait_for(fut, COMMIT_TIMEOUT_S)
    except asyncio.TimeoutError:
        log.error("audit: no commit of a record within %.0fs; the call is answered ServiceException", COMMIT_TIMEOUT_S)
        return False


async def _constant(value: bool) -> bool:
    return value


def record(ctx_or_none: Any, service: str | None, operation_name: str | None, params: dict | None,
           result_or_none: dict | None, error_or_none: BaseException | None, source_ip: str | None,
           user_agent: str | None, access_key_id: str | None, *, request_id: str | None = None,
           region: str | None = None) -> None:
    """Queue one API call for the audit trail. `ctx_or_none` is the RequestContext of an
    authenticated call, None for a refused one (then only `access_key_id`, `service` and
    `operation_name` as claimed by the request are known, see `refused_request_facts`)."""
    rec = _recorder
    if rec is None:
        return
    try:
        rec.submit(service=service, operation=operation_name, ctx=ctx_or_none,
                   params=params if ctx_or_none is not None else None, result=result_or_none,
                   error=error_or_none, source_ip=(source_ip or "")[:_MAX_FIELD],
                   user_agent=(user_agent or "")[:_MAX_FIELD], access_key_id=(access_key_id or "")[:128] or None,
                   request_id=request_id, region=(region or "")[:64] or None)
    except Exception:   # auditing must never fail a request
        log.exception("audit: could not queue %s", operation_name)


def refused_request_facts(services: dict, wire: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(service, operation name, access key id, region) as a refused request CLAIMS them, read from
    its Authorization header and route without trusting anything. Any part may be None."""
    service = op_name = key = region = None
    try:
        signed, _, _ = sigv4.parse_authorization(wire.headers)
        service, key, region = signed.service, signed.access_key_id, signed.region
    except Exception:
        return None, None, None, None
    binding = services.get(service)
    if binding is None:
        return service[:64], None, key, region
    try:
        op_name = binding.protocol.match(wire)[0].name
    except Exception:
        pass
    return service[:64], op_name, key, region
