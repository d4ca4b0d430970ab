"""QueueCore: the state every queue module shares (database, keys, the queue cache, wake-up signals,
the group commit) and the lookups they all use: a queue by name, URL or ARN; page tokens; receipt handles.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import uuid
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from lambdalet.models.context import RequestContext
from lambdalet.queues import errors as E
from lambdalet.queues import fifo
from lambdalet.queues.codec import (
    _RECEIPT_LEN,
    _RECEIPT_VERSION,
)
from lambdalet.queues.records import (
    _ARN,
    Queue,
    _bad,
)
from lambdalet.queues.storage import QueueSignals, durable_write
from lambdalet.queues.tables import sqs_queues
from lambdalet.store.group_commit import GroupCommit


class QueueCore:
    def __init__(self, db, keyring, settings) -> None:
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

    @property
    def generation(self) -> int:
        """Moves after every write that changes a queue's attributes or existence (request_map caches
        queue policies against it)."""
        return self._queues_generation

    # Modelled operations lambdalet does not implement: a 400 (clients must not retry), never a 500.
    def _unsupported(self, op: str) -> E.SqsError:
        return E.UnsupportedOperation(f"lambdalet does not implement {op} yet.")

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
