"""Queues themselves: create (idempotent for equal attributes), look up, list, delete, purge, the
dead-letter sources of a queue; the message-move operations lambdalet does not implement.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues.attributes import QueueAttributes
from lambdalet.queues import records
from lambdalet.queues.records import (
    _INT_ATTRS,
    _QUEUE_NAME,
    PURGE_INTERVAL_S,
    Queue,
    _bad,
    _int_param,
)
from lambdalet.queues.tables import sqs_messages, sqs_queues


class Queues(QueueAttributes):
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

    def purge_queue(self, ctx: RequestContext, params: dict) -> dict:
        queue = self._from_url(ctx, params["QueueUrl"])
        now = records.now()
        with self.db.begin() as conn:
            purged_at = conn.execute(sa.select(sqs_queues.c.purged_at).where(sqs_queues.c.id == queue.id)).scalar()
            if purged_at is not None and now - purged_at < PURGE_INTERVAL_S:
                raise E.PurgeQueueInProgress(
                    f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.")
            conn.execute(sa.delete(sqs_messages).where(sqs_messages.c.queue_id == queue.id,
                                                       sqs_messages.c.sent_at <= now))
            conn.execute(sa.update(sqs_queues).where(sqs_queues.c.id == queue.id).values(purged_at=now))
        return {}

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

    def start_message_move_task(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("StartMessageMoveTask")

    def cancel_message_move_task(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("CancelMessageMoveTask")

    def list_message_move_tasks(self, ctx: RequestContext, params: dict) -> dict:
        raise self._unsupported("ListMessageMoveTasks")

    def _check_queue_name(self, name: str, is_fifo: bool = False) -> None:
        fifo.check_name(name, is_fifo)
        if not is_fifo and not _QUEUE_NAME.match(name):
            raise _bad(fifo.NAME_MESSAGE)

    def _create(self, account: str, region: str, name: str, attrs: dict[str, str], tags: dict[str, str]) -> Queue:
        now = records.now()
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
