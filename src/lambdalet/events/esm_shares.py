"""Event source mapping batches in flight, shared fairly between accounts and, within an account,
between its mappings (issue 21.7: a mapping's workers are threads of this server; without a bound,
one account's many mappings or slow functions took as much of the host, its threads, the database's
writer and the interpreter, as they liked, and every other account's deliveries shared what was left).

A worker holds one share while it gathers and processes a batch. At most `total` are held at once,
and one account holds at most `account_cap` of them (below `total`, so another account's batch
starts at once, or after one batch of the accounts ahead of it). Waiting workers are served round
robin: the waiting account served longest ago, then its mapping served longest ago. Thread-safe.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Hashable


MAX_REMEMBERED = 10_000          # accounts and mappings whose last grant is kept (round-robin order)


class _Ticket:
    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False


class BatchShares:
    def __init__(self, total: int, account_cap: int | None = None):
        self.total = max(1, int(total))
        default_cap = self.total - max(1, self.total // 4) if self.total > 1 else 1
        self.account_cap = max(1, min(self.total, int(account_cap or default_cap)))
        self._cond = threading.Condition()
        # account -> mapping -> waiting tickets, in arrival order
        self._waiting: OrderedDict[Hashable, OrderedDict[Hashable, deque[_Ticket]]] = OrderedDict()
        self._held: dict[Hashable, int] = {}
        self._in_use = 0
        self._grants = 0
        self._last: dict[Hashable, int] = {}     # account, or (account, mapping) -> its last grant's number

    def acquire(self, account: Hashable, mapping: Hashable, stop: threading.Event | None = None) -> bool:
        """Wait for a share (True), or until `stop` is set (False, nothing held)."""
        ticket = _Ticket()
        with self._cond:
            self._waiting.setdefault(account, OrderedDict()).setdefault(mapping, deque()).append(ticket)
            self._grant()
            while not ticket.granted:
                if stop is not None and stop.is_set():
                    self._withdraw(account, mapping, ticket)
                    return False
                self._cond.wait(0.25 if stop is not None else None)
            return True

    def release(self, account: Hashable) -> None:
        with self._cond:
            n = self._held.get(account, 0) - 1
            if n > 0:
                self._held[account] = n
            else:
                self._held.pop(account, None)
            self._in_use -= 1
            self._grant()

    def starving(self) -> bool:
        """Whether an account holding no share waits for one: then nobody should hold one in a long
        poll (an account's extra workers waiting behind its own cap starve nobody)."""
        with self._cond:
            return any(not self._held.get(a, 0) for a in self._waiting)

    def held(self, account: Hashable | None = None) -> int:
        with self._cond:
            return self._in_use if account is None else self._held.get(account, 0)

    def _grant(self) -> None:
        granted = False
        while self._in_use < self.total:
            ready = [a for a in self._waiting if self._held.get(a, 0) < self.account_cap]
            if not ready:
                break
            account = min(ready, key=lambda a: self._last.get(a, -1))
            mappings = self._waiting[account]
            mapping = min(mappings, key=lambda m: self._last.get((account, m), -1))
            tickets = mappings[mapping]
            tickets.popleft().granted = granted = True
            if not tickets:
                del mappings[mapping]
            if not mappings:
                del self._waiting[account]
            self._grants += 1
            self._last[account] = self._last[(account, mapping)] = self._grants
            if len(self._last) > MAX_REMEMBERED:
                self._forget()
            self._held[account] = self._held.get(account, 0) + 1
            self._in_use += 1
        if granted:
            self._cond.notify_all()

    def _forget(self) -> None:
        """Keep the last grants of whoever waits or holds a share (mappings come and go)."""
        keep = set(self._held) | set(self._waiting)
        keep |= {(a, m) for a, ms in self._waiting.items() for m in ms}
        self._last = {k: v for k, v in self._last.items() if k in keep}

    def _withdraw(self, account: Hashable, mapping: Hashable, ticket: _Ticket) -> None:
        mappings = self._waiting.get(account)
        if mappings is None or ticket not in mappings.get(mapping, ()):
            return
        mappings[mapping].remove(ticket)
        if not mappings[mapping]:
            del mappings[mapping]
        if not mappings:
            del self._waiting[account]
