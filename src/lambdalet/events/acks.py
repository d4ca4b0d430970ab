"""How the event poller settles a handled message: ack (delete, then drop its large payload) or nack
(receivable again after a delay).

`BatchedAcks` (the running poller): workers only record the outcome; the dispatcher applies
everything recorded since its last round in ONE queue transaction (`QueueService.settle`) before
it claims again, so settling costs a transaction per batch rather than per event. Nothing is lost
by deferring: until the transaction commits the message is merely still in flight, and a crash
then means a redelivery (at-least-once), never a loss. A payload is dropped only after the
transaction that deleted its message committed.

`ImmediateAcks` (`EventPoller.process` called directly, e.g. by tests): settled before returning.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("lambdalet.events")


DropPayloads = Callable[[list[str]], None]


class ImmediateAcks:
    def __init__(self, queues, drop_payloads: DropPayloads):
        self.queues = queues
        self.drop_payloads = drop_payloads

    def ack(self, receipt: str, payload_ref: str | None = None) -> None:
        self.queues.ack(receipt)
        if payload_ref:
            _drop_quietly(self.drop_payloads, [payload_ref])

    def nack(self, receipt: str, delay_s: float) -> None:
        try:
            self.queues.nack(receipt, delay_s)
        except Exception as e:     # stale receipt or database trouble: the visibility timeout still applies
            log.warning("event message: nack failed: %s", e)


class BatchedAcks:
    def __init__(self, queues, drop_payloads: DropPayloads, on_record: Callable[[], None] = lambda: None):
        self.queues = queues
        self.drop_payloads = drop_payloads
        self.on_record = on_record             # wakes whoever flushes (the dispatcher)
        self._lock = threading.Lock()
        self._acks: list[str] = []
        self._nacks: list[tuple[str, float]] = []
        self._payloads: list[str] = []
        self.flushes = 0                       # statistics (bench)
        self.settled = 0

    def ack(self, receipt: str, payload_ref: str | None = None) -> None:
        with self._lock:
            self._acks.append(receipt)
            if payload_ref:
                self._payloads.append(payload_ref)
        self.on_record()

    def nack(self, receipt: str, delay_s: float) -> None:
        with self._lock:
            self._nacks.append((receipt, delay_s))
        self.on_record()

    def pending(self) -> bool:
        return bool(self._acks or self._nacks)

    def flush(self) -> int:
        """Apply everything recorded so far in one transaction; -> how many outcomes were applied."""
        with self._lock:
            acks, nacks, payloads = self._acks, self._nacks, self._payloads
            self._acks, self._nacks, self._payloads = [], [], []
        if not acks and not nacks:
            return 0
        try:
            self.queues.settle(acks, nacks)
        except Exception:
            log.exception("settling %d handled event(s) failed; they are delivered again after their "
                          "visibility timeout", len(acks) + len(nacks))
            return 0        # payloads stay: their messages are still queued
        self.flushes += 1
        self.settled += len(acks) + len(nacks)
        if payloads:
            _drop_quietly(self.drop_payloads, payloads)
        return len(acks) + len(nacks)


def _drop_quietly(drop: DropPayloads, refs: list[str]) -> None:
    try:
        drop(refs)
    except Exception:
        log.exception("could not delete %d acked event payload(s) (collected later)", len(refs))
