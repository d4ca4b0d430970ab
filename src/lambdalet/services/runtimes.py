"""The runtime catalogue (data/runtimes.json): which Runtime values may be used, and since when not.

A runtime is refused for new functions once AWS blocks creation (block_create_date), and for
updates once it blocks updates; a deprecated entry without a date is refused outright.
With `host` set (the server does: with_host(discover ...)), a runtime this host has no interpreter
for is refused too, saying the platform lacks it (runtime/hostruntimes.py).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lambdalet.models.errors import InvalidParameterValueException

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "data" / "runtimes.json"


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Runtime:
    identifier: str
    family: str
    status: str                        # "supported" | "deprecated"
    deprecation_date: dt.date | None
    block_create_date: dt.date | None
    block_update_date: dt.date | None
    handler_style: str                 # documentation of the Handler format for this family
    lambdalet_runs: bool               # lambdalet has a managed runtime for it (the host still needs the interpreter)

    def _blocked(self, block: dt.date | None, today: dt.date) -> bool:
        if block is not None:
            return today >= block
        return self.status == "deprecated"

    def blocked_for_create(self, today: dt.date) -> bool:
        return self._blocked(self.block_create_date, today)

    def blocked_for_update(self, today: dt.date) -> bool:
        return self._blocked(self.block_update_date, today)


class RuntimeCatalogue:
    def __init__(self, runtimes: list[Runtime], host=None):
        self._by_id = {r.identifier: r for r in runtimes}
        self.host = host                  # runtime.hostruntimes.HostRuntimes, or None: no host check

    def with_host(self, host) -> "RuntimeCatalogue":
        return RuntimeCatalogue(list(self._by_id.values()), host)

    def managed(self) -> list[str]:
        """Identifiers lambdalet has a managed runtime for (whether this host has its interpreter or not)."""
        return [r.identifier for r in self._by_id.values() if r.lambdalet_runs]

    def available(self, *, creating: bool = True, today: dt.date | None = None) -> list[str]:
        """What this host runs and AWS still accepts, provided.* first."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        ids = [r.identifier for r in self._by_id.values()
               if (self.host is None or self.host.runs(r.identifier)) and r.lambdalet_runs
               and not (r.blocked_for_create(today) if creating else r.blocked_for_update(today))]
        return sorted(ids, key=lambda i: not i.startswith("provided"))

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> "RuntimeCatalogue":
        doc = json.loads(Path(path).read_text())
        return cls([Runtime(identifier=r["identifier"], family=r["family"], status=r["status"],
                            deprecation_date=_date(r.get("deprecation_date")),
                            block_create_date=_date(r.get("block_create_date")),
                            block_update_date=_date(r.get("block_update_date")),
                            handler_style=r.get("handler_style", ""), lambdalet_runs=bool(r.get("lambdalet_runs")))
                    for r in doc["runtimes"]])

    def get(self, identifier: str) -> Runtime | None:
        return self._by_id.get(identifier)

    def identifiers(self) -> list[str]:
        return list(self._by_id)

    def _newest_in_family(self, family: str, today: dt.date) -> Runtime | None:
        """The newest of the family AWS accepts and (with a host) this host runs: never advice it would refuse."""
        usable = [r for r in self._by_id.values() if r.family == family and not r.blocked_for_create(today)
                  and (self.host is None or (r.lambdalet_runs and self.host.runs(r.identifier)))]
        return usable[0] if usable else None      # the file lists each family newest first

    def check_architecture(self, architectures: list[str] | None, runtime: str | None) -> None:
        """Refuse an architecture this host cannot run the function on (arm64 on an x86_64 host without
        emulation, say), rather than accept it and run the function on another one."""
        host_arch = getattr(self.host, "architectures", None)
        if host_arch is None:
            return
        for arch in architectures or ["x86_64"]:
            if not host_arch.supports(arch, runtime):
                raise InvalidParameterValueException(host_arch.refusal(arch, runtime))

    def check(self, identifier, *, creating: bool, today: dt.date | None = None) -> Runtime:
        """The runtime, or InvalidParameterValueException as AWS words it."""
        today = today or dt.datetime.now(dt.timezone.utc).date()
        rt = self.get(identifier) if isinstance(identifier, str) else None
        if rt is None:
            # AWS checks Runtime against the runtimes it currently accepts (not the model's enum),
            # unquoted, without the "N validation errors" preamble, as InvalidParameterValueException.
            current = [r.identifier for r in self._by_id.values() if not r.blocked_for_create(today)]
            raise InvalidParameterValueException(
                f"Value {identifier} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(current)}] or be a valid ARN")
        blocked = rt.blocked_for_create(today) if creating else rt.blocked_for_update(today)
        if blocked:
            newest = self._newest_in_family(rt.family, today)
            others = ", ".join(i for i in self.available(today=today) if not i.startswith("provided"))
            advice = (f"We recommend you use the new runtime ({newest.identifier}) while creating or updating "
                      "functions." if newest else f"We recommend you use a supported runtime ({others}) while "
                                                  "creating or updating functions.")
            raise InvalidParameterValueException(
                f"The runtime parameter of {rt.identifier} is no longer supported for creating or updating AWS "
                f"Lambda functions. {advice}")
        if self.host is not None and not self.host.runs(rt.identifier):
            raise InvalidParameterValueException(
                f"The runtime parameter of {rt.identifier} is not available on this lambdalet host. "
                f"Runtimes available here: {', '.join(self.available(creating=creating, today=today))}.")
        return rt


@lru_cache(maxsize=1)
def default_catalogue() -> RuntimeCatalogue:
    return RuntimeCatalogue.load()
