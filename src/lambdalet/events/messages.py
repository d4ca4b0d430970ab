"""What one queued Event invocation carries: everything delivery needs, as compact JSON.

The queue service seals the whole body (AES-GCM envelope bound to queue and message id), so the
payload and client context are never at rest in plain text. Payloads too large for one queue
message live in `event_payloads` (sealed too) and the body holds a reference (`pr`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

VERSION = 1
LAST_RESPONSE_MAX = 64 * 1024     # the last failed attempt's response, kept for a later EventAgeExceeded record


@dataclass(frozen=True)
class EventMessage:
    account_id: str
    region: str
    function_name: str
    qualifier: str | None          # as invoked: None ($LATEST), a version or an alias
    request_id: str
    enqueued_at: float             # the first enqueue; retries keep it (MaximumEventAgeInSeconds counts from here)
    attempts: int = 0              # invocations that ended in a function error so far
    payload: str | None = None     # the event (JSON text), inline
    payload_ref: str | None = None  # or the id of its `event_payloads` row
    client_context: str | None = None
    tenant_id: str = ""            # a PER_TENANT function's tenant (services/tenancy.py)
    trace: str = ""                # the caller's X-Amzn-Trace-Id: its Lineage counts the chain (services/recursion.py)
    last_error: dict | None = field(default=None, compare=False)   # {"fe", "v", "p"} of the last failed attempt

    def encode(self) -> str:
        doc: dict = {"v": VERSION, "a": self.account_id, "r": self.region, "f": self.function_name,
                     "id": self.request_id, "t": self.enqueued_at, "n": self.attempts}
        if self.qualifier:
            doc["q"] = self.qualifier
        if self.payload_ref:
            doc["pr"] = self.payload_ref
        else:
            doc["p"] = self.payload or "{}"
        if self.client_context:
            doc["cc"] = self.client_context
        if self.tenant_id:
            doc["ti"] = self.tenant_id
        if self.trace:
            doc["tr"] = self.trace
        if self.last_error:
            doc["le"] = self.last_error
        return json.dumps(doc, separators=(",", ":"))   # ensure_ascii: valid SQS body characters only

    @classmethod
    def decode(cls, body: bytes | str) -> "EventMessage":
        doc = json.loads(body)
        if doc.get("v") != VERSION:
            raise ValueError(f"unknown event message version {doc.get('v')!r}")
        return cls(account_id=doc["a"], region=doc["r"], function_name=doc["f"], qualifier=doc.get("q"),
                   request_id=doc["id"], enqueued_at=float(doc["t"]), attempts=int(doc.get("n", 0)),
                   payload=doc.get("p"), payload_ref=doc.get("pr"), client_context=doc.get("cc"),
                   tenant_id=doc.get("ti", ""), trace=doc.get("tr", ""), last_error=doc.get("le"))

    def retried(self, attempts: int, last_error: dict | None) -> "EventMessage":
        return replace(self, attempts=attempts, last_error=last_error)

    @property
    def qualified_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}:" \
               f"{self.qualifier or '$LATEST'}"


def last_error_of(function_error: str, executed_version: str, payload: bytes) -> dict:
    text = payload.decode("utf-8", "replace")
    if len(text) > LAST_RESPONSE_MAX:
        text = json.dumps({"errorMessage": text[:1024] + "...", "errorType": "Lambdalet.ResponseTruncated"})
    return {"fe": function_error, "v": executed_version, "p": text}
