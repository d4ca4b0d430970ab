"""Warm execution environments, per function version.

Lambda's rules, kept here: an environment belongs to one version of one function of one account
(the pool key includes the code digest and the version's revision, so a changed $LATEST never
reuses an old environment); it runs one invocation at a time (an environment is either idle in
the pool or lent to exactly one caller); it is frozen while idle; idle environments are reaped
after `idle_ttl_s`, and none lives longer than `max_lifetime_s`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from lambdalet.sandbox.api import Sandbox

log = logging.getLogger("lambdalet.invoke")


@dataclass(frozen=True)
class PoolKey:
    account_id: str
    function_arn: str      # unqualified
    version: str
    code_sha256: str
    revision_id: str       # any configuration change of the version makes a new key


@dataclass
class _Entry:
    sandbox: Sandbox
    created: float
    idle_since: float = field(default_factory=time.monotonic)


class EnvironmentPool:
    def __init__(self, idle_ttl_s: float, max_lifetime_s: float, reap_interval_s: float = 1.0):
        self.idle_ttl_s = idle_ttl_s
        self.max_lifetime_s = max_lifetime_s
        self._idle: dict[PoolKey, list[_Entry]] = {}
        self._busy: dict[int, tuple[PoolKey, _Entry]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Environments that can never be used again (their version moved on, or they died idle),
        # destroyed by the reaper thread: a kill and its clean-up take milliseconds that the invoke
        # which found them must not wait for.
        self._doomed: list[Sandbox] = []
        self._work = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_interval_s,), name="env-reaper",
                                         daemon=True)
        self._reaper.start()

    def acquire(self, key: PoolKey, create: Callable[[], Sandbox]) -> tuple[Sandbox, bool]:
        """An environment for exactly this key, lent to the caller alone. Returns (sandbox, cold)."""
        stale: list[_Entry] = []
        entry = None
        with self._lock:
            # Versions that moved on (new code or configuration) will never be used again.
            for other in [k for k in self._idle if k != key and k.function_arn == key.function_arn
                          and k.version == key.version]:
                stale += self._idle.pop(other)
            idle = self._idle.get(key, [])
            while idle and entry is None:
                candidate = idle.pop()       # most recently used first: warmest caches
                if candidate.sandbox.alive and time.monotonic() - candidate.created < self.max_lifetime_s:
                    entry = candidate
                else:
                    stale.append(candidate)
        if stale:
            with self._lock:
                self._doomed += [old.sandbox for old in stale]
            self._work.set()
        cold = entry is None
        if entry is not None:
            try:
                entry.sandbox.thaw()
            except Exception:
                log.exception("thaw failed; replacing environment")
                _destroy(entry.sandbox)
                entry, cold = None, True
            else:
                if not entry.sandbox.alive:      # it died while idle (the thaw found its bridge hung up)
                    _destroy(entry.sandbox)
                    entry, cold = None, True
        if entry is None:
            entry = _Entry(create(), time.monotonic())   # create() starts it; InitFailed propagates
        with self._lock:
            self._busy[id(entry.sandbox)] = (key, entry)
        return entry.sandbox, cold

    def release(self, sandbox: Sandbox) -> None:
        """Give an environment back after its invocation: frozen and idle if healthy, else destroyed."""
        with self._lock:
            key, entry = self._busy.pop(id(sandbox))
        if self._closed.is_set() or not sandbox.alive:
            _destroy(sandbox)
            return
        try:
            sandbox.freeze()
        except Exception:
            log.exception("freeze failed; destroying environment")
            _destroy(sandbox)
            return
        entry.idle_since = time.monotonic()
        with self._lock:
            self._idle.setdefault(key, []).append(entry)

    def discard(self, sandbox: Sandbox) -> None:
        with self._lock:
            self._busy.pop(id(sandbox), None)
        _destroy(sandbox)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"idle": sum(len(v) for v in self._idle.values()), "busy": len(self._busy)}

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
            _destroy(e.sandbox)

    def _destroy_doomed(self) -> None:
        with self._lock:
            doomed, self._doomed = self._doomed, []
        for sandbox in doomed:
            _destroy(sandbox)

    def _reap_loop(self, interval: float) -> None:
        next_reap = time.monotonic() + interval
        while not self._closed.is_set():
            self._work.wait(max(0.0, next_reap - time.monotonic()))
            self._work.clear()
            if self._closed.is_set():
                break
            try:
                self._destroy_doomed()
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
            busy = [e for _, e in self._busy.values()]
            self._idle.clear()
        for e in idle + busy:
            _destroy(e.sandbox)
        self._destroy_doomed()


def _destroy(sandbox: Sandbox) -> None:
    try:
        sandbox.destroy()
    except Exception:
        log.exception("destroy failed for an environment")
