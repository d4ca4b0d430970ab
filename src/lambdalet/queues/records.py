"""What the queue modules share: SQS's limits and attribute tables (as SQS documents them), the queue
and message records, and the small parameter helpers.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from lambdalet.queues import errors as E
from lambdalet.queues import fifo

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


def now() -> float:
    """The queues' clock (one name, so a test can move it)."""
    return time.time()


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
