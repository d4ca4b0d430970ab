"""Warm execution environments, per function version.

Lambda's rules, kept here: an environment belongs to one version of one function of one account
(the pool key includes the code digest and the version's revision, so a changed $LATEST never
reuses an old environment); it runs one invocation at a time (an environment is either idle in
the pool or lent to exactly one caller); it is frozen while idle; idle environments are reaped
after `idle_ttl_s`, and none lives longer than `max_lifetime_s`.

Live environments are budgeted (invoke/envbudget.py): per account and in all, idle ones are evicted
to make room, and a new one that cannot fit is refused with 429. Environments whose version the
control plane changed or deleted are destroyed within a reaper tick of the change (`watch`), not at
their idle TTL: their memory goes back at once.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from lambdalet.invoke.envbudget import EnvBudget
from lambdalet.models.errors import TooManyRequestsException
from lambdalet.observe import lifecycle
from lambdalet.sandbox.api import Sandbox

log = logging.getLogger("lambdalet.invoke")
WATCH_INTERVAL_S = 0.25      # how often the reaper looks at the control plane's generation


@dataclass(frozen=True)
class PoolKey:
    account_id: str
    function_arn: str      # unqualified
    version: str
    code_sha256: str
    revision_id: str       # any configuration change of the version makes a new key
    tenant_id: str = ""    # a PER_TENANT function's tenant: an environment never serves another tenant


@dataclass(eq=False)      # compared by identity: two environments are never "equal"
class _Entry:
    sandbox: Sandbox
    created: float
    key: PoolKey
    memory_mb: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    checked: int = 0       # the control-plane generation at which its key was last found current
    why: str = ""          # why it is doomed (the reap line's reason)

    @property
    def account_id(self) -> str:
        return self.key.account_id


class EnvironmentPool:
    def __init__(self, idle_ttl_s: float, max_lifetime_s: float, reap_interval_s: float = 1.0,
                 budget: EnvBudget | None = None):
        self.idle_ttl_s = idle_ttl_s
        self.max_lifetime_s = max_lifetime_s
        self.budget = budget or EnvBudget()
        self._idle: dict[PoolKey, list[_Entry]] = {}
        self._busy: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Environments that can never be used again (their version moved on, or they died idle),
        # destroyed by the reaper thread: a kill and its clean-up take milliseconds that the invoke
        # which found them must not wait for. They stay charged to the budget until destroyed.
        self._doomed: list[_Entry] = []
        self._work = threading.Event()
        # The control plane's generation and a check of which keys still name a current version (watch()).
        self._generation: Callable[[], int] | None = None
        self._stale: Callable[[list[PoolKey]], set[PoolKey]] | None = None
        self._unchecked = False
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_interval_s,), name="env-reaper",
                                         daemon=True)
        self._reaper.start()

    def watch(self, generation: Callable[[], int], stale: Callable[[list[PoolKey]], set[PoolKey]]) -> None:
        """Destroy idle environments whose key stopped naming a current version (function or version
        deleted, $LATEST's code or configuration updated) as soon as `generation()` moves: `stale(keys)`
        says which of `keys` are gone. Runs on the reaper thread, never on an invoke."""
        self._generation, self._stale = generation, stale

    def acquire(self, key: PoolKey, create: Callable[[], Sandbox], memory_mb: int = 0,
                tenant_cap: int | None = None) -> tuple[Sandbox, bool]:
        """An environment for exactly this key, lent to the caller alone. Returns (sandbox, cold).
        A new one must fit the budget (idle environments are evicted for it), else TooManyRequests;
        tenant_cap: how many tenant environments (busy or idle) the function may have (AWS's limit)."""
        entry = None
        with self._lock:
            # Versions that moved on (new code or configuration) will never be used again; other
            # tenants' environments of the same code and revision stay.
            for other in [k for k in self._idle if k.function_arn == key.function_arn and k.version == key.version
                          and (k.code_sha256, k.revision_id) != (key.code_sha256, key.revision_id)]:
                for e in self._idle[other]:
                    e.why = "version_changed"
                self._doomed += self._idle.pop(other)
            idle = self._idle.get(key, [])
            while idle and entry is None:
                candidate = idle.pop()       # most recently used first: warmest caches
                if candidate.sandbox.alive and time.monotonic() - candidate.created < self.max_lifetime_s:
                    entry = candidate
                else:
                    candidate.why = "dead" if not candidate.sandbox.alive else "max_lifetime"
                    self._doomed.append(candidate)
            if not idle:
                self._idle.pop(key, None)
            if self._doomed:
                self._work.set()
        if entry is not None:
            try:
                entry.sandbox.thaw()
            except Exception:
                log.exception("thaw failed; replacing environment")
                self._destroy(entry, "thaw_failed")
                entry = None
            else:
                if not entry.sandbox.alive:      # it died while idle (the thaw found its bridge hung up)
                    self._destroy(entry, "dead")
                    entry = None
        cold = entry is None
        if entry is None:
            if tenant_cap is not None and self._tenant_environments(key) >= tenant_cap:
                raise TooManyRequestsException("Rate exceeded", headers={"Retry-After": "1"})
            entry = self._create(key, create, memory_mb)
        with self._lock:
            self._busy[id(entry.sandbox)] = entry
        return entry.sandbox, cold

    def _create(self, key: PoolKey, create: Callable[[], Sandbox], memory_mb: int) -> _Entry:
        with self._lock:
            doomed = [e for e in self._doomed if e.account_id == key.account_id] + \
                     [e for e in self._doomed if e.account_id != key.account_id]
            idle = [e for entries in self._idle.values() for e in entries]
            victims = self.budget.pick_victims(key.account_id, memory_mb, idle, first=doomed)   # or 429
            for v in victims:
                if v in self._doomed:
                    self._doomed.remove(v)
                else:
                    self._remove_idle(v)
            self.budget.charge(key.account_id, memory_mb)
        for v in victims:                     # evicted on this (cold) path: the memory is back before we use it
            _destroy(v.sandbox, "evicted")
        try:
            sandbox = create()               # create() starts it; InitFailed propagates
        except BaseException:
            with self._lock:
                self.budget.credit(key.account_id, memory_mb)
            raise
        return _Entry(sandbox, time.monotonic(), key, memory_mb)

    def _tenant_environments(self, key: PoolKey) -> int:
        """Live tenant environments of the key's function (any version): busy, idle or not yet reaped."""
        with self._lock:
            entries = [e for es in self._idle.values() for e in es] + list(self._busy.values()) + self._doomed
            return sum(1 for e in entries if e.key.tenant_id and e.key.account_id == key.account_id
                       and e.key.function_arn == key.function_arn)

    def _remove_idle(self, entry: _Entry) -> None:
        entries = self._idle.get(entry.key, [])
        entries.remove(entry)
        if not entries:
            self._idle.pop(entry.key, None)

    def release(self, sandbox: Sandbox) -> None:
        """Give an environment back after its invocation: frozen and idle if healthy, else destroyed."""
        with self._lock:
            entry = self._busy.pop(id(sandbox))
        if self._closed.is_set() or not sandbox.alive:
            self._destroy(entry, "dead" if not sandbox.alive else "shutdown")
            return
        try:
            sandbox.freeze()
        except Exception:
            log.exception("freeze failed; destroying environment")
            self._destroy(entry, "freeze_failed")
            return
        entry.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(entry.key, []).append(entry)
            self._unchecked = True           # the watcher looks at it on its next tick

    def discard(self, sandbox: Sandbox) -> None:
        with self._lock:
            entry = self._busy.pop(id(sandbox), None)
        if entry is None:
            _destroy(sandbox, "discarded")
        else:
            self._destroy(entry, "discarded")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"idle": sum(len(v) for v in self._idle.values()), "busy": len(self._busy)}

    def charged_mb(self, account_id: str | None = None) -> int:
        """MemorySize of the live environments (of one account, or all): what the budget counts."""
        with self._lock:
            return self.budget.total_mb if account_id is None else self.budget.usage(account_id)[1]

    def _destroy(self, entry: _Entry, reason: str = "") -> None:
        """Destroy an environment no longer in the pool, and give its share of the budget back."""
        try:
            _destroy(entry.sandbox, reason or entry.why or "retired")
        finally:
            with self._lock:
                self.budget.credit(entry.account_id, entry.memory_mb)

    def _reap_once(self) -> None:
        now = time.monotonic()
        doomed: list[_Entry] = []
        with self._lock:
            for key in list(self._idle):
                keep = []
                for e in self._idle[key]:
                    expired = now - e.idle_since > self.idle_ttl_s or now - e.created > self.max_lifetime_s
                    (doomed if expired or not e.sandbox.alive else keep).append(e)
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]
        for e in doomed:
            self._destroy(e, "dead" if not e.sandbox.alive else
                          "max_lifetime" if now - e.created > self.max_lifetime_s else "idle_ttl")

    def _watch_once(self) -> None:
        """Doom idle environments of versions the control plane no longer has (as they are)."""
        if self._generation is None or self._stale is None:
            return
        generation = self._generation()
        with self._lock:
            unchecked = [e for entries in self._idle.values() for e in entries if e.checked < generation]
            self._unchecked = False
        if not unchecked:
            return
        try:
            stale = self._stale(list({e.key for e in unchecked}))
        except Exception:
            log.exception("could not check which environments are still current")
            return
        with self._lock:
            for e in unchecked:
                if e.key not in stale:
                    e.checked = generation
                elif e in self._idle.get(e.key, ()):      # still idle: not lent out meanwhile
                    self._remove_idle(e)
                    e.why = "version_changed"
                    self._doomed.append(e)
        self._destroy_doomed()

    def _destroy_doomed(self) -> None:
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for entry in doomed:
            self._destroy(entry)

    def _reap_loop(self, interval: float) -> None:
        next_reap = time.monotonic() + interval
        seen = None
        while not self._closed.is_set():
            self._work.wait(max(0.0, min(next_reap - time.monotonic(), WATCH_INTERVAL_S)))
            self._work.clear()
            if self._closed.is_set():
                break
            try:
                self._destroy_doomed()
                generation = self._generation() if self._generation is not None else None
                if generation != seen or self._unchecked:
                    seen = generation
                    self._watch_once()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + interval
                    self._reap_once()
            except Exception:
                log.exception("reaper")

    def close(self) -> None:
        """Destroy every environment (server shutdown): idle ones now, busy ones when released."""
        self._closed.set()
        self._work.set()
        with self._lock:
            idle = [e for entries in self._idle.values() for e in entries]
            busy = [e.sandbox for e in self._busy.values()]     # their release() gives their budget back
            self._idle.clear()
        for e in idle:
            self._destroy(e, "shutdown")
        for sandbox in busy:
            _destroy(sandbox, "shutdown")
        self._destroy_doomed()


def _destroy(sandbox: Sandbox, reason: str) -> None:
    lifecycle.reaped(getattr(sandbox, "spec", None), reason)
    try:
        sandbox.destroy()
    except Exception:
        log.exception("destroy failed for an environment")
