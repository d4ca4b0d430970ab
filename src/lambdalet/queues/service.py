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

This class is the facade; the work lives in one module per resource (its methods are theirs):
  core.py        the shared state and lookups (queue by name/URL/ARN, page tokens, receipt handles)
  attributes.py  Get/SetQueueAttributes, tags, Add/RemovePermission
  queue_ops.py   Create/Delete/Purge/ListQueues, GetQueueUrl, ListDeadLetterSourceQueues
  sending.py     SendMessage(Batch)          receiving.py  ReceiveMessage, claims, redrive
  settling.py    DeleteMessage(Batch), ChangeMessageVisibility(Batch)
  internal.py    the platform's API: ensure_queue, enqueue(_batch), claim, ack, nack, settle
  records.py / codec.py: limits, Queue and Message, MD5s, sealed attributes, receipt layout.
"""
from __future__ import annotations

from lambdalet.queues.attributes import QueueAttributes
from lambdalet.queues.codec import md5_of_attributes
from lambdalet.queues.internal import InternalQueues
from lambdalet.queues.queue_ops import Queues
from lambdalet.queues.receiving import Receiving
from lambdalet.queues.records import MAX_CLAIM, Message, Queue
from lambdalet.queues.sending import Sending
from lambdalet.queues.settling import Settling

__all__ = ["MAX_CLAIM", "Message", "Queue", "QueueService", "md5_of_attributes"]


class QueueService(InternalQueues, Queues, QueueAttributes, Sending, Receiving, Settling):
    """SQS's operations and the platform's internal queue API, on one object (server/bindings.py binds
    every SQS operation it has a method for)."""
