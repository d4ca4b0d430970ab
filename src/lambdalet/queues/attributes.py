"""A queue's attributes (validated as SQS does, RedrivePolicy included), its tags and its access policy.
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues import policy as queue_policy
from lambdalet.queues.core import QueueCore
from lambdalet.queues import records
from lambdalet.queues.records import (
    _ALL_ATTRS,
    _ARN,
    _DEFAULT_SHOWN,
    _FIFO_ATTRS,
    _INT_ATTRS,
    _READ_ONLY,
    MAX_TAGS,
    Queue,
    _bad,
)
from lambdalet.queues.tables import sqs_messages, sqs_queues


class QueueAttributes(QueueCore):
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
                               .values(attributes=json.dumps(merged, sort_keys=True), modified_at=records.now()))
            if res.rowcount == 0:
                raise E.QueueDoesNotExist("The specified queue does not exist.")
        self._queues_generation += 1
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

    def add_permission(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        doc = queue_policy.add_permission(queue.attributes.get("Policy"), queue.arn, params["Label"],
                                          params["AWSAccountIds"], params["Actions"])
        return self.set_queue_attributes(ctx, {"QueueUrl": params["QueueUrl"], "Attributes": {"Policy": doc}})

    def remove_permission(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        doc = queue_policy.remove_permission(queue.attributes.get("Policy"), params["Label"])
        return self.set_queue_attributes(ctx, {"QueueUrl": params["QueueUrl"], "Attributes": {"Policy": doc}})

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
            target = doc.get("deadLetterTargetArn")
            raw_count: Any = doc.get("maxReceiveCount")
            count: int | None
            try:
                count = int(raw_count)
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

    def _save_tags(self, queue: Queue, tags: dict[str, str]) -> None:
        with self.db.begin() as conn:
            conn.execute(sa.update(sqs_queues).where(sqs_queues.c.id == queue.id)
                         .values(tags=json.dumps(tags, sort_keys=True)))

    def _counts(self, queue: Queue) -> dict[str, str]:
        m = sqs_messages
        now = records.now()
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
