"""The execution-environment contract every isolation backend implements.

Rules (the shared suite in tests/processes/test_sandbox_contract.py checks them against every backend):
- A `Backend` is created once per server (`open_backend(name, **options)`) and owns shared
  resources (fork server, uid pool, cgroup parent). `backend.create(spec)` returns a `Sandbox`
  for exactly ONE function version of one account; it is never reused for anything else.
- `Sandbox.start()` creates the environment and returns once the runtime has asked for its first
  event (GET /runtime/invocation/next). If init fails it raises `InitFailed` whose `.result` is the
  error the triggering Invoke should return, and the sandbox is dead.
- `invoke()` runs ONE invocation at a time (callers serialize; a second concurrent call raises).
  A frozen sandbox is thawed first. Timeouts, runtime exits and OOM end the environment: the
  result carries `error_type` and `alive` becomes False. Never raises for function failures; raises
  `NotDelivered` when the environment turns out dead before its runtime took the event.
- `freeze()`/`thaw()` stop/resume every process of the environment between invocations; a thaw that
  finds the environment dead (its bridge hung up) destroys it and leaves `alive` False.
- `destroy()` is idempotent and leaves nothing behind: processes, cgroups, mounts, temp files.
- Crashes: every environment dies with the server process, even on SIGKILL; a backend opened on the
  same resources (cgroup parent, root dir) cleans up whatever a crashed predecessor left
  (`cleanup_stale()`, run by the namespace backend when it opens).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class EnvironmentSpec:
    env_id: str
    account_id: str
    function_name: str
    function_version: str
    function_arn: str
    runtime: str                      # "python3.11", "nodejs20.x", "provided.al2023", ...
    handler: str                      # "app.handler"; ignored by provided runtimes
    code_dir: str                     # unpacked code, mounted read-only at /var/task
    layers_dir: str | None = None     # merged layers, mounted read-only at /opt
    memory_mb: int = 128
    ephemeral_mb: int = 512
    timeout_s: float = 3.0
    env: dict[str, str] = field(default_factory=dict)   # the function's own variables
    log_group: str = ""
    log_stream: str = ""
    region: str = "us-east-1"
    egress: str = ""                  # the function's `lambdalet:egress` tag ("": the server's default; egress_policy.py)
    # LoggingConfig: "Text" | "JSON"; the levels ("" unless JSON) filter application / platform lines
    log_format: str = "Text"
    app_log_level: str = ""
    system_log_level: str = ""


@dataclass(frozen=True)
class InvokeRequest:
    request_id: str
    payload: bytes
    deadline_ms: int                  # epoch milliseconds; the backend kills the env past it
    invoked_function_arn: str
    client_context: str | None = None  # JSON text (decoded X-Amz-Client-Context), as the runtime sees it
    trace_id: str = ""
    tenant_id: str = ""               # a PER_TENANT function's tenant (Lambda-Runtime-Aws-Tenant-Id)
    # A streamed response's consumer (InvokeWithResponseStream, RESPONSE_STREAM URLs): its
    # write(content_type, data, deadline) gets each piece as the runtime streams it, blocking for
    # back-pressure, TimeoutError past the deadline (monotonic). None: a streamed response is buffered.
    stream: Any = field(default=None, compare=False)


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None = None  # "Unhandled" (AWS's X-Amz-Function-Error) or None
    error_type: str | None = None      # "Runtime.ExitError", "Sandbox.Timedout", exception class...
    log_tail: bytes = b""              # last 4 KB of this invocation's log, START..REPORT
    duration_ms: float = 0.0
    max_memory_mb: int = 0
    init_duration_ms: float | None = None  # set on the first invocation of an environment
    streamed: bool = False             # the payload went to InvokeRequest.stream (payload: an error document or b"")


class SandboxError(Exception):
    """The platform failed (not the function): the caller answers ServiceException."""


class CapacityExceeded(SandboxError):
    """No room for a new environment under a limit of the account or the host (e.g. pids): nothing
    started; the caller answers a retryable throttle (429), not a failure."""


class NotDelivered(SandboxError):
    """The environment died before its runtime took the invocation (killed while idle): nothing of
    it ran, so the caller may run it on a fresh environment. The sandbox is dead. `.result` is what
    the invocation would answer otherwise (Runtime.ExitError)."""
    def __init__(self, message: str, result: InvokeResult):
        super().__init__(message)
        self.result = result


class InitFailed(SandboxError):
    def __init__(self, result: InvokeResult):
        super().__init__(result.error_type or "init failed")
        self.result = result


class Sandbox(abc.ABC):
    spec: EnvironmentSpec

    @abc.abstractmethod
    def start(self) -> None: ...
    @abc.abstractmethod
    def invoke(self, req: InvokeRequest) -> InvokeResult: ...
    @abc.abstractmethod
    def freeze(self) -> None: ...
    @abc.abstractmethod
    def thaw(self) -> None: ...
    @abc.abstractmethod
    def destroy(self) -> None: ...
    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...
    def stats(self) -> dict[str, Any]:
        """Timings of each start-up step (ms) and counters; informational, keys may grow."""
        return {}


class Backend(abc.ABC):
    name = ""
    @abc.abstractmethod
    def create(self, spec: EnvironmentSpec, *, log_sink: Callable[[bytes], None] | None = None) -> Sandbox: ...
    def close(self) -> None:  # noqa: B027  (optional: a backend with nothing shared keeps it empty)
        """Release shared resources (fork server). Sandboxes must be destroyed first."""
    def isolation(self) -> dict[str, Any]:
        """What isolates environments here, for the start-up banner and `lambdalet status`: "mode" and,
        in "missing", what this backend cannot give on this host (said loudly)."""
        return {"mode": self.name, "missing": []}

    def cleanup_stale(self) -> list[str]:
        """Remove what a crashed predecessor using the same resources left behind (processes, cgroups,
        mounts); returns one line per thing removed. Backends that need it run it when they open."""
        return []


# gVisor-style platform table: backends register a factory under a name; callers look it up.
_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    if name in _BACKENDS:
        raise ValueError(f"sandbox backend {name!r} already registered")
    _BACKENDS[name] = factory


def lookup_backend(name: str) -> Callable[..., Backend]:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown sandbox backend {name!r}; known: {sorted(_BACKENDS)}") from None


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def open_backend(name: str, **options: Any) -> Backend:
    return lookup_backend(name)(**options)
