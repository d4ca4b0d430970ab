"""Accepting asynchronous invocations: `Invoke` with InvocationType=Event and the deprecated
`InvokeAsync`. An event is answered 202 only once it is committed durably (fsync) to the account's
internal queue; the pollers (poller.py) deliver it.

Internal queues live in the queue service under INTERNAL_ACCOUNT, an account id no user owns, so no
user's ListQueues shows them: one queue per (user account, region, function),
`lambdalet-async-<account>-<function>` (a hash for a long name), so a deep backlog of one function is
never claimed ahead of the account's other functions (issue 21.7; the pollers take the queues round
robin per account, then per function). Queues named `lambdalet-async-<account>` (one per account,
before) are still delivered.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from typing import Callable

import sqlalchemy as sa

from lambdalet.events.messages import EventMessage
from lambdalet.events.tables import event_payloads
from lambdalet.models.context import Caller, RequestContext
from lambdalet.models.errors import (InvalidRequestContentException, RequestEntityTooLargeException,
                                     RequestTooLargeException,
                                     ServiceException)
from lambdalet.observe import metrics
from lambdalet.queues.errors import SqsError
from lambdalet.queues.storage import durable_write
from lambdalet.queues.tables import sqs_queues
from lambdalet.services.arns import Scope, merge_qualifier, parse_function_ref

log = logging.getLogger("lambdalet.events")

INTERNAL_ACCOUNT = "999999999999"       # reserved: owner of the platform's internal queues
QUEUE_PREFIX = "lambdalet-async-"
MAX_QUEUE_NAME = 80                      # SQS's limit on a queue name
EVENT_PAYLOAD_LIMIT = 1_048_576          # Invoke, InvocationType=Event (AWS: 1 MB)
INVOKE_ASYNC_LIMIT = 262_144             # the deprecated InvokeAsync keeps its 256 KB
INLINE_MAX = 200_000                     # larger message bodies keep their payload in event_payloads
INTERNAL_QUEUE_ATTRS = {"MessageRetentionPeriod": "1209600", "VisibilityTimeout": "120"}
PAYLOAD_GC_AGE_S = 3 * 86_400            # orphaned large payloads (crash between ack and delete)


def internal_context(account_id: str, region: str, request_id: str = "") -> RequestContext:
    caller = Caller(account_id=account_id, principal_arn=f"arn:aws:iam::{account_id}:root",
                    access_key_id="lambdalet-internal")
    return RequestContext(caller=caller, region=region, request_id=request_id or str(uuid.uuid4()),
                          base_url="https://lambdalet.internal")


class AsyncInvocations:
    def __init__(self, db, keyring, queues, resolve: Callable, region: str):
        self.db = db
        self.keyring = keyring
        self.queues = queues
        self.resolve = resolve                       # Invoker.resolve: (ctx, name, qualifier) -> Target
        self.region = region
        self._known: dict[tuple[str, str, str], str] = {}  # (account, region, function) -> internal queue ARN
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []

    # ------------------------------------------------------------------ operations
    def submit_invoke(self, ctx: RequestContext, params: dict, target=None) -> dict:
        """The Event branch of Invoke (Invoker.invoke has validated JSON and resolved the target)."""
        payload = params.get("Payload") or b""
        if len(payload) > EVENT_PAYLOAD_LIMIT:    # AWS's code for it: RequestEntityTooLarge, 413
            raise RequestEntityTooLargeException(
                f"{len(payload)} byte payload is too large for the Event invocation type "
                f"(limit {EVENT_PAYLOAD_LIMIT} bytes)")
        scope = Scope(ctx.account_id, ctx.region)
        ref = merge_qualifier(parse_function_ref(scope, params["FunctionName"], action="InvokeFunction"),
                              params.get("Qualifier"))
        if target is None:
            target = self.resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        cc = params.get("ClientContext")
        if cc:
            cc = base64.b64decode(cc).decode()
        self.enqueue(EventMessage(ctx.account_id, ctx.region, target.function_name, ref.qualifier,
                                  ctx.request_id, time.time(), payload=(payload or b"{}").decode(),
                                  client_context=cc or None, tenant_id=params.get("TenantId") or "",
                                  trace=ctx.trace_header))
        metrics.ASYNC_RECEIVED.labels(ctx.account_id, target.function_name,
                                      metrics.resource_name(target.function_name, ref.qualifier)).inc()
        return {"StatusCode": 202}

    def invoke_async(self, ctx: RequestContext, params: dict) -> dict:
        """The deprecated InvokeAsync: same queue, 256 KB limit, no qualifier."""
        args = params.get("InvokeArgs") or b""
        if isinstance(args, str):
            args = args.encode()
        if len(args) > INVOKE_ASYNC_LIMIT:
            raise RequestTooLargeException(
                f"{len(args)} byte payload is too large for the InvokeAsync operation (limit {INVOKE_ASYNC_LIMIT} bytes)")
        if args:
            try:
                json.loads(args)
            except (ValueError, UnicodeDecodeError):
                raise InvalidRequestContentException(
                    "Could not parse request body into json: Could not parse payload into json") from None
        target = self.resolve(ctx, params["FunctionName"], None)
        scope = Scope(ctx.account_id, ctx.region)
        ref = parse_function_ref(scope, params["FunctionName"], action="InvokeFunction")
        self.enqueue(EventMessage(ctx.account_id, ctx.region, target.function_name, ref.qualifier,
                                  ctx.request_id, time.time(), payload=(args or b"{}").decode()))
        return {"Status": 202}

    # ------------------------------------------------------------------ internal API
    def enqueue(self, msg: EventMessage, delay_s: float = 0) -> str:
        """Durably queue one event for delivery (committed with fsync before returning)."""
        arn = self.ensure_queue(msg.account_id, msg.region, msg.function_name)
        body = msg.encode()
        if len(body) > INLINE_MAX and msg.payload is not None:
            ref = self._store_payload(msg.payload.encode())
            msg = dataclasses.replace(msg, payload=None, payload_ref=ref)
            body = msg.encode()
        try:       # group-committed with every concurrent write of the queue service (store/group_commit.py)
            [message_id] = self.queues.enqueue_batch(arn, [(body, max(0, min(900, int(delay_s))))],
                                                     sender_id=INTERNAL_ACCOUNT)
            if isinstance(message_id, SqsError):
                raise message_id
        except SqsError as e:
            log.error("could not queue event %s for %s: %s", msg.request_id, msg.function_name, e.message)
            raise ServiceException("The event could not be queued.") from None
        for notify in list(self._listeners):
            notify(arn)
        return message_id

    def on_enqueued(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    @staticmethod
    def queue_name(account_id: str, function_name: str) -> str:
        return queue_name(account_id, function_name)

    def ensure_queue(self, account_id: str, region: str, function_name: str) -> str:
        key = (account_id, region, function_name)
        arn = self._known.get(key)
        if arn is None:
            arn = self.queues.ensure_queue(INTERNAL_ACCOUNT, queue_name(account_id, function_name),
                                           dict(INTERNAL_QUEUE_ATTRS), region=region)
            with self._lock:
                self._known[key] = arn
            for notify in list(self._listeners):
                notify(arn)
        return arn

    def internal_queue_arns(self) -> list[str]:
        q = sqs_queues
        with self.db.read() as conn:
            rows = conn.execute(sa.select(q.c.region, q.c.name).where(
                q.c.account_id == INTERNAL_ACCOUNT, q.c.name.startswith(QUEUE_PREFIX))).all()
        return [f"arn:aws:sqs:{r.region}:{INTERNAL_ACCOUNT}:{r.name}" for r in rows]

    def load_payload(self, msg: EventMessage) -> bytes | None:
        """The event's payload; None if a referenced large payload is gone."""
        if msg.payload_ref is None:
            return (msg.payload or "{}").encode()
        with self.db.read() as conn:
            sealed = conn.execute(sa.select(event_payloads.c.payload_sealed)
                                  .where(event_payloads.c.id == msg.payload_ref)).scalar()
        if sealed is None:
            return None
        return self.keyring.open(sealed, _payload_aad(msg.payload_ref))

    def drop_payload(self, msg: EventMessage) -> None:
        if msg.payload_ref is not None:
            self.drop_payloads([msg.payload_ref])

    def drop_payloads(self, refs: list[str]) -> None:
        """Delete large payloads whose messages were acked (one transaction)."""
        if refs:
            with self.db.begin() as conn:
                conn.execute(sa.delete(event_payloads).where(event_payloads.c.id.in_(list(refs))))

    def collect_orphans(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - PAYLOAD_GC_AGE_S
        with self.db.begin() as conn:
            return conn.execute(sa.delete(event_payloads).where(event_payloads.c.created_at < cutoff)).rowcount

    # ------------------------------------------------------------------ internals
    def _store_payload(self, data: bytes) -> str:
        pid = str(uuid.uuid4())
        sealed = self.keyring.seal(data, _payload_aad(pid))
        with durable_write(self.db) as conn:
            conn.execute(sa.insert(event_payloads).values(id=pid, payload_sealed=sealed, created_at=time.time()))
        return pid


def queue_name(account_id: str, function_name: str) -> str:
    """The internal queue of one function's events. SQS names hold 80 characters: a name that does not
    fit keeps a readable head and a hash of the whole name."""
    name = f"{QUEUE_PREFIX}{account_id}-{function_name}"
    if len(name) <= MAX_QUEUE_NAME:
        return name
    digest = hashlib.sha256(function_name.encode()).hexdigest()[:24]
    head = function_name[:MAX_QUEUE_NAME - len(QUEUE_PREFIX) - len(account_id) - 2 - len(digest)]
    return f"{QUEUE_PREFIX}{account_id}-{head}_{digest}"


def account_of_queue(name: str) -> str:
    """The user account an internal queue's events belong to (both the per-function and the former
    per-account names start with it)."""
    return name[len(QUEUE_PREFIX):len(QUEUE_PREFIX) + 12]


def _payload_aad(pid: str) -> bytes:
    return f"lambdalet/event-payload/v1|{pid}".encode()
