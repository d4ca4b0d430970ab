"""SendMessage and SendMessageBatch: checked as SQS does, sealed, and inserted through the group commit
(answered once committed with fsync).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues.codec import (
    _aad,
    _attr_size,
    _md5,
    _pack_attrs,
    md5_of_attributes,
)
from lambdalet.queues.core import QueueCore
from lambdalet.queues import records
from lambdalet.queues.records import (
    _ATTR_NAME,
    _DATA_TYPE,
    _INVALID_CHARS,
    Queue,
    _bad,
    _batch_ids,
    _failure,
    _int_param,
    _Outgoing,
)
from lambdalet.queues.tables import sqs_messages, sqs_queues


class Sending(QueueCore):
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
            except (KeyError, AttributeError, TypeError):   # malformed: _prepare refuses the entry below
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
        now = records.now()
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
