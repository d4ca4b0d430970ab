"""Builds the platform's components from Settings, in dependency order, everything passed through
constructors: the one place that wires. Read `build_platform` top to bottom for the list of components;
server/bindings.py says which of them serves which API operation, server/run.py serves the result."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from lambdalet.api import audit_hook
from lambdalet.api.app import ApiApp, RequestLimits
from lambdalet.api.code_download import code_route
from lambdalet.api.function_url import FunctionUrlFront
from lambdalet.audit import AuditRecorder, CloudTrailService, build_recorder
from lambdalet.blobs import BlobStore
from lambdalet.config import Settings
from lambdalet.crypto.keyring import Keyring
from lambdalet.crypto.keyring import open_keyring as crypto_open_keyring
from lambdalet.events import AsyncEvents, AsyncInvocations, async_events
from lambdalet.events.authority import RoleAuthority
from lambdalet.events.esm import EventSourceMappings
from lambdalet.events.sources import SqsEndpointRegistry
from lambdalet.iam import IdentityStore
from lambdalet.iam.authz import Authorizer
from lambdalet.iam.directory import Directory
from lambdalet.iam.iam_service import IamService
from lambdalet.iam.identity import BOOTSTRAP_ACCOUNT
from lambdalet.iam.organizations import OrganizationStore
from lambdalet.iam.organizations_service import OrganizationsService
from lambdalet.iam.request_map import RequestAuthorizer
from lambdalet.iam.resource_tags import IamResourceTags
from lambdalet.iam.scp import ServiceControlPolicies
from lambdalet.iam.sts_service import StsService
from lambdalet.invoke.codecache import CodeCache
from lambdalet.invoke.concurrency import AccountShares, ConcurrencyLimiter
from lambdalet.invoke.credentials import ExecutionRoles, ensure_default_role
from lambdalet.invoke.envbudget import BudgetLimits, EnvBudget, PlatformOverhead, default_total_mb
from lambdalet.invoke.invoker import Invoker
from lambdalet.invoke.layercache import LayerCache
from lambdalet.invoke.pool import EnvironmentPool
from lambdalet.invoke.targets import TargetResolver
from lambdalet.invoke.unpacked import UnpackedBudget
from lambdalet.invoke.version_watch import stale_keys
from lambdalet.kms import FunctionKeys, KmsService
from lambdalet.logs import LogsService, LogStore
from lambdalet.logs.quotas import LogQuotas
from lambdalet.queues import QueueService
from lambdalet.queues.policy import queue_policies
from lambdalet.runtime.api_proxy import InProcessApi
from lambdalet.runtime.hostruntimes import HostRuntimes
from lambdalet.sandbox import open_backend
from lambdalet.sandbox.api import Backend
from lambdalet.sandbox.cgroups import default_platform_pids
from lambdalet.schedules import Scheduler, build_scheduler
from lambdalet.observe.activity import ActivitySnapshots
from lambdalet.observe.progress import progress
from lambdalet.server.bindings import service_bindings
from lambdalet.server.observability import wire_observability
from lambdalet.services.function_urls import FunctionUrlService, url_lookup
from lambdalet.services.lambda_service import LambdaService
from lambdalet.services.layers import layer_policies
from lambdalet.services.policies import function_facts
from lambdalet.services.resolver import FunctionResolver
from lambdalet.services.runtimes import default_catalogue
from lambdalet.store.db import Database, open_database
from lambdalet.store.disk_gate import DiskGate, admitting
from lambdalet.store.headroom import DiskHeadroom

log = logging.getLogger("lambdalet")


@dataclass(frozen=True)
class Platform:
    settings: Settings
    db: Database
    keyring: Keyring
    blobs: BlobStore
    identity: IdentityStore
    headroom: DiskHeadroom            # free space on the data disk: logs, then writes, stop before ENOSPC
    logs: LogStore
    audit: AuditRecorder
    authorizer: Authorizer
    kms: KmsService
    lambda_service: LambdaService
    queues: QueueService
    invoker: Invoker
    events: AsyncEvents               # Event invocations: queued, then delivered by its pollers
    event_source_mappings: EventSourceMappings
    scheduler: Scheduler              # the thread that fires schedules
    app: ApiApp
    asgi: Callable                    # what uvicorn serves: `app`, through the environments' API path
    activity: ActivitySnapshots | None = None   # what `lambdalet status` reads (observe/activity.py)

    def start(self) -> None:
        """Background work that delivers events: async-invoke pollers, then queue mappings, then schedules."""
        self.events.start()
        self.event_source_mappings.start()
        self.scheduler.start()
        if self.activity is not None:
            self.activity.start()

    def close(self) -> None:
        if self.activity is not None:
            self.activity.close()
        self.scheduler.close()              # stops queueing new schedule invocations first
        self.event_source_mappings.close()
        self.events.close()                 # pollers stop before the environments they use go away
        self.invoker.close()
        self.logs.close()                   # after the environments: their last lines are written
        self.audit.close()                  # last before the database: drains, commits, signs the final digest
        self.headroom.close()
        self.db.close()


def open_keyring(settings: Settings) -> Keyring:
    return crypto_open_keyring(settings.data_dir, settings.master_key_path)


def build_platform(settings: Settings, *, endpoint: str | None = None) -> Platform:
    """Every component, in dependency order. `endpoint`: this server's own scheme://host:port
    (FunctionUrl is reported on it); None reports the one each request came in on."""
    # State: keys, database, code blobs, identities (the bootstrap administrator made on first start).
    keyring = open_keyring(settings)
    with progress("opening the database (migrations)"):
        db = open_database(settings.db_url)
    blobs = BlobStore(settings.blob_dir, keyring)
    identity = IdentityStore(db, keyring)
    admin = identity.bootstrap_admin()
    log.info("administrator access key %s (account %s); `lambdalet env` prints the credentials",
             admin.access_key_id, admin.account_id)
    headroom = DiskHeadroom(settings.data_dir, low_mb=settings.disk_low_mb, low_percent=settings.disk_low_percent,
                            status_file=settings.status_file if settings.run_dir.is_dir() else None).start()
    logs = LogStore(db, keyring, quotas=LogQuotas(rate_bytes_per_s=settings.log_rate_kb << 10,
                                                  account_bytes=settings.log_account_mb << 20), headroom=headroom)
    audit = build_recorder(settings, db, keyring, identity)

    # IAM: one Directory and one Authorizer for every decision (policy caches stay coherent); the
    # organization's store feeds aws:PrincipalOrgID and service control policies into each decision.
    directory = Directory(db)
    directory.ensure_builtin()          # AWS-managed policies and the bootstrap administrator's
    organization = OrganizationStore(db, directory)
    scps = ServiceControlPolicies(organization)
    authorizer = Authorizer(directory, resource_tags=IamResourceTags(directory),
                            principal_org=organization.principal_org, service_control=scps.levels)
    roles = _execution_roles(settings, directory, identity, authorizer)
    authority = RoleAuthority(directory, authorizer)    # mappings, destinations, schedules act as tenants' roles

    # KMS (key policies naming the account defer to IAM), then the control plane, whose cached view
    # of functions every key state change invalidates.
    kms = KmsService(db, keyring, settings, authorizer=authorizer)
    kms.purge_expired()                 # keys whose deletion date passed while stopped
    function_keys = FunctionKeys(kms)   # KMSKeyArn / SourceKMSKeyArn checks, for services/ and invoke/
    resolver = FunctionResolver(db, keyring, settings, kms=function_keys)
    kms.listeners.append(resolver.invalidate)
    # The catalogue refuses runtimes this host has no interpreter for (runtime/hostruntimes.py); the
    # sandbox runs the ones it has. Probed once.
    with progress("probing this host's runtimes"):
        host_runtimes = settings.host_runtimes()
    lambda_service = LambdaService(db, keyring, blobs, settings,
                                   runtimes=default_catalogue().with_host(host_runtimes),
                                   resolver=resolver, kms=function_keys, roles=roles, authorizer=authorizer)
    queues = QueueService(db, keyring, settings)

    # Data plane: Event invocations are accepted by AsyncInvocations (the invoker's Event branch),
    # delivered by AsyncEvents' pollers through the invoker.
    api_path = InProcessApi()           # functions reach the API through their environment's init only
    targets = TargetResolver(resolver, db)
    invocations = AsyncInvocations(db, keyring, queues, targets, settings.region)
    long_calls = AccountShares(settings.account_sync_invokes)   # an account's sync and streamed invocations
    invoker = _invoker(settings, db, blobs, targets, logs, function_keys, roles,
                       backend_of=lambda: _backend(settings, host_runtimes, api_path), generation=lambda: resolver.generation,
                       submit_event=invocations.submit_invoke, long_calls=long_calls)
    events = async_events(db, queues, invocations, invoker, resolver, settings, authority=authority)
    event_source_mappings = EventSourceMappings(db, queues, invoker, settings, authority=authority,
                                                endpoints=SqsEndpointRegistry(settings.data_dir, keyring))
    schedules, scheduler = build_scheduler(db, keyring, queues, targets, invocations.enqueue, authority=authority,
                                           test_seconds=settings.schedule_test_seconds)

    # The API: the services' objects, the bindings table, one authorization step, the internal routes.
    function_urls = FunctionUrlService(db, endpoint=endpoint)
    bindings = service_bindings(
        lambda_service=lambda_service, invoker=invoker, async_events=events,
        event_source_mappings=event_source_mappings, function_urls=function_urls, queues=queues,
        logs=LogsService(logs), iam=IamService(directory, identity, authorizer),
        sts=StsService(directory, identity, authorizer),
        organizations=OrganizationsService(organization, authorizer, scps), kms=kms,
        cloudtrail=CloudTrailService(db, keyring, audit, unattributed_account=BOOTSTRAP_ACCOUNT), schedules=schedules)
    authorize = RequestAuthorizer(authorizer, function_facts=function_facts(db), layer_policies=layer_policies(db),
                                  generation=lambda: resolver.generation, queue_policies=queue_policies(queues),
                                  queue_generation=lambda: queues.generation)
    url_front = FunctionUrlFront(url_lookup(db), identity.lookup, authorize, invoker,
                                 max_skew_s=settings.max_clock_skew_s, principal_org=organization.principal_org)
    app = ApiApp(bindings, identity.lookup, max_skew_s=settings.max_clock_skew_s,
                 authorize=admitting(authorize, DiskGate(headroom)),   # a nearly full disk: retryable refusals
                 limits=RequestLimits(unverified_body_bytes=settings.max_unverified_body_mb << 20,
                                      body_timeout_s=settings.request_body_timeout_s,
                                      sync_invokes_per_account=settings.account_sync_invokes),
                 sync_invokes=long_calls, internal_routes=[code_route(keyring, blobs, function_keys, db), *url_front.routes()])
    audit_hook.install(audit)
    return Platform(settings, db, keyring, blobs, identity, headroom, logs, audit, authorizer, kms, lambda_service,
                    queues, invoker, events, event_source_mappings, scheduler, app, asgi=api_path.wrap(app.asgi),
                    activity=wire_observability(settings, db, invoker))


def _execution_roles(settings: Settings, directory: Directory, identity: IdentityStore,
                     authorizer: Authorizer) -> ExecutionRoles:
    """Execution roles (invoke/credentials.py): Role checks in the control plane, role sessions for
    environments."""
    ensure_default_role(directory)
    if settings.allow_unknown_roles:
        log.warning("--allow-unknown-roles: functions may name roles that do not exist or do not trust Lambda "
                    "(development only; AWS refuses them). Such functions run without credentials.")
    return ExecutionRoles(directory, identity, authorizer, principals=settings.lambda_principals,
                          allow_unknown=settings.allow_unknown_roles)


def _backend(settings: Settings, host_runtimes: HostRuntimes, api_path: InProcessApi) -> Backend:
    from lambdalet.server.startup import announce_isolation
    backend = _open_sandbox(settings, host_runtimes, api_path)
    announce_isolation(settings, backend)     # the start-up banner, and run_dir/isolation.json for `lambdalet status`
    return backend


def _open_sandbox(settings: Settings, host_runtimes: HostRuntimes, api_path: InProcessApi) -> Backend:
    if settings.sandbox == "process":
        log.warning("SANDBOX DISABLED (--sandbox process): function code runs as an ordinary process of this "
                    "server, NOT isolated from the host or from other functions. Never run untrusted code this way.")
        return open_backend("process", allow_unisolated=True, host_runtimes=host_runtimes,
                            api_forwarder=api_path)
    # Cgroups and mounts are named per data dir, so crash clean-up of one server never touches another
    # server's environments on the same host. Each data dir also gets its own block of 10,000 host uids,
    # so two servers on one host never run environments as the same uid (uids are what separates
    # environments outside the namespaces).
    uid_block = int(settings.instance_id[:8], 16) % 400
    return open_backend(settings.sandbox, cgroup_parent=f"lambdalet-{settings.instance_id}",
                        root_dir=str(settings.run_dir / "root"),
                        uid_base=1_000_000 + uid_block * 10_000, uid_count=10_000,
                        host_runtimes=host_runtimes, slots=settings.sandbox_slots,
                        slot_ttl_s=settings.env_idle_ttl_s, slots_dir=str(settings.run_dir / "slots"),
                        account_pids=settings.account_pids, egress=settings.egress,
                        platform_pids=settings.platform_pids or default_platform_pids(), api_forwarder=api_path)


def _invoker(settings: Settings, db: Database, blobs: BlobStore, targets: TargetResolver, logs: LogStore,
             function_keys: FunctionKeys, roles: ExecutionRoles, *, backend_of: Callable[[], Backend],
             generation: Callable[[], int], submit_event: Callable, long_calls: AccountShares) -> Invoker:
    # Unpacked code and layer sets share one tmpfs budget, in all and per account (invoke/unpacked.py);
    # an unleased tree is kept as long as an idle environment would be. Their file systems are mounted
    # before the sandbox's fork server copies the host's mount table.
    unpacked = UnpackedBudget(total_bytes=settings.unpacked_mb << 20, account_bytes=settings.unpacked_account_mb << 20,
                              idle_s=settings.env_idle_ttl_s)
    own_fs = settings.sandbox != "process" and os.geteuid() == 0
    code = CodeCache(settings.run_dir / "code", blobs, budget=unpacked, own_fs=own_fs, keys=function_keys)
    layers = LayerCache(settings.run_dir / "layers", blobs, budget=unpacked, own_fs=own_fs)
    with progress("starting the sandbox (fork server, pre-isolated slots)"):
        backend = backend_of()          # after the mounts above
    # Live environments and their memory, per account and in all; deleted or updated versions'
    # environments go as soon as the control plane's generation moves (invoke/envbudget.py, pool.py).
    # By default one account may hold half the platform's budget at most, so another always has room.
    # The server's own memory and the idle slots' are taken off the platform's budget (PlatformOverhead).
    total_mb = settings.env_memory_mb or default_total_mb()
    budget = EnvBudget(BudgetLimits(account_envs=settings.account_envs, total_mb=total_mb,
                                    account_mb=settings.account_env_mb or min(10240, total_mb // 2)),
                       overhead=PlatformOverhead(backend))
    pool = EnvironmentPool(settings.env_idle_ttl_s, settings.env_max_lifetime_s, budget=budget)
    pool.watch(generation, stale_keys(db))
    return Invoker(targets, backend, code, pool, ConcurrencyLimiter(settings.concurrent_executions_limit),
                   settings.region, logs=logs, layers=layers, credentials=roles, submit_event=submit_event,
                   stream_threads=long_calls)
