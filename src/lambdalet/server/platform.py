"""Builds the platform's components from Settings, in dependency order. The one place that wires."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto.keyring import FileKeyMaterialStore, Keyring
from lambdalet.crypto.master import load_or_create_master_key
from lambdalet.iam import IdentityStore
from lambdalet.invoke.codecache import CodeCache
from lambdalet.invoke.concurrency import ConcurrencyLimiter
from lambdalet.invoke.invoker import Invoker
from lambdalet.invoke.pool import EnvironmentPool
from lambdalet.invoke.targets import TargetResolver
from lambdalet.queues import QueueService
from lambdalet.sandbox import open_backend
from lambdalet.services.lambda_service import LambdaService
from lambdalet.store.db import Database, open_database

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

    def close(self) -> None:
        if self.invoker is not None:
            self.invoker.close()
        self.db.close()


def open_keyring(settings: Settings) -> Keyring:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    master = load_or_create_master_key(settings.master_key_path)
    return Keyring.open(master, FileKeyMaterialStore(settings.data_dir / "keys"))


def build_invoker(settings: Settings, db: Database, blobs: BlobStore, service: LambdaService) -> Invoker:
    if settings.sandbox == "process":
        log.warning("SANDBOX DISABLED (--sandbox process): function code runs as an ordinary process of this "
                    "server, NOT isolated from the host or from other functions. Never run untrusted code this way.")
        backend = open_backend("process", allow_unisolated=True)
    else:
        # Cgroups and mounts are named per data dir, so crash clean-up of one server never
        # touches another server's environments on the same host.
        backend = open_backend(settings.sandbox, cgroup_parent=f"lambdalet-{settings.instance_id}",
                               root_dir=str(settings.run_dir / "root"))
    pool = EnvironmentPool(settings.env_idle_ttl_s, settings.env_max_lifetime_s)
    return Invoker(TargetResolver(service.resolver, db), backend, CodeCache(settings.run_dir / "code", blobs), pool,
                   ConcurrencyLimiter(settings.concurrent_executions_limit), settings.region)


def build_platform(settings: Settings, *, with_invoker: bool = True) -> Platform:
    keyring = open_keyring(settings)
    db = open_database(settings.db_url)
    blobs = BlobStore(settings.blob_dir, keyring)
    identity = IdentityStore(db, keyring)
    service = LambdaService(db, keyring, blobs, settings)
    platform = Platform(settings, db, keyring, blobs, identity, service, QueueService(db, keyring, settings))
    if with_invoker:
        platform.invoker = build_invoker(settings, db, blobs, service)
    return platform
