"""Unpacked code and layer sets on tmpfs: built once, leased by environments, evicted, budgeted.

codecache.py (code packages) and layercache.py (a function's layers merged in order) keep their
trees here. Memory-backed storage is shared by every tenant, so (issue 21):

- every entry has a size before it is built (the archives' declared sizes, proven true at upload),
  charged to the account whose environment built it, within a per-account and a total budget;
- an environment leases the entries it mounts (`lease`); the lease ends when the environment object
  is gone (a finalizer on it), so nothing in use is ever removed;
- entries no lease holds are evicted when they have been idle for `idle_s`, and at once, least
  recently used first, when a new entry would not fit a budget. If it still does not fit, the
  invocation answers TooManyRequestsException (429, which clients retry): live environments hold
  the memory, and they end.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lambdalet.models.errors import TooManyRequestsException
from lambdalet.sandbox import mounts

log = logging.getLogger("lambdalet.invoke")

DEFAULT_TOTAL_BYTES = 8 << 30
DEFAULT_ACCOUNT_BYTES = 2 << 30
DEFAULT_IDLE_S = 600.0


class UnpackedBudget:
    """Bytes of unpacked trees on tmpfs, in all and per account; shared by the code and layer caches."""

    def __init__(self, total_bytes: int = DEFAULT_TOTAL_BYTES, account_bytes: int = DEFAULT_ACCOUNT_BYTES,
                 idle_s: float = DEFAULT_IDLE_S):
        self.total_bytes = total_bytes
        self.account_bytes = account_bytes
        self.idle_s = idle_s
        self.lock = threading.RLock()
        self.caches: list["UnpackedCache"] = []
        self.used = 0
        self.per_account: dict[str, int] = {}
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="unpacked-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(min(30.0, max(self.idle_s / 2, 0.5))):
            try:
                self.sweep()
            except Exception:          # never let the sweeper die
                log.exception("sweeping unpacked code failed")

    def sweep(self) -> None:
        """Evict every entry no environment leases that has been idle for `idle_s`."""
        with self.lock:
            for cache in self.caches:
                cache.evict_idle(self.idle_s)

    def close(self) -> None:
        self._stop.set()

    def make_room(self, account_id: str, size: int) -> None:
        """Evict idle entries (least recently used first) until `size` more bytes fit; else 429."""
        with self.lock:
            self.sweep()
            idle = sorted(((e.last_used, cache, name) for cache in self.caches
                           for name, e in cache.entries.items() if not e.leases), key=lambda t: t[0])
            for _, cache, name in idle:
                if self._fits(account_id, size):
                    return
                own = self.per_account.get(account_id, 0) + size > self.account_bytes
                if own and cache.entries[name].account_id != account_id:
                    continue                # over the account's own budget: only its own entries help
                cache.evict(name)
            if not self._fits(account_id, size):
                raise TooManyRequestsException(
                    "Rate exceeded: the unpacked code of this account's live execution environments fills "
                    "its share of this host; retry once some of them end.",
                    extra={"Reason": "ConcurrentInvocationLimitExceeded"})

    def _fits(self, account_id: str, size: int) -> bool:
        return (self.used + size <= self.total_bytes
                and self.per_account.get(account_id, 0) + size <= self.account_bytes)

    def charge(self, account_id: str, size: int) -> None:
        with self.lock:
            self.used += size
            self.per_account[account_id] = self.per_account.get(account_id, 0) + size

    def refund(self, account_id: str, size: int) -> None:
        with self.lock:
            self.used -= size
            left = self.per_account.get(account_id, 0) - size
            if left > 0:
                self.per_account[account_id] = left
            else:
                self.per_account.pop(account_id, None)


@dataclass
class _Entry:
    path: Path
    account_id: str
    size: int
    last_used: float = field(default_factory=time.monotonic)
    leases: int = 0


class UnpackedCache:
    """One directory of built trees, by name, under `root` (0700: only root and its mounts reach it).
    With `own_fs` (root only), `root` is a tmpfs of its own, sized to the total budget: an environment's
    mount table then names its tree as "/<name>", not a host path with this server's instance id.
    It must be mounted before the sandbox's fork server copies the host's mount table."""

    def __init__(self, root: Path, budget: UnpackedBudget | None = None, *, own_fs: bool = False):
        self.root = Path(root)
        self.budget = budget or UnpackedBudget()
        self.entries: dict[str, _Entry] = {}
        self._build_lock = threading.Lock()
        self._own_fs = own_fs
        # An earlier run's trees (a killed server's tmpfs may still be mounted): unaccounted, unleased.
        while os.path.ismount(self.root):
            mounts.unmount(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o700)
        if own_fs:
            mounts.mount_private_tmpfs(str(self.root), self.budget.total_bytes)
        with self.budget.lock:
            self.budget.caches.append(self)

    def get(self, name: str, account_id: str, prepare: Callable[[], tuple[int, Callable[[Path], None]]],
            holder: object | None = None) -> Path:
        """The tree `name`. On first use `prepare()` gives its size and a `build(tmp)` that writes it
        (tmp does not exist yet; it is renamed into place, so a reader never sees half a tree and
        concurrent first uses build it once). With `holder`, the entry is leased until that object
        is garbage-collected."""
        found = self._use(name, holder)
        if found is not None:
            return found
        with self._build_lock:                  # one build at a time per cache; hits do not wait
            found = self._use(name, holder)
            if found is not None:
                return found
            size, build = prepare()
            with self.budget.lock:
                self.budget.make_room(account_id, size)
                self.budget.charge(account_id, size)     # reserved before the build starts
            target, tmp = self.root / name, self.root / f".{name}.{uuid.uuid4().hex}"
            try:
                build(tmp)
                os.replace(tmp, target)
            except BaseException:
                self.budget.refund(account_id, size)
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            with self.budget.lock:
                self.entries[name] = _Entry(target, account_id, size)
            return self._use(name, holder)

    def _use(self, name: str, holder: object | None) -> Path | None:
        with self.budget.lock:
            entry = self.entries.get(name)
            if entry is None:
                return None
            entry.last_used = time.monotonic()
            if holder is not None:
                entry.leases += 1
                weakref.finalize(holder, self._release, entry)
            return entry.path

    def _release(self, entry: _Entry) -> None:
        with self.budget.lock:
            entry.leases -= 1
            entry.last_used = time.monotonic()

    def evict(self, name: str) -> None:
        """Remove an entry no environment leases (the budget lock is held)."""
        entry = self.entries.pop(name)
        shutil.rmtree(entry.path, ignore_errors=True)
        self.budget.refund(entry.account_id, entry.size)

    def evict_idle(self, idle_s: float) -> None:
        now = time.monotonic()
        for name in [n for n, e in self.entries.items() if not e.leases and now - e.last_used > idle_s]:
            self.evict(name)

    def clear(self) -> None:
        self.budget.close()
        with self.budget.lock:
            for name in list(self.entries):
                entry = self.entries.pop(name)
                self.budget.refund(entry.account_id, entry.size)
            if self._own_fs:
                self._own_fs = False
                mounts.unmount(str(self.root))
            shutil.rmtree(self.root, ignore_errors=True)
