"""FIFO queues: what differs from a standard queue, kept out of the queue service's modules (queue_ops.py,
attributes.py, sending.py, receiving.py call in here).

As the SQS Developer Guide documents them:
- A FIFO queue's name ends in `.fifo` and it is created with FifoQueue=true (one without the other is
  refused with SQS's errors); ContentBasedDeduplication, DeduplicationScope and FifoThroughputLimit
  are stored and reported; the type never changes.
- Sends need a MessageGroupId, and a MessageDeduplicationId unless ContentBasedDeduplication (then the
  SHA-256 of the body). A duplicate within 5 minutes is accepted, not enqueued, and answered with the
  original MessageId and SequenceNumber. The window is rows in `sqs_fifo_dedup`, committed with the
  message (so it survives a restart) and purged once expired (so it stays bounded).
- Each message gets a SequenceNumber from the queue's counter (20 digits, increasing).
- Receives deliver a group's messages in order, never a message while an earlier one of its group is
  in flight, and fill a receive from one group before the next (as SQS does).

Privacy: group and deduplication ids are caller data; the tables hold only HMACs of them (the ids
themselves travel sealed with the message attributes), and equality is all the queries need.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from lambdalet.queues import errors as E
from lambdalet.queues.tables import sqs_fifo_dedup, sqs_messages, sqs_queues

DEDUP_WINDOW_S = 300
SEQUENCE_BASE = 10 ** 19          # SequenceNumber = base + counter: 20 digits and increasing
SCAN_CHUNK = 200                  # group heads looked at per query while filling a receive
NOT_IN_LIMIT = 500                # more blocked groups than this: filter in Python, not in SQL

DEFAULTS = {"FifoQueue": "true", "ContentBasedDeduplication": "false", "DeduplicationScope": "queue",
            "FifoThroughputLimit": "perQueue"}
ATTRIBUTES = frozenset(DEFAULTS)
_CHOICES = {"ContentBasedDeduplication": ("true", "false"), "DeduplicationScope": ("messageGroup", "queue"),
            "FifoThroughputLimit": ("perQueue", "perMessageGroupId")}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")      # .fifo counts towards the 80 characters
_ID = re.compile(r"^[!-~]{1,128}$")                      # alphanumeric and punctuation, 1-128
NAME_MESSAGE = "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
FIFO_NAME_MESSAGE = ("The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, "
                     "must end with .fifo suffix and be 1 to 80 in length.")


# ------------------------------------------------------------------ queues

def is_fifo(attributes: dict[str, str]) -> bool:
    return attributes.get("FifoQueue") == "true"


def wants_fifo(attributes: dict[str, str]) -> bool:
    """Whether CreateQueue's attributes ask for a FIFO queue (checked further by `attribute`)."""
    return str(attributes.get("FifoQueue", "")).lower() == "true"


def check_name(name: str, fifo: bool) -> None:
    if fifo and not _NAME.match(name):
        raise E.InvalidParameterValue(FIFO_NAME_MESSAGE)
    if not fifo and name.endswith(".fifo"):
        # SQS answers a `.fifo` name without FifoQueue=true as an invalid standard queue name.
        raise E.InvalidParameterValue(NAME_MESSAGE)


def attribute(name: str, value: str, *, fifo: bool) -> str:
    """A FIFO attribute's normalized value, or SQS's error (standard queues do not know them)."""
    if name == "FifoQueue":
        v = value.strip().lower()
        if v not in ("true", "false"):
            raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}.")
        if (v == "true") != fifo:
            raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}. Reason: Modifying queue type "
                                          f"is not supported.")
        return v
    if not fifo:
        raise E.InvalidAttributeName(f"Unknown Attribute {name}.")
    choices = _CHOICES[name]
    for c in choices:
        if value.strip().lower() == c.lower():
            return c
    raise E.InvalidAttributeValue(f"Invalid value for the parameter {name}.")


def redrive_mismatch(source_fifo: bool, target_fifo: bool) -> str | None:
    if source_fifo != target_fifo:
        return "Dead-letter queue must be same type of queue as the source."
    return None


# ------------------------------------------------------------------ sending

@dataclass
class FifoSend:
    group_id: str
    dedup_id: str
    scope: str                     # "" (DeduplicationScope=queue) or the group id (messageGroup)


def check_send(attributes: dict[str, str], params: dict, body: bytes) -> FifoSend:
    """SendMessage(Batch) entry checks for a FIFO queue, in SQS's order and words."""
    if params.get("DelaySeconds") is not None:
        raise E.InvalidParameterValue(f"Value {params['DelaySeconds']} for parameter DelaySeconds is invalid. "
                                      f"Reason: The request include parameter that is not valid for this queue type.")
    group = params.get("MessageGroupId")
    if not group:
        raise E.MissingParameter("The request must contain the parameter MessageGroupId.")
    check_id(group, "MessageGroupId")
    dedup = params.get("MessageDeduplicationId")
    if dedup:
        check_id(dedup, "MessageDeduplicationId")
    elif attributes.get("ContentBasedDeduplication") == "true":
        dedup = hashlib.sha256(body).hexdigest()
    else:
        raise E.InvalidParameterValue("The queue should either have ContentBasedDeduplication enabled or "
                                      "MessageDeduplicationId provided explicitly")
    scope = group if attributes.get("DeduplicationScope") == "messageGroup" else ""
    return FifoSend(group, dedup, scope)


def check_id(value: str, param: str) -> None:
    if not _ID.match(value):
        raise E.InvalidParameterValue(f"Value {value[:128]} for parameter {param} is invalid. Reason: {param} can "
                                      f"only include alphanumeric and punctuation characters. 1 to 128 in length.")


