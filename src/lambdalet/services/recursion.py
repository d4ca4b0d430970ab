"""Recursive loop detection (Get/PutFunctionRecursionConfig), as AWS describes it.

AWS counts, in the X-Ray trace header that travels with an event, how many times the chain of
requests it belongs to has invoked each function; an AWS SDK inside a function passes the header
on (botocore sends `_X_AMZN_TRACE_ID` as `X-Amzn-Trace-Id`). Past 16 invocations of one function
in one chain, a function set to Terminate (the default) is not invoked: a synchronous caller gets
RecursiveInvocationException, an asynchronous event goes to the dead-letter queue or on-failure
destination if there is one, else is dropped, and the platform logs it.

The count rides in the header's `Lineage` field: `Lineage=<hash>:<count>[,<hash>:<count>...]`,
one entry per function of the chain (hash: 8 hex digits of SHA-256 over the unqualified function
ARN). A caller can forge or strip the header, as on AWS: this stops accidents, not an adversary.
"""
from __future__ import annotations

import hashlib
import os
import time

from lambdalet.models.context import RequestContext
from lambdalet.services import records
from lambdalet.services.concurrency import _function as function_row   # a function, never a version or alias
from lambdalet.services.deps import Deps
from lambdalet.services.validation import constraint_error

ALLOW, TERMINATE = "Allow", "Terminate"
MAX_INVOCATIONS = 16        # a chain invokes one function at most this many times
MAX_LINEAGE_ENTRIES = 16    # functions remembered per chain (the header stays small)
F = records.F


def get_function_recursion_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    with deps.db.read() as conn:
        _, fn = function_row(ctx, conn, params, "GetFunctionRecursionConfig")
    return {"RecursiveLoop": fn.recursive_loop or TERMINATE}


def put_function_recursion_config(deps: Deps, ctx: RequestContext, params: dict) -> dict:
    value = params.get("RecursiveLoop")
    if value not in (ALLOW, TERMINATE):
        raise constraint_error(value, "recursiveLoop", "Member must satisfy enum value set: [Terminate, Allow]")
    with deps.db.begin() as conn:
        _, fn = function_row(ctx, conn, params, "PutFunctionRecursionConfig")
        conn.execute(F.update().where(F.c.id == fn.id).values(recursive_loop=value))
    return {"RecursiveLoop": value}


def _fields(header: str) -> list[tuple[str, str]]:
    out = []
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            out.append((key, value))
    return out


def _hash(function_arn: str) -> str:
    return hashlib.sha256(function_arn.encode()).hexdigest()[:8]


def _lineage(value: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in value.split(","):
        h, _, n = entry.strip().partition(":")
        if len(h) == 8 and n.isdigit():
            counts[h] = min(int(n), 1 << 20)
    return counts


def invocations_so_far(header: str, function_arn: str) -> int:
    """How many times the chain this header belongs to has invoked the function already."""
    for key, value in _fields(header):
        if key == "Lineage":
            return _lineage(value).get(_hash(function_arn), 0)
    return 0


def is_loop(header: str, function_arn: str, setting: str | None) -> bool:
    """This invocation would exceed the chain's 16 and the function is not set to Allow."""
    return (setting or TERMINATE) != ALLOW and invocations_so_far(header, function_arn) >= MAX_INVOCATIONS


def next_trace(header: str, function_arn: str) -> str:
    """The trace header this invocation's runtime gets (Lambda-Runtime-Trace-Id, then _X_AMZN_TRACE_ID):
    the caller's Root kept (a new one otherwise), a new Parent, and this function's count + 1."""
    fields = dict(_fields(header))
    root = fields.get("Root", "")
    if not root.startswith("1-") or len(root) > 64:
        root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    counts = _lineage(fields.get("Lineage", ""))
    h = _hash(function_arn)
    counts[h] = counts.get(h, 0) + 1
    if len(counts) > MAX_LINEAGE_ENTRIES:          # keep this function's and the busiest others'
        keep = sorted((k for k in counts if k != h), key=lambda k: -counts[k])[:MAX_LINEAGE_ENTRIES - 1]
        counts = {k: counts[k] for k in keep + [h]}
    lineage = ",".join(f"{k}:{n}" for k, n in counts.items())
    return f"Root={root};Parent={os.urandom(8).hex()};Sampled=0;Lineage={lineage}"

