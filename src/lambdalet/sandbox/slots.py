"""Pre-isolated slots: environments built ahead of demand, without a tenant.

A slot is everything of an environment that does not depend on its function: namespaces, PID 1,
the pivot_root'ed root, its own uid, no capabilities, no_new_privs, seccomp, init's servers and, for
the server's own Python, the runtime already forked and reset, blocked on its configuration. It has
no code, no environment variables, no credentials; no tenant code has ever run in it. Claiming one
(namespace.NamespaceSandbox._claim) sets the cgroup's limits, mounts the code, layers and a sized
/tmp on the slot's directory in the fork server's mount namespace (zygote.py), from where they
propagate into the slot's (mounts.py), and sends the CONFIG frame over the bridge. A slot serves exactly
one environment and never returns here, so "an environment is never reused across versions, functions
or accounts" is unchanged.

This pool keeps up to `size` idle slots per family (an interpreter and how it is started), refills in
a background thread after a claim (never on the invoke's path), and lets slots expire: one idle for
`ttl_s` is destroyed, and a family nobody asked for within `ttl_s` is not refilled, so an idle server
holds nothing. Idle slots hold a uid and a cgroup (they count in the backend's resources) but belong
to no account, so they count towards no concurrency limit; their memory counts in the platform's
environment budget (`held_mb`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

log = logging.getLogger(__name__)


@dataclass
class Slot:
    family: Hashable
    name: str                    # its cgroup's name
    cgroup: Any                  # cgroups.Cgroup
    uid: int
    dir: str                     # its dir (task/, opt/, tmp/ followed by the slot's namespace)
    sock: Any                    # host end of the bridge
    reader: Any                  # bridge.FrameReader (bytes read past SLOT_READY stay in it)
    created: float = field(default_factory=time.monotonic)
    timings: dict = field(default_factory=dict)
    link: Any = None             # egress.Link under the server's default policy, or None (no network)


class SlotPool:
    def __init__(self, build: Callable[[Hashable], Slot], destroy: Callable[[Slot], None],
                 families: Callable[[], list], size: int, ttl_s: float, refill_delay_s: float = 0.02,
                 retry_s: float = 1.0):
        self.size, self.ttl_s, self.refill_delay_s = size, ttl_s, refill_delay_s
        self._build, self._destroy, self._families = build, destroy, families
        self._idle: dict[Hashable, deque[Slot]] = {}
        self._demand: dict[Hashable, float] = {}        # family -> last time one was asked for
        self._not_before = 0.0                           # refill pause: after a claim, after failures
        self._retry_s = self._backoff = retry_s
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sandbox-slots", daemon=True)
        self._thread.start()

    def take(self, family: Hashable) -> Slot | None:
        """An idle slot of this family for the caller alone, or None (the caller builds from scratch)."""
        with self._cond:
            if self._closed or family not in self._idle:
                return None
            now = time.monotonic()
            self._demand[family] = now
            idle = self._idle[family]
            slot = idle.popleft() if idle else None       # oldest first: it would expire first
            if self._not_before < now:                    # a pause, not extended by more claims (a burst)
                self._not_before = now + self.refill_delay_s
            self._cond.notify_all()
            return slot

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {"idle_slots": sum(len(q) for q in self._idle.values())}

    def held_mb(self) -> int:
        """Memory the idle slots hold, MiB (their cgroups' peak: no tenant code has run in them), for the
        platform's environment budget (invoke/envbudget.PlatformOverhead)."""
        with self._cond:
            idle = [s for q in self._idle.values() for s in q]
        return sum(_peak_mb(s) for s in idle)

    def idle_uids(self) -> set[int]:
        with self._cond:
            return {s.uid for q in self._idle.values() for s in q}

    def wait_full(self, timeout_s: float = 10.0) -> bool:
        """Until every wanted family has `size` idle slots (benchmarks and tests)."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while not (self._idle and all(len(q) >= self.size for q in self._idle.values())):
                left = end - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=15)
        with self._cond:
            doomed = [s for q in self._idle.values() for s in q]
            self._idle.clear()
        for slot in doomed:
            self._safe_destroy(slot)

    # --- the refill thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            families = list(dict.fromkeys(self._families()))
        except Exception:
            log.exception("sandbox slots: cannot tell which runtimes to keep slots for; none kept")
            return
        with self._cond:
            now = time.monotonic()
            for fam in families:
                self._idle[fam] = deque()
                self._demand[fam] = now                    # the first fill: slots ready for the first Invoke
            self._cond.notify_all()
        while True:
            with self._cond:
                if self._closed:
                    return
                doomed, family, wait = self._plan(time.monotonic())
                if not doomed and family is None:
                    self._cond.wait(wait)
                    continue
            for slot in doomed:
                self._safe_destroy(slot)
            if family is not None:
                self._refill_one(family)

    def _plan(self, now: float) -> tuple[list[Slot], Hashable | None, float | None]:
        """(expired slots to destroy, a family to build one slot for, how long to sleep otherwise)."""
        doomed, wake = [], []
        for q in self._idle.values():
            while q and now - q[0].created >= self.ttl_s:
                doomed.append(q.popleft())
            if q:
                wake.append(q[0].created + self.ttl_s - now)
        family = None
        if now >= self._not_before:
            for fam, q in self._idle.items():
                if len(q) < self.size and now - self._demand.get(fam, -1e18) < self.ttl_s:
                    family = fam
                    break
        elif any(len(q) < self.size for q in self._idle.values()):
            wake.append(self._not_before - now)
        return doomed, family, (max(min(wake), 0.001) if wake else None)

    def _refill_one(self, family: Hashable) -> None:
        try:
            slot = self._build(family)
        except Exception as e:
            log.warning("sandbox slot could not be built (retrying in %.0f s): %s", self._backoff, e)
            with self._cond:
                self._not_before = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 60.0)
            return
        with self._cond:
            self._backoff = self._retry_s
            if not self._closed:
                self._idle[family].append(slot)
                self._cond.notify_all()
                return
        self._safe_destroy(slot)

    def _safe_destroy(self, slot: Slot) -> None:
        try:
            self._destroy(slot)
        except Exception:
            log.exception("sandbox slot %s could not be destroyed", slot.name)


def _peak_mb(slot: Slot) -> int:
    peak = getattr(slot.cgroup, "max_memory_mb", None)
    return int(peak()) if peak is not None else 0
