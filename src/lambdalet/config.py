"""Typed settings, built once by the CLI and passed down; nothing below reads globals or env vars."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 9000
DEFAULT_REGION = "us-east-1"


def default_data_dir() -> Path:
    return Path(os.environ.get("LAMBDALET_DATA_DIR") or Path.home() / ".lambdalet")


def default_database_url() -> str | None:
    """$LAMBDALET_DATABASE_URL (e.g. PostgreSQL), so every subcommand finds the server's database."""
    return os.environ.get("LAMBDALET_DATABASE_URL") or None


@dataclass(frozen=True)
class DataDirLayout:
    """What a data dir holds, spelled once (server, CLI tools and the packages that own a file)."""
    root: Path

    @property
    def lock_file(self) -> Path:
        """One server (or offline tool that writes) per data dir holds it (server/startup.py)."""
        return self.root / "server.lock"

    @property
    def state_db(self) -> Path:
        """The SQLite state store, unless a --database-url names another."""
        return self.root / "state.db"

    @property
    def master_key(self) -> Path:
        return self.root / "master.key"

    @property
    def keys(self) -> Path:
        """KEKs (the platform key, KMS keys), each wrapped by the master key (crypto/keyring.py)."""
        return self.root / "keys"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def audit(self) -> Path:
        """The audit trail's signing key and its public half (audit/digests.py)."""
        return self.root / "audit"

    @property
    def endpoint_file(self) -> Path:
        """Where the running server writes its URL, so `lambdalet env` can find it."""
        return self.root / "endpoint.json"

    @property
    def run_fallback(self) -> Path:
        """Volatile state's parent when the host has no /dev/shm."""
        return self.root / "run"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    insecure_http: bool = False
    region: str = DEFAULT_REGION
    database_url: str | None = field(default_factory=default_database_url)   # None: sqlite file in data_dir
    max_clock_skew_s: int = 300          # SigV4: AWS refuses requests more than 5 minutes off
    concurrent_executions_limit: int = 1000   # the account concurrency limit (AWS default)
    sandbox: str = "namespace"           # isolation backend: namespace | process | microvm
    env_idle_ttl_s: float = 300.0        # an idle execution environment is reaped after this
    env_max_lifetime_s: float = 7200.0   # and every environment is replaced after this
    # Execution environments per account and in all (invoke/envbudget.py, sandbox/cgroups.py).
    account_envs: int = 200              # live environments (running, idle or starting) per account
    account_env_mb: int | None = None    # their MemorySize summed, MiB, per account; None: 10 GiB or half of the next
    env_memory_mb: int | None = None     # the same over all accounts; None: 75% of the host's RAM
    account_sync_invokes: int = 128      # synchronous Invokes in flight per account (API worker threads held)
    account_pids: int = 4096             # processes and threads of an account's environments (pids cgroup)
    platform_pids: int | None = None     # ... of all environments; None: 16,384 or half of kernel.pid_max
    sandbox_slots: int = 2               # pre-isolated slots kept per forked runtime (sandbox/slots.py); 0: none
    egress: str = "public"               # environments' outbound network by default: none | public | all (egress_policy.py)
    runtime_dir: Path | None = None      # tmpfs for unpacked code (never the data dir: no plain code at rest)
    async_workers: int = 16              # threads delivering Event invocations (lambdalet.events)
    esm_batches: int = 64                # event source mapping batches in flight, all accounts (3/4 at most for one)
    async_retry_scale: float = 1.0       # scales async retry backoff and event-age checks (tests: 0.01)
    schedule_test_seconds: bool = False  # TEST ONLY: rate(N seconds) schedules and a 0.2 s scheduler tick
    allow_unknown_roles: bool = False    # development: accept a function Role Lambda cannot assume (warns)
    lambda_principals: tuple[str, ...] = ("lambda.amazonaws.com",)   # trust-policy principals meaning "Lambda"
    runtimes_dir: Path | None = None     # provisioned runtimes (node22/ from `make install`); None: <repo>/.venv/runtimes if any
    runtime_interpreters: tuple[str, ...] = ()   # extra pythonX.Y / node binaries to offer as runtimes
    # What a client can make the API hold before its signature is verified (api/app.py, server/http_protocol.py).
    max_connections: int = 1000          # open connections; past it requests answer 503
    max_unverified_body_mb: int = 256    # bodies buffered, all connections together, before their signature is checked
    request_head_timeout_s: float = 10.0 # a request's line and headers must arrive within this
    request_body_timeout_s: float = 120.0   # and its body within this
    log_rate_kb: int = 1024              # function log output per function (log group), KiB/s (logs/quotas.py)
    log_account_mb: int = 4096           # stored function logs per account, MiB; the oldest go first
    unpacked_mb: int = 8192              # unpacked code and layer sets on tmpfs, MiB, all accounts (invoke/unpacked.py)
    unpacked_account_mb: int = 2048      # ... and per account
    audit_data_events: bool = False              # also record data events (Invoke, SendMessage, ...): audit/records.py
    audit_digest_every: int = 500                # a signed audit digest at least every this many records
    audit_digest_interval_s: float = 3600.0      # a signed audit digest at least this often, even idle
    audit_digest_dir: Path | None = None         # digests also written here (another mount), audit/digest_files.py
    disk_low_mb: int = 256               # data disk low-water mark: max(this, disk_low_percent); store/headroom.py
    disk_low_percent: float = 2.0        # ... below it logs are dropped, below half of it writes are refused
    # What the server tells about itself (observe/): its log, and the Prometheus scrape listener.
    log_level: str = "info"              # debug | info | warning | error
    log_format: str = "text"             # text (key=value fields) | json (one object a line)
    metrics_listen: str | None = None    # HOST:PORT of the plain-HTTP /metrics listener; None: off

    def host_runtimes(self):
        """What this host can run (runtime/hostruntimes.py), probed once per Settings."""
        from lambdalet.runtime.hostruntimes import discover_managed
        cached = self.__dict__.get("_host_runtimes")
        if cached is None:
            cached = discover_managed(runtimes_dir=self.runtimes_dir, interpreters=self.runtime_interpreters)
            object.__setattr__(self, "_host_runtimes", cached)
        return cached

    @property
    def layout(self) -> DataDirLayout:
        return DataDirLayout(self.data_dir)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.layout.state_db}"

    @property
    def blob_dir(self) -> Path:
        return self.layout.blobs

    @property
    def tls_dir(self) -> Path:
        return self.layout.tls

    @property
    def master_key_path(self) -> Path:
        return self.layout.master_key

    @property
    def instance_id(self) -> str:
        """Stable per data dir: names this server's cgroups and volatile directories."""
        return hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        """Volatile per-host state (unpacked code). Defaults to /dev/shm so plain code never hits disk."""
        if self.runtime_dir:
            return self.runtime_dir
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else self.layout.run_fallback
        return base / f"lambdalet-{self.instance_id}"

    @property
    def status_file(self) -> Path:
        """The running server's disk state (store/headroom.py), on tmpfs: readable on a full disk."""
        return self.run_dir / "status.json"

    @property
    def endpoint_file(self) -> Path:
        """Where the running server writes its URL, so `lambdalet env` can find it."""
        return self.layout.endpoint_file

    @property
    def activity_file(self) -> Path:
        """The running server's functions, environments, queues and concurrency (observe/activity.py)."""
        return self.run_dir / "activity.json"
