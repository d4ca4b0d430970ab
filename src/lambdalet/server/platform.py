"""Builds the platform's components from Settings, in dependency order. The one place that wires."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from lambdalet.audit import AuditRecorder, build_recorder
from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto.keyring import Keyring
from lambdalet.crypto.keyring import open_keyring as crypto_open_keyring
from lambdalet.events import build_async_events
from lambdalet.events.esm import build_event_source_mappings
from lambdalet.iam import IdentityStore
from lambdalet.kms import FunctionKeys, KmsService
from lambdalet.logs.quotas import LogQuotas
from lambdalet.logs import LogsService, LogStore
from lambdalet.invoke.codecache import CodeCache
from lambdalet.invoke.unpacked import UnpackedBudget
from lambdalet.invoke.concurrency import ConcurrencyLimiter
from lambdalet.invoke.credentials import ExecutionRoles, ensure_default_role
from lambdalet.invoke.invoker import Invoker
from lambdalet.invoke.layercache import LayerCache
from lambdalet.invoke.envbudget import BudgetLimits, EnvBudget, PlatformOverhead, default_total_mb
from lambdalet.invoke.pool import EnvironmentPool
from lambdalet.invoke.version_watch import stale_keys
from lambdalet.invoke.targets import TargetResolver
from lambdalet.queues import QueueService
from lambdalet.sandbox import open_backend
from lambdalet.sandbox.cgroups import default_platform_pids
from lambdalet.services.lambda_service import LambdaService
from lambdalet.services.runtimes import default_catalogue
from lambdalet.store.db import Database, open_database
from lambdalet.store.headroom import DiskHeadroom

log = logging.getLogger("lambdalet")


@dataclass
class Platform:
    settings: Settings
    db: Database
    keyring: Keyring
    blobs: BlobStore
    identity: IdentityStore
    lambda_service: LambdaService
    queues: QueueService
    invoker: Invoker | None = None
    events: Any = None               # lambdalet.events.AsyncEvents (Event invocations), with the invoker
    logs: LogStore | None = None
    event_source_mappings: Any = None   # lambdalet.events.esm.EventSourceMappings (queue pollers)
    schedules: Any = None               # lambdalet.schedules.SchedulerService (the "scheduler" API)
    scheduler: Any = None               # lambdalet.schedules.Scheduler (the thread that fires them)
    logs_service: LogsService | None = None
    audit: AuditRecorder | None = None
    kms: KmsService | None = None
    headroom: DiskHeadroom | None = None   # free space on the data disk: logs, then writes, stop before ENOSPC

    def start(self) -> None:
        """Background work that delivers events: async-invoke pollers, then queue mappings."""
        if self.events is not None:
            self.events.start()
        if self.event_source_mappings is not None:
            self.event_source_mappings.start()
        if self.scheduler is not None:
            self.scheduler.start()

    def close(self) -> None:
        if self.scheduler is not None:     # stops queueing new schedule invocations first
            self.scheduler.close()
        if self.event_source_mappings is not None:
            self.event_source_mappings.close()
        if self.events is not None:  # pollers stop before the environments they use go away
            self.events.close()
        if self.invoker is not None:
            self.invoker.close()
        if self.logs is not None:    # after the environments: their last lines are written
            self.logs.close()
        if self.audit is not None:   # last before the database: drains, commits, signs the final digest
            self.audit.close()
        if self.headroom is not None:
            self.headroom.close()
        self.db.close()


def open_keyring(settings: Settings) -> Keyring:
    return crypto_open_keyring(settings.data_dir, settings.master_key_path)


def build_invoker(settings: Settings, db: Database, blobs: BlobStore, service: LambdaService,
                  logs: LogStore | None = None) -> Invoker:
    # Unpacked code and layer sets share one tmpfs budget, in all and per account (invoke/unpacked.py);
    # an unleased tree is kept as long as an idle environment would be. Their file systems are mounted
    # before the sandbox's fork server copies the host's mount table.
    budget = UnpackedBudget(total_bytes=settings.unpacked_mb << 20, account_bytes=settings.unpacked_account_mb << 20,
                            idle_s=settings.env_idle_ttl_s)
    own_fs = settings.sandbox != "process" and os.geteuid() == 0
    code = CodeCache(settings.run_dir / "code", blobs, budget=budget, own_fs=own_fs)
    layers = LayerCache(settings.run_dir / "layers", blobs, budget=budget, own_fs=own_fs)
    if settings.sandbox == "process":
        log.warning("SANDBOX DISABLED (--sandbox process): function code runs as an ordinary process of this "
                    "server, NOT isolated from the host or from other functions. Never run untrusted code this way.")
        backend = open_backend("process", allow_unisolated=True, host_runtimes=settings.host_runtimes())
    else:
        # Cgroups and mounts are named per data dir, so crash clean-up of one server never
        # touches another server's environments on the same host.
        # Each data dir also gets its own block of 10,000 host uids, so two servers on one host never
        # run environments as the same uid (uids are what separates environments outside the namespaces).
        uid_block = int(settings.instance_id[:8], 16) % 400
        backend = open_backend(settings.sandbox, cgroup_parent=f"lambdalet-{settings.instance_id}",
                               root_dir=str(settings.run_dir / "root"),
                               uid_base=1_000_000 + uid_block * 10_000, uid_count=10_000,
                               host_runtimes=settings.host_runtimes(), slots=settings.sandbox_slots,
                               slot_ttl_s=settings.env_idle_ttl_s, slots_dir=str(settings.run_dir / "slots"),
                               account_pids=settings.account_pids, egress=settings.egress,
                               platform_pids=settings.platform_pids or default_platform_pids())
    # Live environments and their memory, per account and in all; deleted or updated versions'
    # environments go as soon as the control plane's generation moves (invoke/envbudget.py, pool.py).
    # By default one account may hold half the platform's budget at most, so another always has room.
    # The server's own memory and the idle slots' are taken off the platform's budget (PlatformOverhead).
    total_mb = settings.env_memory_mb or default_total_mb()
    budget = EnvBudget(BudgetLimits(account_envs=settings.account_envs, total_mb=total_mb,
                                    account_mb=settings.account_env_mb or min(10240, total_mb // 2)),
                       overhead=PlatformOverhead(backend))
    pool = EnvironmentPool(settings.env_idle_ttl_s, settings.env_max_lifetime_s, budget=budget)
    pool.watch(lambda: service.resolver.generation, stale_keys(db))
    invoker = Invoker(TargetResolver(service.resolver, db), backend, code, pool,
                      ConcurrencyLimiter(settings.concurrent_executions_limit), settings.region, logs=logs)
    invoker.layers = layers                           # functions' layers, for /opt
    return invoker


def build_kms(db: Database, keyring: Keyring, settings: Settings, service: LambdaService) -> KmsService:
    """KMS, and its hooks into Lambda: KMSKeyArn checks, the data plane's key-state check, and
    the resolver cache dropped whenever a key's state changes. server/run.py sets `kms.authorizer`
    to the IAM service's Authorizer (key policies delegating to the account then need IAM's allow)."""
    kms = KmsService(db, keyring, settings)
    kms.purge_expired()                        # keys whose deletion date passed while stopped
    service.deps.kms = service.resolver.kms = FunctionKeys(kms)
    kms.listeners.append(service.resolver.invalidate)
    return kms


def wire_execution_roles(platform: Platform, directory, authorizer) -> ExecutionRoles:
    """Execution roles (invoke/credentials.py): Role checks in the control plane, role sessions for
    environments. Uses the IAM service's own Directory and Authorizer, so policy caches stay coherent."""
    ensure_default_role(directory)
    roles = ExecutionRoles(directory, platform.identity, authorizer,
                           principals=platform.settings.lambda_principals,
                           allow_unknown=platform.settings.allow_unknown_roles)
    if platform.settings.allow_unknown_roles:
        log.warning("--allow-unknown-roles: functions may name roles that do not exist or do not trust Lambda "
                    "(development only; AWS refuses them). Such functions run without credentials.")
    platform.lambda_service.deps.roles = roles
    if platform.invoker is not None:
        platform.invoker.credentials = roles
    return roles


