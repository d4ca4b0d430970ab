"""ReceiveMessage and the claims under it: long polls, the retention sweep, redrive to the dead-letter
queue in the claiming transaction, and opening sealed messages.
"""
from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues.codec import (
    _aad,
    _md5,
    _unpack_attrs,
    _want_attr,
    md5_of_attributes,
)
from lambdalet.queues.core import QueueCore
from lambdalet.queues.longpoll import LongPoll
from lambdalet.queues.longpoll import settle as settle_long_poll
from lambdalet.queues import records
from lambdalet.queues.records import (
    _ARN,
    _ATTR_NAME,
    MAX_BATCH,
    MAX_VISIBILITY_S,
    MAX_WAIT_S,
    RETENTION_SWEEP_S,
    Message,
    Queue,
    _bad,
    _int_param,
)
from lambdalet.queues.storage import claim_messages, next_visible_at
from lambdalet.queues.tables import sqs_messages, sqs_queues


class Receiving(QueueCore):
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
        now = records.now()
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
                if dlq is not None and redrive is not None and r.receive_count >= redrive[1]:
                    self._move_to_dlq(conn, queue, dlq, r, now)
                    moved_to.add(dlq.id)
                    moved += 1
                    continue
                taken.append(r)
                claimed.append((r, r.receive_count + 1))
            if taken:     # one statement for the whole claim
                msgs = sqs_messages
                conn.execute(sa.update(msgs).where(msgs.c.id.in_([r.id for r in taken])).values(
                    receive_count=msgs.c.receive_count + 1, visible_at=now + vis,
                    first_received_at=sa.func.coalesce(msgs.c.first_received_at, now)))
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
        attrs: dict[str, dict] = {}
        sys_attrs: dict[str, dict] = {}
        fifo_ids: dict[str, str] = {}
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
