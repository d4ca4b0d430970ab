"""How many execution environments, and how much memory, live at once: per account and in all.

An environment counts from the moment its creation is decided until it is destroyed, whether it is
running, idle (frozen) or starting: its cgroup may use its whole MemorySize at any time. When a new
environment does not fit, idle ones are evicted first (EnvironmentPool picks them, see
`pick_victims`); when nothing idle can go, Invoke answers 429 TooManyRequestsException with AWS's
ConcurrentInvocationLimitExceeded, which SDKs retry.

The platform-wide budget is the memory environments may hold beside the platform's own: the server
process's resident memory, its fork server's, and what idle pre-isolated slots hold (sandbox/slots.py)
are taken off it (`overhead`, read at most once a second), so --env-memory-mb bounds everything the
server keeps in memory but the unpacked-code tmpfs (which has a budget of its own, invoke/unpacked.py).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from lambdalet.models.errors import TooManyRequestsException

ACCOUNT = "account"        # the account's own limit is what is short
PLATFORM = "platform"      # the platform's memory budget is


@dataclass(frozen=True)
class BudgetLimits:
    account_envs: int | None = None      # live environments per account (None: no limit)
    account_mb: int | None = None        # their MemorySize summed, MiB, per account
    total_mb: int | None = None          # the same over every account


def default_total_mb(share: float = 0.75) -> int:
    """`share` of the host's RAM (MemTotal), the platform's default memory budget."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) * share) >> 10
    raise RuntimeError("no MemTotal in /proc/meminfo")


def resident_mb(pid: int | str = "self") -> int:
    """A process's resident memory, MiB (rounded up); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return -(-pages * os.sysconf("SC_PAGE_SIZE") // (1 << 20))


class PlatformOverhead:
    """Memory the platform holds outside environments, MiB: this process, the sandbox's fork server and
    its idle slots (duck-typed: `backend.zygote.pid`, `backend.slots.held_mb()`, when it has them).
    Cached for `every_s`: it is read whenever a new environment is budgeted."""

    def __init__(self, backend=None, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.backend, self.every_s, self.clock = backend, every_s, clock
        self._lock = threading.Lock()
        self._at, self._mb = float("-inf"), 0

    def __call__(self) -> int:
        with self._lock:
            now = self.clock()
            if now - self._at >= self.every_s:
                self._mb, self._at = self.measure(), now
            return self._mb

    def measure(self) -> int:
        mb = resident_mb()
        zygote = getattr(self.backend, "zygote", None)
        pid = getattr(zygote, "pid", None) if zygote is not None else None
        if pid:
            mb += resident_mb(pid)
        slots = getattr(self.backend, "slots", None)
        if slots is not None:
            mb += slots.held_mb()
        return mb


class Charged(Protocol):
    """What the pool hands in as an eviction candidate: an idle environment's owner, size and age."""
    account_id: str
    memory_mb: int
    idle_since: float


class EnvBudget:
    """Counts only; the caller (the pool) holds its lock around every call."""

    def __init__(self, limits: BudgetLimits = BudgetLimits(), overhead: Callable[[], int] | None = None):
        self.limits = limits
        self.overhead = overhead or (lambda: 0)      # MiB the platform holds beside environments
        self._envs: dict[str, int] = {}
        self._mb: dict[str, int] = {}
        self.total_mb = 0

    def usage(self, account_id: str) -> tuple[int, int]:
        return self._envs.get(account_id, 0), self._mb.get(account_id, 0)

    def short(self, account_id: str, memory_mb: int) -> str | None:
        """None if one more environment of `memory_mb` fits; else which limit it would pass."""
        lim = self.limits
        envs, mb = self.usage(account_id)
        if (lim.account_envs is not None and envs + 1 > lim.account_envs) or \
                (lim.account_mb is not None and mb + memory_mb > lim.account_mb):
            return ACCOUNT
        if lim.total_mb is not None and self.total_mb + self.overhead() + memory_mb > lim.total_mb:
            return PLATFORM
        return None

    def charge(self, account_id: str, memory_mb: int) -> None:
        self._envs[account_id] = self._envs.get(account_id, 0) + 1
        self._mb[account_id] = self._mb.get(account_id, 0) + memory_mb
        self.total_mb += memory_mb

    def credit(self, account_id: str, memory_mb: int) -> None:
        envs = self._envs.get(account_id, 0) - 1
        if envs <= 0:
            self._envs.pop(account_id, None)
            self._mb.pop(account_id, None)
        else:
            self._envs[account_id] = envs
            self._mb[account_id] -= memory_mb
        self.total_mb = max(0, self.total_mb - memory_mb)

    def pick_victims(self, account_id: str, memory_mb: int, idle: Iterable[Charged],
                     first: Iterable[Charged] = ()) -> list[Charged]:
        """The idle environments to evict so that one more of `memory_mb` fits, or TooManyRequests
        (and nothing is evicted) if evicting every idle one that could help would not be enough.

        While the account is over its own limit only its own idle environments help: least recently
        used first. While the platform is over, the account holding the most live memory gives up its
        least recently used idle environment, again and again: a busy account recycles its own before
        it can push out a smaller tenant's warm environments. `first` (environments already doomed)
        go before any idle one of the same account."""
        pool = list(first) + sorted(idle, key=lambda c: c.idle_since)     # least recently used first
        chosen: list[Charged] = []
        try:
            while (why := self.short(account_id, memory_mb)) is not None:
                if why == ACCOUNT:
                    victim = next((c for c in pool if c.account_id == account_id), None)
                else:
                    holders = {c.account_id for c in pool}
                    biggest = max(holders, key=lambda a: (self._mb.get(a, 0), a == account_id), default=None)
                    victim = next((c for c in pool if c.account_id == biggest), None)
                if victim is None:
                    raise TooManyRequestsException(_REFUSALS[why], extra={"Reason": "ConcurrentInvocationLimitExceeded"},
                                                   headers={"Retry-After": "1"})
                pool.remove(victim)
                chosen.append(victim)
                self.credit(victim.account_id, victim.memory_mb)
        except TooManyRequestsException:
            for c in chosen:                     # nothing evicted after all: the counts as they were
                self.charge(c.account_id, c.memory_mb)
            raise
        return chosen


_REFUSALS = {
    ACCOUNT: "Rate Exceeded: this account's execution environments hold its limit of live environments or "
             "their memory; retry once some of them finish.",
    PLATFORM: "Rate Exceeded: execution environments hold this server's whole memory budget and none is idle; "
              "retry once some of them finish.",
}
