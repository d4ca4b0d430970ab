"""One log line per API request: who (account), what (service and operation), the answer (HTTP
status and AWS error code), how long it took and its request id. Only these: never parameters,
headers, bodies or keys. The line costs a few microseconds: one logging call with a dict of
fields, skipped entirely below INFO, and one counter increment."""
from __future__ import annotations

import logging

from lambdalet.observe.metrics import API_REQUESTS

log = logging.getLogger("lambdalet.request")


def request_done(*, account: str | None, service: str | None, operation: str | None, status: int,
                 latency_s: float, request_id: str, source_ip: str, error: str | None = None) -> None:
    API_REQUESTS.labels(service or "-", operation or "-", str(status)).inc()
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {"account": account or "-", "service": service or "-", "operation": operation or "-",
              "status": status, "latency_ms": round(latency_s * 1000, 2), "request_id": request_id,
              "source_ip": source_ip}
    if error:
        fields["error"] = error
    log.info("api-request", extra={"fields": fields})
