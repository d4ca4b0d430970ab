"""The audit hook ApiApp.handle calls once per request, after the answer is built.

`record(...)` only queues the call's facts for the audit writer thread (audit.AuditRecorder): it
never touches the database, never raises, and costs a dict and a queue put on the request path.
Nothing is recorded until the server installs a recorder (`install`), so tests that build an
ApiApp alone are unaffected.
"""
from __future__ import annotations

import logging
from typing import Any

from lambdalet.api import sigv4

log = logging.getLogger("lambdalet.audit")

_recorder: Any = None
_MAX_FIELD = 1024


def install(recorder: Any) -> None:
    global _recorder
    _recorder = recorder


def uninstall() -> None:
    global _recorder
    _recorder = None


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
