"""DeleteMessage and ChangeMessageVisibility (single and batch): a receipt handle checked, then applied
in the shared transaction; a stale handle deletes nothing, as in SQS.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues.core import QueueCore
from lambdalet.queues import records
from lambdalet.queues.records import (
    MAX_VISIBILITY_S,
    _bad,
    _batch_ids,
    _failure,
)
from lambdalet.queues.tables import sqs_messages


class Settling(QueueCore):
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
    now = records.now()
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