def sequence_number(sequence: int) -> str:
    return str(SEQUENCE_BASE + sequence)


class FifoKeys:
    """The HMACs that stand for group and deduplication ids in the tables."""

    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, json.dumps(parts).encode(), hashlib.sha256).hexdigest()

    def group(self, group_id: str) -> str:
        return self._mac("g", group_id)

    def dedup(self, scope: str, dedup_id: str) -> str:
        return self._mac("d", scope, dedup_id)


def next_sequences(conn: Connection, queue_id: str, count: int) -> int:
    """Reserve `count` sequence numbers of a queue; the first. The UPDATE also locks the queue row, which
    serializes a FIFO queue's sends and claims on PostgreSQL (SQLite's writer lock already does)."""
    q = sqs_queues
    res = conn.execute(sa.update(q).where(q.c.id == queue_id)
                       .values(fifo_sequence=sa.func.coalesce(q.c.fifo_sequence, 0) + count))
    if res.rowcount == 0:
        raise E.QueueDoesNotExist("The specified queue does not exist.")
    last = conn.execute(sa.select(q.c.fifo_sequence).where(q.c.id == queue_id)).scalar_one()
    return int(last) - count + 1


def admit(conn: Connection, queue_id: str, outs: list, rows: list[dict], keys: FifoKeys, now: float) -> list[dict]:
    """Inside the send transaction: drop duplicates (their `out` takes the original's MessageId and
    sequence), number the others in order and record them in the window. The rows to insert."""
    if any(o.fifo is None for o in outs):      # an internal producer that did not say which group
        raise E.MissingParameter("The request must contain the parameter MessageGroupId.")
    d = sqs_fifo_dedup
    conn.execute(sa.delete(d).where(d.c.queue_id == queue_id, d.c.expires_at <= now))     # keep it bounded
    dedup_keys = [keys.dedup(o.fifo.scope, o.fifo.dedup_id) for o in outs]
    known = {r.dedup_key: (r.message_id, int(r.sequence)) for r in conn.execute(
        sa.select(d.c.dedup_key, d.c.message_id, d.c.sequence)
        .where(d.c.queue_id == queue_id, d.c.dedup_key.in_(set(dedup_keys)), d.c.expires_at > now))}
    fresh = [i for i, k in enumerate(dedup_keys) if k not in known]
    first = next_sequences(conn, queue_id, len(fresh)) if fresh else 0
    keep, window = [], []
    seq = first
    for out, row, key in zip(outs, rows, dedup_keys):
        if key in known:                       # also a repeat inside this very batch
            out.message_id, out.sequence = known[key]
            continue
        out.sequence = seq
        known[key] = (out.message_id, seq)
        row.update(group_key=keys.group(out.fifo.group_id), sequence=seq)
        keep.append(row)
        window.append(dict(queue_id=queue_id, dedup_key=key, message_id=out.message_id, sequence=seq,
                           expires_at=now + DEDUP_WINDOW_S))
        seq += 1
    if window:
        conn.execute(sa.insert(d), window)
    return keep


def forget_queue(conn: Connection, queue_id: str) -> None:
    conn.execute(sa.delete(sqs_fifo_dedup).where(sqs_fifo_dedup.c.queue_id == queue_id))


# ------------------------------------------------------------------ receiving

def claim_fifo_messages(conn: Connection, queue_id: str, now: float, limit: int, *,
                        retention_cutoff: float, exclude: Collection[str] = ()) -> list[Row]:
    """Up to `limit` deliverable messages of a FIFO queue, in delivery order: groups taken by the
    sequence of their first message, each group's messages in order from its head, stopping at the
    first one that is not receivable. A group with a message in flight is not touched.

    Run inside the claim's write transaction; the queue row is locked first so that on PostgreSQL two
    receivers cannot both find the same group free (SKIP LOCKED would let the second jump ahead)."""
    m = sqs_messages
    conn.execute(sa.select(sqs_queues.c.id).where(sqs_queues.c.id == queue_id).with_for_update())
    blocked = set(conn.execute(sa.select(m.c.group_key).distinct().where(
        m.c.queue_id == queue_id, m.c.group_key.isnot(None), m.c.visible_at > now, m.c.receive_count > 0)).scalars())
    excluded = set(exclude)
    done = set(blocked)
    picked: list[Row] = []
    after = None
    while len(picked) < limit:
        stmt = (sa.select(m.c.group_key, m.c.sequence)
                .where(m.c.queue_id == queue_id, m.c.group_key.isnot(None))
                .order_by(m.c.sequence).limit(SCAN_CHUNK))
        if after is not None:
            stmt = stmt.where(m.c.sequence > after)
        if done and len(done) <= NOT_IN_LIMIT:
            stmt = stmt.where(m.c.group_key.notin_(list(done)))
        heads = conn.execute(stmt).all()
        for group, seq in heads:
            after = seq
            if group in done:
                continue
            done.add(group)                     # its first row seen here is its head
            picked += _take_group(conn, queue_id, group, now, limit - len(picked), retention_cutoff, excluded)
            if len(picked) >= limit:
                break
        if len(heads) < SCAN_CHUNK:
            break
    return picked


def _take_group(conn: Connection, queue_id: str, group: str, now: float, want: int, retention_cutoff: float,
                excluded: set[str]) -> list[Row]:
    m = sqs_messages
    rows = conn.execute(sa.select(m).where(m.c.queue_id == queue_id, m.c.group_key == group)
                        .order_by(m.c.sequence).limit(want + 10)).all()
    out = []
    for r in rows:
        if r.sent_at <= retention_cutoff:
            continue                            # expired: the retention sweep deletes it
        if r.id in excluded or r.visible_at > now or len(out) >= want:
            break                               # never past a message that is not deliverable now
        out.append(r)
    return out
