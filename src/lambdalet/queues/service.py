"""The SQS-compatible queue service: one method per SQS operation (`snake_case(Operation)(ctx, params)`)
plus an internal Python API for the platform's own producers and pollers (`enqueue`, `claim`, `ack`,
`nack`, `ensure_queue`).

Guarantees
- At-least-once: SendMessage answers only after the message is committed with fsync (see
  `storage.durable_write`); a received message comes back after its visibility timeout unless deleted.
  DeleteMessage and ChangeMessageVisibility are fsync'd before their answer too. Concurrent sends,
  receives, deletes and visibility changes share transactions (`store.group_commit`, `self.commits`):
  one writer turn and one fsync for a batch of callers, each answered once the batch has committed.
- Confidentiality at rest: body and attributes are keyring envelopes, AAD = queue id + message id +
  part, so a sealed body cannot be replayed into another queue or message. MD5s are computed on
  the way out, never stored.
- Receipt handles are HMAC-SHA256 (key `derive_key("sqs-receipt")`) over queue id, message id and
  receive count: unforgeable, and stale after the message is received again (a stale DeleteMessage
  succeeds without deleting, as in SQS, so a slow consumer cannot delete another's delivery).
- Redrive: a receivable message already received maxReceiveCount times is moved to the dead-letter
  queue (re-sealed for it) in the same transaction that would have delivered it.
- FIFO queues: group ordering, deduplication and sequence numbers live in queues/fifo.py; this module
  calls into it where a FIFO queue differs (name and attributes, send, claim, redrive).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues import policy as queue_policy
from lambdalet.queues.longpoll import LongPoll
from lambdalet.queues.longpoll import settle as settle_long_poll
from lambdalet.queues.storage import QueueSignals, claim_messages, durable_write, next_visible_at
from lambdalet.queues.tables import sqs_messages, sqs_queues
from lambdalet.store.group_commit import GroupCommit

# ---- limits and attribute tables (as SQS documents them) ----
MAX_MESSAGE_SIZE = 262_144
MAX_BATCH = 10
MAX_CLAIM = 100          # internal pollers (claim) may take more per transaction than ReceiveMessage's 10
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43_200
MAX_TAGS = 50
PURGE_INTERVAL_S = 60.0
RETENTION_SWEEP_S = 60.0

_INT_ATTRS: dict[str, tuple[int, int, int]] = {        # name: (min, max, default)
    "DelaySeconds": (0, 900, 0),
    "MaximumMessageSize": (1024, MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE),
    "MessageRetentionPeriod": (60, 1_209_600, 345_600),
    "ReceiveMessageWaitTimeSeconds": (0, MAX_WAIT_S, 0),
    "VisibilityTimeout": (0, MAX_VISIBILITY_S, 30),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400, 300),
}
_STR_ATTRS = {"Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "SqsManagedSseEnabled"}
_FIFO_ATTRS = {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
_READ_ONLY = {"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
              "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp"}
_ALL_ATTRS = set(_INT_ATTRS) | _STR_ATTRS | _FIFO_ATTRS | _READ_ONLY
_DEFAULT_SHOWN = ["VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds",
                  "ReceiveMessageWaitTimeSeconds"]
_SYSTEM_ATTRS = {"SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                 "AWSTraceHeader", "DeadLetterQueueSourceArn", "SequenceNumber", "MessageDeduplicationId",
                 "MessageGroupId"}

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ATTR_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\.[^\s]{1,250})?$")
_INVALID_CHARS = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")
_RECEIPT_VERSION = 1
_RECEIPT_LEN = 1 + 16 + 16 + 4 + 32


@dataclass(frozen=True)
class Queue:
    id: str
    account_id: str
    region: str
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created_at: float
    modified_at: float
    purged_at: float | None

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.name}"

    def int_attr(self, name: str) -> int:
        return int(self.attributes.get(name, _INT_ATTRS[name][2]))

    @property
    def is_fifo(self) -> bool:
        return fifo.is_fifo(self.attributes)

    @property
    def redrive(self) -> tuple[str, int] | None:
        raw = self.attributes.get("RedrivePolicy")
        if not raw:
            return None
        doc = json.loads(raw)
        return doc["deadLetterTargetArn"], int(doc["maxReceiveCount"])


@dataclass
class Message:
    """A message handed to an internal poller by `QueueService.claim`."""
    message_id: str
    receipt: str
    body: bytes
    attributes: dict[str, dict]            # SQS MessageAttributes shape (BinaryValue as bytes)
    system_attributes: dict[str, str]      # SenderId, SentTimestamp, ApproximateReceiveCount, ...
    receive_count: int
    sent_at: float
    first_received_at: float | None
    queue_arn: str
    dlq_source_arn: str | None = None


@dataclass
class _Outgoing:
    """A validated message ready to be sealed and inserted."""
    body: bytes
    attrs: dict[str, dict]
    sys_attrs: dict[str, dict]
    delay: int
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    fifo: "fifo.FifoSend | None" = None
    sequence: int | None = None            # FIFO: set in the send transaction (the original's, for a duplicate)
    trace: str = ""                        # the request's X-Amzn-Trace-Id: AWSTraceHeader unless one was given


# ---- small helpers ----

def _now() -> float:
    return time.time()


def _aad(queue_id: str, message_id: str, part: str) -> bytes:
    return f"lambdalet/sqs/v1|{queue_id}|{message_id}|{part}".encode()


def _bad(msg: str) -> E.SqsError:
    return E.InvalidParameterValue(msg)


def _int_param(params: dict, name: str, lo: int, hi: int, reason: str | None = None) -> int | None:
    if name not in params:
        return None
    v = params[name]
    if not lo <= v <= hi:
        raise _bad(f"Value {v} for parameter {name} is invalid. Reason: "
                   + (reason or f"Must be between {lo} and {hi}, if provided."))
    return v


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_of_attributes(attrs: dict[str, dict]) -> str:
    """SQS's MD5OfMessageAttributes: per attribute, sorted by name: len+name, len+type, transport
    byte (1 string/number, 2 binary), len+value; lengths are 4-byte big-endian."""
    buf = bytearray()
    for name in sorted(attrs):
        a = attrs[name]
        dtype = a["DataType"]
        for part in (name.encode(), dtype.encode()):
            buf += struct.pack(">I", len(part)) + part
        if dtype.startswith("Binary"):
            value = a["BinaryValue"]
            buf += b"\x02"
        else:
            value = a["StringValue"].encode()
            buf += b"\x01"
        buf += struct.pack(">I", len(value)) + value
    return _md5(bytes(buf))


def _attr_size(attrs: dict[str, dict]) -> int:
    size = 0
    for name, a in attrs.items():
        value = a.get("BinaryValue") if a["DataType"].startswith("Binary") else a["StringValue"].encode()
        size += len(name.encode()) + len(a["DataType"].encode()) + len(value)
    return size


def _pack_attrs(attrs: dict[str, dict], sys_attrs: dict[str, dict], fifo_send: "fifo.FifoSend | None" = None) -> bytes:
    def enc(d):
        return {n: {k: (base64.b64encode(v).decode() if k == "BinaryValue" else v) for k, v in a.items()}
                for n, a in d.items()}
    doc: dict[str, Any] = {"a": enc(attrs), "s": enc(sys_attrs)}
    if fifo_send is not None:          # the group and deduplication ids travel sealed, like the attributes
        doc["f"] = {"g": fifo_send.group_id, "d": fifo_send.dedup_id}
    return json.dumps(doc, separators=(",", ":")).encode()


def _unpack_attrs(raw: bytes) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    doc = json.loads(raw)

    def dec(d):
        return {n: {k: (base64.b64decode(v) if k == "BinaryValue" else v) for k, v in a.items()}
                for n, a in d.items()}
    return dec(doc.get("a", {})), dec(doc.get("s", {})), doc.get("f", {})


def _want_attr(name: str, selectors: list[str]) -> bool:
    for s in selectors:
        if s in ("All", ".*") or s == name or (s.endswith(".*") and name.startswith(s[:-1])):
            return True
    return False


def _batch_ids(entries: list[dict]) -> None:
    if not entries:
        raise E.EmptyBatchRequest("There should be at least one entry in the request.")
    if len(entries) > MAX_BATCH:
        raise E.TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.")
    seen = set()
    for e in entries:
        eid = e.get("Id", "")
        if not _BATCH_ID.match(eid):
            raise E.InvalidBatchEntryId("A batch entry id can only contain alphanumeric characters, hyphens and "
                                        "underscores. It can be at most 80 letters long.")
        if eid in seen:
            raise E.BatchEntryIdsNotDistinct(f"Id {eid} repeated.")
        seen.add(eid)


def _failure(entry_id: str, err: E.SqsError) -> dict:
    return {"Id": entry_id, "SenderFault": err.sender_fault, "Code": err.query_code, "Message": err.message}


class QueueService:
    def __init__(self, db, keyring, settings):
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.region = getattr(settings, "region", "us-east-1")
        self._receipt_key = keyring.derive_key("sqs-receipt")
        self._token_key = keyring.derive_key("sqs-next-token")
        self._fifo_keys = fifo.FifoKeys(keyring.derive_key("sqs-fifo-ids"))
        self._fifo_ids: set[str] = set()     # FIFO queues seen: a delete there may free a group (wake pollers)
        self.signals = QueueSignals()
        self._last_sweep: dict[str, float] = {}
        # Internal producers/pollers look their queue up per batch; the row changes only through this
        # service (one server per data dir), which bumps the generation after DeleteQueue and
        # SetQueueAttributes. The write transactions re-check that the queue still exists.
        self._by_arn: dict[str, tuple[int, Queue]] = {}
        self._queues_generation = 0
        self.commits = GroupCommit(self._transaction)

    def _transaction(self, durable: bool):
        return durable_write(self.db) if durable else self.db.begin()

    # ================================================================ queues

    def create_queue(self, ctx: RequestContext, params: dict) -> dict:
        name = params["QueueName"]
        is_fifo = fifo.wants_fifo(params.get("Attributes") or {})
        self._check_queue_name(name, is_fifo)
        attrs = self._validate_attributes(ctx.account_id, ctx.region, params.get("Attributes") or {}, creating=True,
                                          fifo_queue=is_fifo)
        tags = params.get("tags") or {}
        self._check_tags(tags)
        queue = self._create(ctx.account_id, ctx.region, name, attrs, tags)
        self._queues_generation += 1     # a cached "no policy" for this name is stale now
        return {"QueueUrl": self._url(ctx, queue)}

    def get_queue_url(self, ctx: RequestContext, params: dict) -> dict:
        owner = params.get("QueueOwnerAWSAccountId") or ctx.account_id
        if owner != ctx.account_id:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        queue = self._get(ctx.account_id, ctx.region, params["QueueName"])
        return {"QueueUrl": self._url(ctx, queue)}

    def list_queues(self, ctx: RequestContext, params: dict) -> dict:
        prefix = params.get("QueueNamePrefix") or ""
        max_results = _int_param(params, "MaxResults", 1, 1000,
                                 "Value must be between 1 and 1000, if provided.")
        after = None
        if params.get("NextToken"):
            after = self._read_token(params["NextToken"], ctx)
        q = sqs_queues
        stmt = (sa.select(q.c.name).where(q.c.account_id == ctx.account_id, q.c.region == ctx.region)
                .order_by(q.c.name).limit((max_results or 1000) + 1))
        if prefix:
            stmt = stmt.where(q.c.name.startswith(prefix, autoescape=True))
        if after is not None:
            stmt = stmt.where(q.c.name > after)
        with self.db.read() as conn:
            names = list(conn.execute(stmt).scalars())
        out: dict[str, Any] = {}
        page = names[:max_results or 1000]
        if page:
            out["QueueUrls"] = [f"{ctx.base_url}/{ctx.account_id}/{n}" for n in page]
        if max_results and len(names) > max_results:
            out["NextToken"] = self._make_token(page[-1], ctx)
        return out

    def delete_queue(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        with self.db.begin() as conn:
            conn.execute(sa.delete(sqs_messages).where(sqs_messages.c.queue_id == queue.id))
            fifo.forget_queue(conn, queue.id)
            conn.execute(sa.delete(sqs_queues).where(sqs_queues.c.id == queue.id))
        self._queues_generation += 1
        self.signals.notify(queue.id)
        return {}

    def get_queue_attributes(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        names = params.get("AttributeNames") or []
        for n in names:
            if n != "All" and n not in _ALL_ATTRS:
                raise E.InvalidAttributeName(f"Unknown Attribute {n}.")
        if not names:
            return {}
        every = "All" in names
        wanted = set(_ALL_ATTRS) if every else set(names)
        out: dict[str, str] = {}
        if wanted & {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"}:
            out.update(self._counts(queue))
        out["QueueArn"] = queue.arn
        out["CreatedTimestamp"] = str(int(queue.created_at))
        out["LastModifiedTimestamp"] = str(int(queue.modified_at))
        for n in _DEFAULT_SHOWN:
            out[n] = str(queue.int_attr(n))
        out["SqsManagedSseEnabled"] = queue.attributes.get("SqsManagedSseEnabled", "true")
        for n, v in queue.attributes.items():
            if n not in out:
                out[n] = v
        return {"Attributes": {k: v for k, v in out.items() if k in wanted}}

    def set_queue_attributes(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        attrs = self._validate_attributes(ctx.account_id, ctx.region, params.get("Attributes") or {},
                                          creating=False, self_arn=queue.arn, fifo_queue=queue.is_fifo)
        merged = dict(queue.attributes)
        for k, v in attrs.items():
            if v == "" and k in ("RedrivePolicy", "Policy", "RedriveAllowPolicy", "KmsMasterKeyId"):
                merged.pop(k, None)
            else:
                merged[k] = v
        with self.db.begin() as conn:
            res = conn.execute(sa.update(sqs_queues).where(sqs_queues.c.id == queue.id)
                               .values(attributes=json.dumps(merged, sort_keys=True), modified_at=_now()))
            if res.rowcount == 0:
                raise E.QueueDoesNotExist("The specified queue does not exist.")
        self._queues_generation += 1
        return {}

    def purge_queue(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        now = _now()
        with self.db.begin() as conn:
            purged_at = conn.execute(sa.select(sqs_queues.c.purged_at).where(sqs_queues.c.id == queue.id)).scalar()
            if purged_at is not None and now - purged_at < PURGE_INTERVAL_S:
                raise E.PurgeQueueInProgress(
                    f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.")
            conn.execute(sa.delete(sqs_messages).where(sqs_messages.c.queue_id == queue.id,
                                                       sqs_messages.c.sent_at <= now))
            conn.execute(sa.update(sqs_queues).where(sqs_queues.c.id == queue.id).values(purged_at=now))
        return {}

    def tag_queue(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        new = params.get("Tags") or {}
        self._check_tags(new)
        tags = {**queue.tags, **new}
        if len(tags) > MAX_TAGS:
            raise _bad(f"Too many tags added for queue {queue.name}.")
        self._save_tags(queue, tags)
        return {}

    def untag_queue(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        tags = {k: v for k, v in queue.tags.items() if k not in set(params.get("TagKeys") or [])}
        self._save_tags(queue, tags)
        return {}

    def list_queue_tags(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        return {"Tags": dict(queue.tags)} if queue.tags else {}

    def list_dead_letter_source_queues(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        max_results = _int_param(params, "MaxResults", 1, 1000, "Value must be between 1 and 1000, if provided.")
        after = self._read_token(params["NextToken"], ctx) if params.get("NextToken") else None
        q = sqs_queues
        with self.db.read() as conn:
            rows = conn.execute(sa.select(q.c.name, q.c.attributes)
                                .where(q.c.account_id == ctx.account_id, q.c.region == ctx.region)
                                .order_by(q.c.name)).all()
        names = []
        for name, raw in rows:
            rp = json.loads(raw).get("RedrivePolicy")
            if rp and json.loads(rp).get("deadLetterTargetArn") == queue.arn and (after is None or name > after):
                names.append(name)
        limit = max_results or 1000
        out: dict[str, Any] = {"queueUrls": [f"{ctx.base_url}/{ctx.account_id}/{n}" for n in names[:limit]]}
        if max_results and len(names) > limit:
            out["NextToken"] = self._make_token(names[limit - 1], ctx)
        return out

    # ================================================================ messages

    def send_message(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        out = self._prepare(queue, params)
        out.trace = ctx.trace_header
        self._insert(queue, [out], sender_id=self._sender(ctx))
        return self._send_result(out)

    def send_message_batch(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        entries = params.get("Entries") or []
        _batch_ids(entries)
        total = 0
        for e in entries:
            body = e.get("MessageBody", "")
            total += len(body.encode("utf-8", "surrogatepass"))
            try:
                total += _attr_size(e.get("MessageAttributes") or {})
            except (KeyError, AttributeError):
                pass
        limit = queue.int_attr("MaximumMessageSize")
        if total > limit:
            raise E.BatchRequestTooLong(f"Batch requests cannot be longer than {limit} bytes. "
                                        f"You have sent {total} bytes.")
        ok: list[tuple[str, _Outgoing]] = []
        failed = []
        for e in entries:
            try:
                ok.append((e["Id"], self._prepare(queue, e)))
            except E.SqsError as err:
                failed.append(_failure(e["Id"], err))
        if ok:
            for _, o in ok:
                o.trace = ctx.trace_header
            self._insert(queue, [o for _, o in ok], sender_id=self._sender(ctx))
        return {"Successful": [{"Id": eid, **self._send_result(o)} for eid, o in ok], "Failed": failed}

    def receive_message(self, ctx: RequestContext, params: dict) -> dict:
        """ReceiveMessage for a Python caller: a long poll waits in the calling thread."""
        return settle_long_poll(self.receive_message_deferrable(ctx, params))

    def receive_message_deferrable(self, ctx: RequestContext, params: dict) -> dict | LongPoll:
        """ReceiveMessage as the API runs it: a long poll that must wait answers a LongPoll, which the
        API awaits on its event loop instead of holding a worker thread (queues/longpoll.py)."""
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        n = _int_param(params, "MaxNumberOfMessages", 1, MAX_BATCH,
                       "Must be between 1 and 10, if provided.") or 1
        vis = _int_param(params, "VisibilityTimeout", 0, MAX_VISIBILITY_S,
                         f"Must be >= 0 and <= {MAX_VISIBILITY_S}, if provided.")
        wait = _int_param(params, "WaitTimeSeconds", 0, MAX_WAIT_S,
                          f"Must be >= 0 and <= {MAX_WAIT_S}, if provided.")
        if vis is None:
            vis = queue.int_attr("VisibilityTimeout")
        if wait is None:
            wait = queue.int_attr("ReceiveMessageWaitTimeSeconds")
        sys_names = list(params.get("AttributeNames") or []) + list(params.get("MessageSystemAttributeNames") or [])
        attr_names = list(params.get("MessageAttributeNames") or [])
        for a in attr_names:
            if not (a in ("All", ".*") or _ATTR_NAME.match(a.removesuffix(".*") or "x")):
                raise _bad(f"Value {a} for parameter MessageAttributeNames is invalid.")
        if queue.is_fifo and params.get("ReceiveRequestAttemptId"):
            fifo.check_id(params["ReceiveRequestAttemptId"], "ReceiveRequestAttemptId")   # accepted, not replayed

        def answer(messages: list[Message]) -> dict:
            return {"Messages": [self._wire_message(m, sys_names, attr_names) for m in messages]} if messages else {}
        return self._receive_or_wait(queue, n, vis, time.monotonic() + wait, answer)

    def delete_message(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        self._delete(queue.id, params["ReceiptHandle"], durable=True)
        return {}

    def delete_message_batch(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        entries = params.get("Entries") or []
        _batch_ids(entries)
        failed, valid = [], []
        for e in entries:
            try:
                valid.append((e["Id"], self._deletable(queue.id, e["ReceiptHandle"])))
            except E.SqsError as err:
                failed.append(_failure(e["Id"], err))
        # One work for the batch, not one per entry (issue 19.7).
        deleted = self._delete_many(queue.id, [mc for _, mc in valid], durable=True)
        ok = [{"Id": entry_id} for entry_id, _ in valid]
        if any(deleted) and queue.id in self._fifo_ids:
            self.signals.notify(queue.id)
        return {"Successful": ok, "Failed": failed}

    def change_message_visibility(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        self._change_visibility(queue.id, params["ReceiptHandle"], params["VisibilityTimeout"], require_inflight=True,
                                durable=True)
        return {}

    def change_message_visibility_batch(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"], cached=True)
        entries = params.get("Entries") or []
        _batch_ids(entries)
        ok, failed, valid = [], [], []
        for e in entries:
            try:
                valid.append((e["Id"], self._visibility_change(queue.id, e["ReceiptHandle"], e.get("VisibilityTimeout", 0),
                                                               require_inflight=True)))
            except E.SqsError as err:
                failed.append(_failure(e["Id"], err))
        results = self._change_visibility_many(queue.id, [c for _, c in valid], durable=True)   # one work
        for (entry_id, _), res in zip(valid, results, strict=True):
            if isinstance(res, E.SqsError):
                failed.append(_failure(entry_id, res))
            else:
                ok.append({"Id": entry_id})
        return {"Successful": ok, "Failed": failed}

    # Modelled operations lambdalet does not implement: a 400 (clients must not retry), never a 500.
    def _unsupported(self, op: str) -> E.SqsError:
        return E.UnsupportedOperation(f"lambdalet does not implement {op} yet.")

    def add_permission(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        doc = queue_policy.add_permission(queue.attributes.get("Policy"), queue.arn, params["Label"],
                                          params["AWSAccountIds"], params["Actions"])
        return self.set_queue_attributes(ctx, {"QueueUrl": params["QueueUrl"], "Attributes": {"Policy": doc}})

    def remove_permission(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        doc = queue_policy.remove_permission(queue.attributes.get("Policy"), params["Label"])
        return self.set_queue_attributes(ctx, {"QueueUrl": params["QueueUrl"], "Attributes": {"Policy": doc}})

    @property
    def generation(self) -> int:
        """Moves after every write that changes a queue's attributes or existence (request_map caches
        queue policies against it)."""
        return self._queues_generation

    def start_message_move_task(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("StartMessageMoveTask")

    def cancel_message_move_task(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("CancelMessageMoveTask")

    def list_message_move_tasks(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("ListMessageMoveTasks")

    # ================================================================ internal API (platform pollers)

    def ensure_queue(self, account: str, name: str, attributes: dict[str, str] | None = None, *,
                     region: str | None = None) -> str:
        """Create the queue if it does not exist (attributes apply only when creating); its ARN."""
        region = region or self.region
        is_fifo = fifo.wants_fifo(attributes or {})
        self._check_queue_name(name, is_fifo)
        try:
            return self._get(account, region, name).arn
        except E.QueueDoesNotExist:
            pass
        attrs = self._validate_attributes(account, region, attributes or {}, creating=True, fifo_queue=is_fifo)
        try:
            return self._create(account, region, name, attrs, {}).arn
        except E.QueueNameExists:
            return self._get(account, region, name).arn

    def queue_arn(self, account: str, name: str, *, region: str | None = None) -> str:
        return self._get(account, region or self.region, name).arn

    def enqueue(self, account: str, queue_name: str, body: bytes, attributes: dict[str, dict] | None = None, *,
                delay_s: int | None = None, region: str | None = None, sender_id: str = "") -> str:
        """Durably add a message (committed with fsync before returning); its MessageId.
        `attributes` use SQS's MessageAttributes shape ({"DataType": "String", "StringValue": ...})."""
        queue = self._get(account, region or self.region, queue_name)
        if isinstance(body, str):
            body = body.encode()
        attrs = attributes or {}
        self._check_message_attributes(attrs)
        size = len(body) + _attr_size(attrs)
        if size > queue.int_attr("MaximumMessageSize"):
            raise _bad(f"One or more parameters are invalid. Reason: Message must be shorter than "
                       f"{queue.int_attr('MaximumMessageSize')} bytes.")
        delay = queue.int_attr("DelaySeconds") if delay_s is None else max(0, int(delay_s))
        out = _Outgoing(body, attrs, {}, delay)
        self._insert(queue, [out], sender_id=sender_id or account)
        return out.message_id

    def enqueue_batch(self, queue_arn: str, entries: list[tuple[bytes | str, int]], *,
                      sender_id: str = "") -> list["str | E.SqsError"]:
        """Durably add many messages (body, delay_s) to one queue in ONE fsynced transaction: the
        internal producers' group commit, not bound by SendMessageBatch's 10 entries. Per entry its
        MessageId, or the SqsError that refused it (the others are committed)."""
        queue = self._cached_from_arn(queue_arn)
        limit = queue.int_attr("MaximumMessageSize")
        outs: list[_Outgoing] = []
        results: list[str | E.SqsError] = []
        for body, delay in entries:
            raw = body.encode() if isinstance(body, str) else body
            if len(raw) > limit:
                results.append(_bad(f"One or more parameters are invalid. Reason: Message must be shorter than "
                                    f"{limit} bytes."))
                continue
            out = _Outgoing(raw, {}, {}, max(0, min(900, int(delay))))
            outs.append(out)
            results.append(out.message_id)
        if outs:
            self._insert(queue, outs, sender_id=sender_id or queue.account_id)
        return results

    def claim(self, queue_arn: str, max_n: int, visibility_s: int, wait_s: float = 0) -> list[Message]:
        """Receive up to max_n (at most MAX_CLAIM) messages in one transaction (redrive applies),
        hidden for visibility_s seconds."""
        queue = self._cached_from_arn(queue_arn)
        return self._receive(queue, max(1, min(int(max_n), MAX_CLAIM)),
                             max(0, min(int(visibility_s), MAX_VISIBILITY_S)), max(0.0, min(wait_s, MAX_WAIT_S)))

    def ack(self, receipt: str) -> bool:
        """Delete a claimed message. False if the receipt was stale or the message already gone."""
        queue_id, _, _ = self._open_receipt(receipt)
        return self._delete(queue_id, receipt, durable=False)      # a lost ack: a redelivery

    def settle(self, acks: Iterable[str] = (), nacks: Iterable[tuple[str, float]] = ()) -> int:
        """Delete (ack) and give back (nack: receivable again after delay_s) many claimed messages in
        ONE transaction, not fsynced (a lost ack means a redelivery, never a loss). Stale or invalid
        receipts are skipped, as a stale DeleteMessage is. Returns how many messages were deleted."""
        dels, vis, woken = [], [], set()
        now = _now()
        for receipt in acks:
            try:
                qid, mid, count = self._open_receipt(receipt)
            except E.SqsError:
                continue
            dels.append({"q": qid, "mid": mid, "cnt": count})
            if qid in self._fifo_ids:
                woken.add(qid)                   # a FIFO group may be free now
        for receipt, delay_s in nacks:
            try:
                qid, mid, count = self._open_receipt(receipt)
            except E.SqsError:
                continue
            delay = max(0, min(int(delay_s), MAX_VISIBILITY_S))
            vis.append({"q": qid, "mid": mid, "cnt": count, "at": now + delay})
            if delay == 0:
                woken.add(qid)
        if not dels and not vis:
            return 0
        m = sqs_messages
        match = sa.and_(m.c.id == sa.bindparam("mid"), m.c.queue_id == sa.bindparam("q"),
                        m.c.receive_count == sa.bindparam("cnt"))
        deleted = 0
        with self.db.begin() as conn:
            if dels:
                deleted = conn.execute(sa.delete(m).where(match), dels).rowcount or 0
            if vis:
                conn.execute(sa.update(m).where(match).values(visible_at=sa.bindparam("at")), vis)
        for qid in woken:
            self.signals.notify(qid)
        return deleted

    def nack(self, receipt: str, delay_s: float = 0) -> None:
        """Give a claimed message back: receivable again after delay_s seconds."""
        queue_id, _, _ = self._open_receipt(receipt)
        self._change_visibility(queue_id, receipt, max(0, min(int(delay_s), MAX_VISIBILITY_S)),
                                require_inflight=False, durable=False)    # a lost nack: an earlier redelivery

    # ================================================================ internals: queues

    def _check_queue_name(self, name: str, is_fifo: bool = False) -> None:
        fifo.check_name(name, is_fifo)
        if not is_fifo and not _QUEUE_NAME.match(name):
            raise _bad(fifo.NAME_MESSAGE)

    def _check_tags(self, tags: dict[str, str]) -> None:
        if len(tags) > MAX_TAGS:
            raise _bad(f"Too many tags: at most {MAX_TAGS} are allowed.")
        for k, v in tags.items():
            if not 1 <= len(k) <= 128 or len(v) > 256 or k.lower().startswith("aws:"):
                raise _bad(f"Tag key {k[:128]!r} or its value is invalid.")

    def _validate_attributes(self, account: str, region: str, attrs: dict[str, str], *, creating: bool,
                             self_arn: str | None = None, fifo_queue: bool = False) -> dict[str, str]:
        out = dict(fifo.DEFAULTS) if (creating and fifo_queue) else {}
        for name, value in attrs.items():
            if name in _READ_ONLY or name not in _ALL_ATTRS:
                raise E.InvalidAttributeName(f"Unknown Attribute {name}.")
            if name in _FIFO_ATTRS:
                if name == "FifoQueue" and value.strip().lower() == "false" and not fifo_queue:
                    continue               # a standard queue saying so: nothing to store
                out[name] = fifo.attribute(name, value, fifo=fifo_queue)
            elif name in _INT_ATTRS:
                lo, hi, _ = _INT_ATTRS[name]
                try:
                    n = int(value.strip())
                except ValueError:
                    n = None
                if n is None or not lo <= n <= hi:
                    raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}.")
                out[name] = str(n)
            elif name == "RedrivePolicy":
                out[name] = self._check_redrive(account, region, value, self_arn, fifo_queue) if value else ""
            elif name == "SqsManagedSseEnabled":
                if value.lower() not in ("true", "false"):
                    raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}.")
                out[name] = value.lower()
            elif name in ("Policy", "RedriveAllowPolicy") and value:
                try:
                    if not isinstance(json.loads(value), dict):
                        raise ValueError
                except ValueError:
                    raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}.") from None
                out[name] = queue_policy.check(value) if name == "Policy" else value
            else:
                out[name] = value
        if creating:
            out = {k: v for k, v in out.items() if v != ""}
        return out

    def _check_redrive(self, account: str, region: str, value: str, self_arn: str | None,
                       source_fifo: bool = False) -> str:
        reason = None
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            reason = "Redrive policy is not a valid JSON map."
        else:
            target, count = doc.get("deadLetterTargetArn"), doc.get("maxReceiveCount")
            try:
                count = int(count)
            except (TypeError, ValueError):
                count = None
            m = _ARN.match(target) if isinstance(target, str) else None
            extra = set(doc) - {"deadLetterTargetArn", "maxReceiveCount"}
            if extra:
                reason = f"Redrive policy contains an unknown attribute {sorted(extra)[0]}."
            elif count is None or not 1 <= count <= 1000:
                reason = "Invalid value for maxReceiveCount: must be between 1 and 1000."
            elif m is None:
                reason = "Invalid value for deadLetterTargetArn."
            elif target == self_arn:
                reason = "Dead-letter target cannot be the queue itself."
            else:
                t_region, t_account, t_name = m.groups()
                try:
                    if (t_region, t_account) != (region, account):
                        raise E.QueueDoesNotExist("")
                    target_queue = self._get(t_account, t_region, t_name)
                    reason = fifo.redrive_mismatch(source_fifo, target_queue.is_fifo)
                except E.QueueDoesNotExist:
                    reason = "Dead letter target does not exist."
        if reason:
            raise _bad(f"Value {value} for parameter RedrivePolicy is invalid. Reason: {reason}")
        return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count}, separators=(",", ":"))

    def _create(self, account: str, region: str, name: str, attrs: dict[str, str], tags: dict[str, str]) -> Queue:
        now = _now()
        q = sqs_queues
        try:
            with self.db.begin() as conn:
                row = conn.execute(sa.select(q).where(q.c.account_id == account, q.c.region == region,
                                                      q.c.name == name)).first()
                if row is None:
                    qid = str(uuid.uuid4())
                    conn.execute(sa.insert(q).values(id=qid, account_id=account, region=region, name=name,
                                                     attributes=json.dumps(attrs, sort_keys=True),
                                                     tags=json.dumps(tags, sort_keys=True),
                                                     created_at=now, modified_at=now, purged_at=None))
                    return Queue(qid, account, region, name, attrs, tags, now, now, None)
        except IntegrityError:   # created concurrently: compare with that one
            pass
        existing = self._get(account, region, name)
        for k, v in attrs.items():
            current = existing.attributes.get(k)
            if current is None and k in _INT_ATTRS:
                current = str(_INT_ATTRS[k][2])
            if current is None and k == "SqsManagedSseEnabled":
                current = "true"
            if current != v:
                raise E.QueueNameExists(f"A queue already exists with the same name and a different value for "
                                        f"attribute {k}")
        return existing

    def _row_to_queue(self, row) -> Queue:
        queue = Queue(row.id, row.account_id, row.region, row.name, json.loads(row.attributes),
                      json.loads(row.tags or "{}"), row.created_at, row.modified_at, row.purged_at)
        if queue.is_fifo:
            self._fifo_ids.add(queue.id)
        return queue

    def _get(self, account: str, region: str, name: str) -> Queue:
        q = sqs_queues
        with self.db.read() as conn:
            row = conn.execute(sa.select(q).where(q.c.account_id == account, q.c.region == region,
                                                  q.c.name == name)).first()
        if row is None:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        return self._row_to_queue(row)

    def _by_id(self, conn, queue_id: str) -> Queue | None:
        row = conn.execute(sa.select(sqs_queues).where(sqs_queues.c.id == queue_id)).first()
        return self._row_to_queue(row) if row else None

    def _from_url(self, ctx: RequestContext, url: str, *, cached: bool = False) -> Queue:
        """`{base_url}/{account}/{name}`; the host part is not checked (clients reach us by many names).
        cached: the message operations' lookup (no read per message; see `_cached_from_arn`)."""
        parts = [unquote(p) for p in urlsplit(url).path.split("/") if p] if "://" in url else \
            [p for p in url.split("/") if p]
        if len(parts) >= 2 and re.fullmatch(r"\d{12}", parts[-2]):
            account, name = parts[-2], parts[-1]
        elif len(parts) == 1:    # a bare queue name, as SQS also accepts
            account, name = ctx.account_id, parts[0]
        else:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        if account != ctx.account_id:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        if cached:
            return self._cached_from_arn(f"arn:aws:sqs:{ctx.region}:{account}:{name}")
        return self._get(account, ctx.region, name)

    def _cached_from_arn(self, arn: str) -> Queue:
        """The queue row, read again only after a write that changes a queue's attributes or existence
        (they bump the generation after their commit). The write transactions re-check existence."""
        generation = self._queues_generation
        hit = self._by_arn.get(arn)
        if hit is not None and hit[0] == generation:
            return hit[1]
        queue = self._from_arn(arn)
        if len(self._by_arn) > 10_000:
            self._by_arn.clear()
        self._by_arn[arn] = (generation, queue)
        return queue

    def _from_arn(self, arn: str) -> Queue:
        m = _ARN.match(arn)
        if not m:
            raise E.QueueDoesNotExist(f"The specified queue does not exist: {arn}")
        region, account, name = m.groups()
        return self._get(account, region, name)

    def _url(self, ctx: RequestContext, queue: Queue) -> str:
        return f"{ctx.base_url}/{queue.account_id}/{queue.name}"

    def _save_tags(self, queue: Queue, tags: dict[str, str]) -> None:
        with self.db.begin() as conn:
            conn.execute(sa.update(sqs_queues).where(sqs_queues.c.id == queue.id)
                         .values(tags=json.dumps(tags, sort_keys=True)))

    def _counts(self, queue: Queue) -> dict[str, str]:
        m = sqs_messages
        now = _now()
        cutoff = now - queue.int_attr("MessageRetentionPeriod")
        hidden = m.c.visible_at > now
        stmt = sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((~hidden, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(hidden, m.c.receive_count > 0), 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(hidden, m.c.receive_count == 0), 1), else_=0)), 0),
        ).where(m.c.queue_id == queue.id, m.c.sent_at > cutoff)
        with self.db.read() as conn:
            visible, inflight, delayed = conn.execute(stmt).one()
        return {"ApproximateNumberOfMessages": str(int(visible)),
                "ApproximateNumberOfMessagesNotVisible": str(int(inflight)),
                "ApproximateNumberOfMessagesDelayed": str(int(delayed))}

    def _make_token(self, last: str, ctx: RequestContext) -> str:
        raw = json.dumps({"a": ctx.account_id, "r": ctx.region, "n": last}, separators=(",", ":")).encode()
        mac = hmac.new(self._token_key, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + raw).decode()

    def _read_token(self, token: str, ctx: RequestContext) -> str:
        try:
            blob = base64.urlsafe_b64decode(token.encode())
            mac, raw = blob[:16], blob[16:]
            if not hmac.compare_digest(mac, hmac.new(self._token_key, raw, hashlib.sha256).digest()[:16]):
                raise ValueError
            doc = json.loads(raw)
            if doc["a"] != ctx.account_id or doc["r"] != ctx.region:
                raise ValueError
            return str(doc["n"])
        except (ValueError, KeyError, TypeError):
            raise _bad("Invalid NextToken value.") from None

    # ================================================================ internals: sending

    def _sender(self, ctx: RequestContext) -> str:
        return ctx.caller.user_id or ctx.account_id

    def _check_message_attributes(self, attrs: dict[str, dict], *, system: bool = False) -> None:
        what = "message system attribute" if system else "message attribute"
        if len(attrs) > 10:
            raise _bad(f"Number of message attributes [{len(attrs)}] exceeds the allowed maximum [10].")
        for name, a in attrs.items():
            if system:
                if name != "AWSTraceHeader":
                    raise _bad(f"Message system attribute name '{name}' is invalid.")
            elif (not _ATTR_NAME.match(name) or name.startswith(".") or name.endswith(".") or ".." in name
                  or name.lower().startswith(("aws.", "amazon."))):
                raise _bad(f"Message ({what}) name '{name}' is invalid.")
            dtype = a.get("DataType")
            if not dtype:
                raise _bad(f"The {what} '{name}' must contain a non-empty attribute type.")
            if not _DATA_TYPE.match(dtype) or len(dtype) > 256:
                raise _bad(f"The type of {what} '{name}' is invalid. You must use only the following supported "
                           f"type prefixes: Binary, Number, String.")
            if a.get("StringListValues") or a.get("BinaryListValues"):
                raise _bad(f"The {what} '{name}' uses StringListValues/BinaryListValues, which are not supported.")
            if dtype.startswith("Binary"):
                if not a.get("BinaryValue") or "StringValue" in a:
                    raise _bad(f"The {what} '{name}' with type 'Binary' must use field 'BinaryValue'.")
            else:
                value = a.get("StringValue")
                if not value or "BinaryValue" in a:
                    raise _bad(f"The {what} '{name}' with type '{dtype.split('.')[0]}' must use field "
                               f"'StringValue' with a non-empty value.")
                if _INVALID_CHARS.search(value):
                    raise E.InvalidMessageContents(f"The {what} '{name}' contains invalid characters.")
                if dtype.startswith("Number"):
                    try:
                        d = Decimal(value)
                        if not d.is_finite():
                            raise InvalidOperation
                    except InvalidOperation:
                        raise _bad(f"Can't cast the value of {what} '{name}' to a number.") from None
            if system and not dtype.startswith("String"):
                raise _bad("The AWSTraceHeader message system attribute must be of type String.")
        # Only the documented members may appear.
        for a in attrs.values():
            extra = set(a) - {"DataType", "StringValue", "BinaryValue", "StringListValues", "BinaryListValues"}
            if extra:
                raise _bad(f"Unknown field {sorted(extra)[0]} in a message attribute.")

    def _prepare(self, queue: Queue, p: dict) -> _Outgoing:
        body = p.get("MessageBody")
        if not body:
            raise E.MissingParameter("The request must contain the parameter MessageBody.")
        if _INVALID_CHARS.search(body):
            raise E.InvalidMessageContents("Invalid binary character was found in the message body, the set of "
                                           "allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to "
                                           "#xFFFD | #x10000 to #x10FFFF")
        fifo_send = None
        if queue.is_fifo:
            fifo_send = fifo.check_send(queue.attributes, p, body.encode("utf-8"))
        elif p.get("MessageDeduplicationId"):
            raise _bad(f"Value {p['MessageDeduplicationId'][:128]} for parameter MessageDeduplicationId is invalid. "
                       f"Reason: The request include parameter that is not valid for this queue type.")
        delay = _int_param(p, "DelaySeconds", 0, 900, "Must be >= 0 and <= 900, if provided.")
        if delay is None:
            delay = queue.int_attr("DelaySeconds")
        attrs = p.get("MessageAttributes") or {}
        sys_attrs = p.get("MessageSystemAttributes") or {}
        self._check_message_attributes(attrs)
        self._check_message_attributes(sys_attrs, system=True)
        raw = body.encode("utf-8")
        limit = queue.int_attr("MaximumMessageSize")
        if len(raw) + _attr_size(attrs) > limit:
            raise _bad(f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.")
        return _Outgoing(raw, attrs, sys_attrs, delay, fifo=fifo_send)

    def _send_result(self, out: _Outgoing) -> dict:
        res = {"MessageId": out.message_id, "MD5OfMessageBody": _md5(out.body)}
        if out.attrs:
            res["MD5OfMessageAttributes"] = md5_of_attributes(out.attrs)
        if out.sys_attrs:
            res["MD5OfMessageSystemAttributes"] = md5_of_attributes(out.sys_attrs)
        if out.sequence is not None:
            res["SequenceNumber"] = fifo.sequence_number(out.sequence)
        return res

    def _insert(self, queue: Queue, outs: list[_Outgoing], *, sender_id: str) -> None:
        now = _now()
        rows = []
        for o in outs:   # seal before taking the write lock
            # As SQS does: a sender's trace header (an AWS SDK inside a function sends its invocation's)
            # becomes AWSTraceHeader, which carries recursive loop detection's count (services/recursion.py).
            sys_attrs = o.sys_attrs if not o.trace or "AWSTraceHeader" in o.sys_attrs else \
                {**o.sys_attrs, "AWSTraceHeader": {"DataType": "String", "StringValue": o.trace}}
            rows.append(dict(
                id=o.message_id, queue_id=queue.id,
                body_sealed=self.keyring.seal(o.body, _aad(queue.id, o.message_id, "body")),
                attrs_sealed=(self.keyring.seal(_pack_attrs(o.attrs, sys_attrs, o.fifo),
                                                _aad(queue.id, o.message_id, "attrs"))
                              if (o.attrs or sys_attrs or o.fifo) else None),
                sender_id=sender_id[:128], sent_at=now, visible_at=now + o.delay, receive_count=0,
                first_received_at=None, dlq_source_arn=None))
        # Concurrent sends to a standard queue become one INSERT in a shared, fsync'd transaction; a FIFO
        # send keeps a work of its own (its deduplication and numbering fail or succeed as one request).
        key = ("send", queue.id, id(outs)) if queue.is_fifo else ("send", queue.id)
        self.commits.run(key, self._insert_rows, (queue, outs, rows, now), durable=True,
                         size=sum(len(o.body) for o in outs))
        self.signals.notify(queue.id)

    def _insert_rows(self, conn, works: list[tuple[Queue, list[_Outgoing], list[dict], float]]) -> list[None]:
        """Group-commit handler: the sends of one queue, in the shared transaction."""
        queue = works[0][0]
        if conn.execute(sa.select(sqs_queues.c.id).where(sqs_queues.c.id == queue.id)).first() is None:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        rows = [r for _, _, rs, _ in works for r in rs]
        if queue.is_fifo:      # duplicates dropped, the others numbered, all in this transaction
            [(_, outs, rows, now)] = works
            rows = fifo.admit(conn, queue.id, outs, rows, self._fifo_keys, now)
        if rows:
            conn.execute(sa.insert(sqs_messages), rows)
        return [None] * len(works)

    # ================================================================ internals: receiving

    def _receive(self, queue: Queue, n: int, vis: int, wait_s: float) -> list[Message]:
        return settle_long_poll(self._receive_or_wait(queue, n, vis, time.monotonic() + wait_s, list))

    def _receive_or_wait(self, queue: Queue, n: int, vis: int, deadline: float, answer):
        """One receive attempt -> answer(messages); if it found nothing and time is left, a LongPoll
        whose next attempt is this again (the caller decides where to wait: a thread or the loop)."""
        gen = self.signals.generation(queue.id)
        got, next_at = self._claim_once(queue.id, n, vis)
        if got or deadline - time.monotonic() <= 0:
            return answer(got)
        return LongPoll(self.signals, queue.id, gen, deadline, next_at,
                        lambda: self._receive_or_wait(queue, n, vis, deadline, answer))

    def _claim_once(self, queue_id: str, n: int, vis: int) -> tuple[list[Message], float | None]:
        # A work of its own in the shared transaction (not fsync'd: a lost claim is a redelivery).
        queue, claimed, moved_to, next_at, now = self.commits.run(("claim", object()), self._claim_rows,
                                                                  (queue_id, n, vis), durable=False)
        for qid in moved_to:
            self.signals.notify(qid)
        return [self._open_message(queue, r, count, now) for r, count in claimed], next_at

    def _claim_rows(self, conn, works: list[tuple[str, int, int]]) -> list[tuple]:
        """Group-commit handler: one receive's claim, in the shared transaction."""
        [(queue_id, n, vis)] = works
        now = _now()
        claimed: list[tuple[Any, int]] = []
        moved_to: set[str] = set()
        queue = self._by_id(conn, queue_id)
        if queue is None:
            raise E.QueueDoesNotExist("The specified queue does not exist.")
        retention = queue.int_attr("MessageRetentionPeriod")
        cutoff = now - retention
        if now - self._last_sweep.get(queue_id, 0.0) > RETENTION_SWEEP_S:
            self._last_sweep[queue_id] = now
            conn.execute(sa.delete(sqs_messages).where(sqs_messages.c.queue_id == queue_id,
                                                       sqs_messages.c.sent_at <= cutoff))
        redrive = queue.redrive
        dlq = None
        if redrive:
            m = _ARN.match(redrive[0])
            if m:
                row = conn.execute(sa.select(sqs_queues).where(
                    sqs_queues.c.region == m.group(1), sqs_queues.c.account_id == m.group(2),
                    sqs_queues.c.name == m.group(3))).first()
                dlq = self._row_to_queue(row) if row else None
        claim = fifo.claim_fifo_messages if queue.is_fifo else claim_messages
        for _ in range(100):     # bounded; another pass only to replace redriven rows
            rows = claim(conn, queue_id, now, n - len(claimed), retention_cutoff=cutoff,
                         exclude=[r.id for r, _ in claimed])
            moved = 0
            taken = []
            for r in rows:
                if dlq is not None and r.receive_count >= redrive[1]:
                    self._move_to_dlq(conn, queue, dlq, r, now)
                    moved_to.add(dlq.id)
                    moved += 1
                    continue
                taken.append(r)
                claimed.append((r, r.receive_count + 1))
            if taken:     # one statement for the whole claim
                m = sqs_messages
                conn.execute(sa.update(m).where(m.c.id.in_([r.id for r in taken])).values(
                    receive_count=m.c.receive_count + 1, visible_at=now + vis,
                    first_received_at=sa.func.coalesce(m.c.first_received_at, now)))
            if not moved or len(claimed) >= n:
                break
        next_at = None if claimed else next_visible_at(conn, queue_id, now)
        return [(queue, claimed, moved_to, next_at, now)]

    def _move_to_dlq(self, conn, source: Queue, dlq: Queue, r, now: float) -> None:
        body = self.keyring.open(r.body_sealed, _aad(source.id, r.id, "body"))
        attrs = self.keyring.open(r.attrs_sealed, _aad(source.id, r.id, "attrs")) if r.attrs_sealed else None
        # A FIFO message keeps its group and takes its place at the end of the (FIFO) dead-letter queue.
        in_order = r.group_key is not None and dlq.is_fifo
        conn.execute(sa.update(sqs_messages).where(sqs_messages.c.id == r.id).values(
            group_key=r.group_key if in_order else None,
            sequence=fifo.next_sequences(conn, dlq.id, 1) if in_order else None,
            queue_id=dlq.id,
            body_sealed=self.keyring.seal(body, _aad(dlq.id, r.id, "body")),
            attrs_sealed=self.keyring.seal(attrs, _aad(dlq.id, r.id, "attrs")) if attrs is not None else None,
            visible_at=now, receive_count=0, first_received_at=None, dlq_source_arn=source.arn))

    def _open_message(self, queue: Queue, r, count: int, now: float) -> Message:
        body = self.keyring.open(r.body_sealed, _aad(queue.id, r.id, "body"))
        attrs, sys_attrs, fifo_ids = ({}, {}, {})
        if r.attrs_sealed:
            attrs, sys_attrs, fifo_ids = _unpack_attrs(self.keyring.open(r.attrs_sealed,
                                                                         _aad(queue.id, r.id, "attrs")))
        first = r.first_received_at if r.first_received_at is not None else now
        system = {"SenderId": r.sender_id, "SentTimestamp": str(int(r.sent_at * 1000)),
                  "ApproximateReceiveCount": str(count), "ApproximateFirstReceiveTimestamp": str(int(first * 1000))}
        if "AWSTraceHeader" in sys_attrs:
            system["AWSTraceHeader"] = sys_attrs["AWSTraceHeader"]["StringValue"]
        if r.dlq_source_arn:
            system["DeadLetterQueueSourceArn"] = r.dlq_source_arn
        if fifo_ids and r.sequence is not None:
            system.update(MessageGroupId=fifo_ids["g"], MessageDeduplicationId=fifo_ids["d"],
                          SequenceNumber=fifo.sequence_number(r.sequence))
        return Message(r.id, self._make_receipt(queue.id, r.id, count), body, attrs, system, count, r.sent_at,
                       first, queue.arn, r.dlq_source_arn)

    def _wire_message(self, m: Message, sys_names: list[str], attr_names: list[str]) -> dict:
        out: dict[str, Any] = {"MessageId": m.message_id, "ReceiptHandle": m.receipt,
                               "MD5OfBody": _md5(m.body), "Body": m.body.decode("utf-8", "replace")}
        if sys_names:
            every = "All" in sys_names
            sys = {k: v for k, v in m.system_attributes.items() if every or k in sys_names}
            if sys:
                out["Attributes"] = sys
        if attr_names and m.attributes:
            chosen = {k: v for k, v in m.attributes.items() if _want_attr(k, attr_names)}
            if chosen:
                out["MessageAttributes"] = chosen
                out["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
        return out

    # ================================================================ internals: receipts

    def _make_receipt(self, queue_id: str, message_id: str, count: int) -> str:
        raw = (bytes([_RECEIPT_VERSION]) + uuid.UUID(queue_id).bytes + uuid.UUID(message_id).bytes
               + struct.pack(">I", count))
        mac = hmac.new(self._receipt_key, raw, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _open_receipt(self, receipt: str) -> tuple[str, str, int]:
        invalid = E.ReceiptHandleIsInvalid(f'The input receipt handle "{receipt[:200]}" is not a valid receipt handle.')
        try:
            blob = base64.urlsafe_b64decode(receipt.encode("ascii") + b"=" * (-len(receipt) % 4))
        except (ValueError, UnicodeEncodeError):
            raise invalid from None
        if len(blob) != _RECEIPT_LEN or blob[0] != _RECEIPT_VERSION:
            raise invalid
        raw, mac = blob[:-32], blob[-32:]
        if not hmac.compare_digest(mac, hmac.new(self._receipt_key, raw, hashlib.sha256).digest()):
            raise invalid
        queue_id = str(uuid.UUID(bytes=raw[1:17]))
        message_id = str(uuid.UUID(bytes=raw[17:33]))
        count = struct.unpack(">I", raw[33:37])[0]
        return queue_id, message_id, count

    def _deletable(self, queue_id: str, receipt: str) -> tuple[str, int]:
        """(message id, receive count) a receipt handle of this queue names, or ReceiptHandleIsInvalid."""
        rq, mid, count = self._open_receipt(receipt)
        if rq != queue_id:
            raise E.ReceiptHandleIsInvalid(f'The input receipt handle "{receipt[:200]}" is not a valid receipt handle.')
        return mid, count

    def _delete(self, queue_id: str, receipt: str, *, durable: bool) -> bool:
        [deleted] = self._delete_many(queue_id, [self._deletable(queue_id, receipt)], durable=durable)
        if deleted and queue_id in self._fifo_ids:
            self.signals.notify(queue_id)        # the message's group may be free now
        return deleted

    def _delete_many(self, queue_id: str, entries: list[tuple[str, int]], *, durable: bool) -> list[bool]:
        """Delete (message id, receive count) pairs of one queue in the shared transaction; per entry
        whether it deleted (False: a stale receipt, or already gone)."""
        if not entries:
            return []
        return self.commits.run(("delete",), _delete_rows, (queue_id, entries), durable=durable)

    def _visibility_change(self, queue_id: str, receipt: str, timeout: int, *,
                           require_inflight: bool) -> "_VisibilityChange":
        """Check one ChangeMessageVisibility entry before the transaction."""
        if not 0 <= timeout <= MAX_VISIBILITY_S:
            raise _bad(f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and "
                       f"{MAX_VISIBILITY_S}.")
        rq, mid, count = self._open_receipt(receipt)
        if rq != queue_id:
            raise E.ReceiptHandleIsInvalid(f'The input receipt handle "{receipt[:200]}" is not a valid receipt handle.')
        return _VisibilityChange(receipt, mid, count, timeout, require_inflight)

    def _change_visibility(self, queue_id: str, receipt: str, timeout: int, *, require_inflight: bool,
                           durable: bool) -> None:
        change = self._visibility_change(queue_id, receipt, timeout, require_inflight=require_inflight)
        [res] = self._change_visibility_many(queue_id, [change], durable=durable)
        if isinstance(res, E.SqsError):
            raise res

    def _change_visibility_many(self, queue_id: str, changes: list["_VisibilityChange"], *,
                                durable: bool) -> list["E.SqsError | None"]:
        """Apply checked visibility changes of one queue in the shared transaction; per change None or
        the error that refused it."""
        if not changes:
            return []
        results = self.commits.run(("visibility",), _change_visibility_rows, (queue_id, changes), durable=durable)
        if any(c.timeout == 0 and r is None for c, r in zip(changes, results)):
            self.signals.notify(queue_id)
        return results


@dataclass
class _VisibilityChange:
    receipt: str
    message_id: str
    count: int
    timeout: int
    require_inflight: bool


def _delete_rows(conn, works: list[tuple[str, list[tuple[str, int]]]]) -> list[list[bool]]:
    """Group-commit handler: the deletes of any queues, in the shared transaction."""
    m = sqs_messages
    out = []
    for queue_id, entries in works:
        out.append([conn.execute(sa.delete(m).where(m.c.id == mid, m.c.queue_id == queue_id,
                                                    m.c.receive_count == count)).rowcount > 0
                    for mid, count in entries])
    return out


def _change_visibility_rows(conn, works: list[tuple[str, list[_VisibilityChange]]]) -> list[list]:
    """Group-commit handler: visibility changes of any queues; per change None or its SqsError."""
    m = sqs_messages
    now = _now()
    out = []
    for queue_id, changes in works:
        results: list[E.SqsError | None] = []
        for c in changes:
            row = conn.execute(sa.select(m.c.receive_count, m.c.visible_at)
                               .where(m.c.id == c.message_id, m.c.queue_id == queue_id)).first()
            if row is None:
                results.append(_bad(f"Value {c.receipt[:200]} for parameter ReceiptHandle is invalid. Reason: Message "
                                    f"does not exist or is not available for visibility timeout change."))
            elif row.receive_count != c.count or (c.require_inflight and row.visible_at <= now):
                results.append(E.MessageNotInflight("The message referred to isn't in flight."))
            else:
                conn.execute(sa.update(m).where(m.c.id == c.message_id).values(visible_at=now + c.timeout))
                results.append(None)
        out.append(results)
    return out
