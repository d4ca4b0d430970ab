"""The platform's own producers and pollers (Event invocations, event source mappings): ensure a
queue, enqueue (one fsync'd transaction for many), claim, and ack/nack/settle what they claimed.
"""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa

from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues.codec import (
    _attr_size,
)
from lambdalet.queues.queue_ops import Queues
from lambdalet.queues.receiving import Receiving
from lambdalet.queues import records
from lambdalet.queues.records import (
    MAX_CLAIM,
    MAX_VISIBILITY_S,
    MAX_WAIT_S,
    Message,
    _bad,
    _Outgoing,
)
from lambdalet.queues.sending import Sending
from lambdalet.queues.settling import Settling
from lambdalet.queues.tables import sqs_messages


class InternalQueues(Queues, Sending, Receiving, Settling):
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
        now = records.now()
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