def build_platform(settings: Settings, *, with_invoker: bool = True) -> Platform:
    keyring = open_keyring(settings)
    db = open_database(settings.db_url)
    blobs = BlobStore(settings.blob_dir, keyring)
    identity = IdentityStore(db, keyring)
    # The catalogue refuses runtimes this host has no interpreter for (runtime/hostruntimes.py).
    service = LambdaService(db, keyring, blobs, settings, runtimes=default_catalogue().with_host(settings.host_runtimes()))
    platform = Platform(settings, db, keyring, blobs, identity, service, QueueService(db, keyring, settings))
    platform.headroom = DiskHeadroom(settings.data_dir, low_mb=settings.disk_low_mb,
                                     low_percent=settings.disk_low_percent,
                                     status_file=settings.status_file if settings.run_dir.is_dir() else None).start()
    platform.logs = LogStore(db, keyring, quotas=LogQuotas(rate_bytes_per_s=settings.log_rate_kb << 10,
                                                           account_bytes=settings.log_account_mb << 20),
                             headroom=platform.headroom)
    platform.logs_service = LogsService(platform.logs)
    platform.audit = build_recorder(settings, db, keyring, identity)
    platform.kms = build_kms(db, keyring, settings, service)
    if with_invoker:
        platform.invoker = build_invoker(settings, db, blobs, service, platform.logs)
        platform.invoker.code.keys = service.deps.kms       # SourceKMSKeyArn packages (invoke/codecache.py)
        platform.events = build_async_events(db, keyring, platform.queues, platform.invoker, service.resolver,
                                             settings)
        platform.invoker.events = platform.events
        platform.event_source_mappings = build_event_source_mappings(platform)
        from lambdalet.schedules import build_scheduler
        platform.schedules, platform.scheduler = build_scheduler(
            platform, test_seconds=getattr(settings, "schedule_test_seconds", False))
    return platform
