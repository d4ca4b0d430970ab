"""Claimed Event invocations waiting for a delivery worker, shared fairly between accounts and,
within an account, between its functions (issue 21.7: one account's slow backlog delayed another
account's events by 28 s when the workers took events first come, first served).

Workers take round robin: the next account with a waiting event, then that account's next function.
An account never has more than `account_cap` events running at once (set below the number of
workers), so another account's event finds a worker at once, or after the account ahead of it in the
round finishes one invocation; likewise one function never runs more than `function_cap` of them
(below `account_cap`), so its account's other functions find a worker too. Thread-safe; `get` blocks.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any, Hashable

Lane = tuple[Hashable, Hashable]         # (account, function)


class FairQueue:
    def __init__(self, account_cap: int, function_cap: int | None = None):
        self.account_cap = max(1, int(account_cap))
        self.function_cap = max(1, min(self.account_cap, int(function_cap or self.account_cap)))
        self._cond = threading.Condition()
        # account -> function -> waiting items; both in round-robin order (served ones move to the end)
        self._waiting: OrderedDict[Hashable, OrderedDict[Hashable, deque]] = OrderedDict()
        self._running: dict[Hashable, int] = {}
        self._lanes: dict[Lane, int] = {}       # running per (account, function)
        self._closed = False

    def put(self, lane: Lane, item: Any) -> None:
        account, function = lane
        with self._cond:
            self._waiting.setdefault(account, OrderedDict()).setdefault(function, deque()).append(item)
            self._cond.notify()

    def get(self) -> tuple[Lane, Any] | None:
        """The next item, fairly; blocks until one may run. None once closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                picked = self._pick()
                if picked is not None:
                    return picked
                self._cond.wait()

    def done(self, lane: Lane) -> None:
        """The item taken from `lane` has been handled: its account may run another."""
        with self._cond:
            _decrement(self._running, lane[0])
            _decrement(self._lanes, lane)
            self._cond.notify()

    def runnable(self) -> bool:
        """Whether a worker could take something now (else the dispatcher should claim more)."""
        with self._cond:
            return any(self._may_run(a, f) for a, fns in self._waiting.items() for f in fns)

    def waiting(self, account: Hashable | None = None) -> int:
        with self._cond:
            accounts = [account] if account is not None else list(self._waiting)
            return sum(len(q) for a in accounts for q in self._waiting.get(a, {}).values())

    def running(self, account: Hashable, function: Hashable | None = None) -> int:
        with self._cond:
            if function is not None:
                return self._lanes.get((account, function), 0)
            return self._running.get(account, 0)

    def close(self) -> list[Any]:
        """Wake every getter (they get None); -> the items still waiting (to give back)."""
        with self._cond:
            self._closed = True
            left = [item for fns in self._waiting.values() for q in fns.values() for item in q]
            self._waiting.clear()
            self._cond.notify_all()
        return left

    def _may_run(self, account: Hashable, function: Hashable) -> bool:
        return (self._running.get(account, 0) < self.account_cap
                and self._lanes.get((account, function), 0) < self.function_cap)

    def _pick(self) -> tuple[Lane, Any] | None:
        for account, functions in self._waiting.items():
            if self._running.get(account, 0) >= self.account_cap:
                continue
            function = next((f for f in functions if self._may_run(account, f)), None)
            if function is None:
                continue
            items = functions[function]
            item = items.popleft()
            if items:
                functions.move_to_end(function)
            else:
                del functions[function]
            if functions:
                self._waiting.move_to_end(account)
            else:
                del self._waiting[account]
            self._running[account] = self._running.get(account, 0) + 1
            self._lanes[(account, function)] = self._lanes.get((account, function), 0) + 1
            return (account, function), item
        return None


def _decrement(counts: dict, key) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
