"""The platform's own log lines around an invocation, in the function's LoggingConfig format.

Text (AWS's default): `START RequestId: … Version: …`, `END RequestId: …`, `REPORT RequestId: …\t…`.
JSON (LogFormat=JSON): one record per event as AWS writes them to CloudWatch,
`{"time": …, "type": "platform.start", "record": {"requestId": …, "version": …}}` and
`platform.report` with `metrics` (durationMs, billedDurationMs, memorySizeMB, maxMemoryUsedMB,
initDurationMs on a cold start) and `status`; AWS has no END line in JSON. These records are INFO
events: a SystemLogLevel of WARN leaves them out (AWS's system log level filtering). The timeout and
exit lines stay the text lines they are in both formats (the report's status names them in JSON).

Stand-alone (stdlib only). sandbox/host.py hands these lines to the log sink marked as the platform's
(store.py LogSink.platform): only marked lines pass the rate limit (quotas.py), whatever a function
prints. The prefixes below serve output handed over unmarked (the store's partial-line split, a
caller of RateLimiter.admit with plain (ts, message, bytes) events).
"""
from __future__ import annotations

import json
import math
import time

TEXT_PREFIXES = ("START RequestId: ", "END RequestId: ", "REPORT RequestId: ", "INIT_START ")
JSON_PREFIX = '{"time":"'                 # every JSON platform record starts so (the key order is fixed)
REPORT_MARKERS = (b"REPORT RequestId: ", b'"type":"platform.report"')

_SYSTEM_LEVELS = {"DEBUG": 0, "INFO": 1, "WARN": 2}
_RECORD_LEVEL = 1                         # platform.start / platform.report are INFO events


def now_iso(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def is_platform_line(text: str) -> bool:
    if text.startswith(TEXT_PREFIXES):
        return True
    return text.startswith(JSON_PREFIX) and '","type":"platform.' in text[:64]


def is_report(line: bytes) -> bool:
    return line.startswith(REPORT_MARKERS[0]) or (line.startswith(JSON_PREFIX.encode())
                                                 and REPORT_MARKERS[1] in line[:64])


class PlatformLog:
    """Formats one environment's platform lines; b"" where the level filters a record out."""

    def __init__(self, log_format: str = "Text", system_level: str = ""):
        self.json = log_format == "JSON"
        self._on = not self.json or _RECORD_LEVEL >= _SYSTEM_LEVELS.get(system_level or "INFO", 1)

    def _record(self, kind: str, record: dict) -> bytes:
        if not self._on:
            return b""
        doc = {"time": now_iso(), "type": kind, "record": record}
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()

    def start(self, request_id: str, version: str, tenant_id: str = "") -> bytes:
        if self.json:      # a PER_TENANT function's records carry the tenant, as AWS's do
            return self._record("platform.start", {"requestId": request_id, "version": version,
                                                   **({"tenantId": tenant_id} if tenant_id else {})})
        return f"START RequestId: {request_id} Version: {version}\n".encode()

    def end_and_report(self, request_id: str, duration_ms: float, memory_mb: int, max_memory_mb: int,
                       init_ms: float | None, error_type: str | None, tenant_id: str = "") -> bytes:
        """The END and REPORT lines (text) or the platform.report record (JSON). A timeout or a runtime
        exit gives the report a status, as AWS's does."""
        status = {"Sandbox.Timedout": "timeout", "Runtime.ExitError": "error"}.get(error_type or "")
        if self.json:
            metrics = {"durationMs": round(duration_ms, 3), "billedDurationMs": math.ceil(duration_ms),
                       "memorySizeMB": memory_mb, "maxMemoryUsedMB": max_memory_mb}
            if init_ms is not None:
                metrics["initDurationMs"] = round(init_ms, 3)
            record = {"requestId": request_id, "metrics": metrics, "status": status or "success"}
            if status:
                record["errorType"] = error_type
            if tenant_id:
                record["tenantId"] = tenant_id
            return self._record("platform.report", record)
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
                  f"Billed Duration: {math.ceil(duration_ms)} ms\t"
                  f"Memory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB\t")
        if init_ms is not None:
            report += f"Init Duration: {init_ms:.2f} ms\t"
        if status:
            report += f"Status: {status}\t"
        return f"END RequestId: {request_id}\n{report}\n".encode()
