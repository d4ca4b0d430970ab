"""Concurrency accounting as Lambda does it: an account-wide limit; a function with reserved
concurrency may use exactly its reservation; all other functions share what is left unreserved.

Counts live in memory: they describe invocations running in this process right now.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from lambdalet.models.errors import TooManyRequestsException

RESERVED_EXCEEDED = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"


class ConcurrencyLimiter:
    def __init__(self, account_limit: int):
        self.account_limit = account_limit
        self._lock = threading.Lock()
        self._by_function: dict[tuple[str, str], int] = {}   # (account, function name) -> in flight
        self._unreserved: dict[str, int] = {}                # account -> in flight without reservation

    def in_flight(self, account_id: str, function_name: str) -> int:
        with self._lock:
            return self._by_function.get((account_id, function_name), 0)

    def in_use(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Copies of (in flight per (account, function), in flight without a reservation per account),
        for metrics and `lambdalet status` (observe/)."""
        with self._lock:
            return dict(self._by_function), dict(self._unreserved)

    @contextmanager
    def slot(self, account_id: str, function_name: str, reserved: int | None, total_reserved: int) -> Iterator[None]:
        """Hold one concurrent execution for the duration of the block, or raise 429 as AWS does."""
        key = (account_id, function_name)
        with self._lock:
            running = self._by_function.get(key, 0)
            if reserved is not None:
                if running >= reserved:
                    raise TooManyRequestsException("Rate Exceeded.", extra={"Reason": RESERVED_EXCEEDED},
                                                   headers={"Retry-After": "1"})
            else:
                pool = self.account_limit - total_reserved
                if self._unreserved.get(account_id, 0) >= pool:
                    raise TooManyRequestsException("Rate Exceeded.", extra={"Reason": ACCOUNT_EXCEEDED},
                                                   headers={"Retry-After": "1"})
                self._unreserved[account_id] = self._unreserved.get(account_id, 0) + 1
            self._by_function[key] = running + 1
        try:
            yield
        finally:
            with self._lock:
                self._by_function[key] -= 1
                if not self._by_function[key]:
                    del self._by_function[key]
                if reserved is None:
                    self._unreserved[account_id] -= 1


# Lambda's Reason for an account past its concurrency: what a synchronous Invoke past its share gets.
ACCOUNT_EXCEEDED = "ConcurrentInvocationLimitExceeded"


class AccountShares:
    """At most `per_account` long-held calls of one account at a time: synchronous Invokes hold an API
    worker thread for the whole invocation, streamed ones a thread of their own (one share for both).
    Past it: 429 TooManyRequestsException with Lambda's Reason ConcurrentInvocationLimitExceeded, which
    SDKs retry; the account's concurrency limit, lower by default in most setups, is enforced as before."""

    def __init__(self, per_account: int):
        self.per_account = max(1, int(per_account))
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @contextmanager
    def hold(self, account_id: str) -> Iterator[None]:
        with self._lock:
            n = self._held.get(account_id, 0)
            if n >= self.per_account:
                raise TooManyRequestsException("Rate Exceeded.", extra={"Reason": ACCOUNT_EXCEEDED},
                                               headers={"Retry-After": "1"})
            self._held[account_id] = n + 1
        try:
            yield
        finally:
            with self._lock:
                n = self._held[account_id] - 1
                if n:
                    self._held[account_id] = n
                else:
                    del self._held[account_id]

    def held(self, account_id: str) -> int:
        with self._lock:
            return self._held.get(account_id, 0)
