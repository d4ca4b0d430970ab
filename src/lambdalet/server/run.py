"""Serve the platform: bind, TLS, uvicorn, and the endpoint file that `lambdalet env` reads."""
from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import signal
import socket
import sys

import uvicorn

from lambdalet.api import audit_hook
from lambdalet.api.app import ApiApp, RequestLimits, ServiceBinding
from lambdalet.audit import CloudTrailService
from lambdalet.api.code_download import code_route
from lambdalet.api.function_url import FunctionUrlFront
from lambdalet.api.json_protocol import JsonProtocol
from lambdalet.api.protocol import RestJsonProtocol, load_service_model
from lambdalet.api.query_protocol import QueryProtocol
from lambdalet.iam.iam_service import build_iam
from lambdalet.api.organizations_protocol import OrganizationsProtocol
from lambdalet.iam.organizations_service import build_organizations
from lambdalet.iam.request_map import RequestAuthorizer
from lambdalet.queues.policy import queue_policies
from lambdalet.services.function_urls import FunctionUrlService, url_domain, url_lookup
from lambdalet.services.layers import layer_policies
from lambdalet.services.policies import function_facts
from lambdalet.config import Settings
from lambdalet.iam.identity import BOOTSTRAP_ACCOUNT
from lambdalet.kms import KmsBinding
from lambdalet.runtime.api_proxy import InProcessApi
from lambdalet.server.http_protocol import CoalescingHttpToolsProtocol
from lambdalet.events.authority import wire as wire_authority
from lambdalet.server.platform import build_platform, wire_execution_roles
from lambdalet.server.tls import ensure_tls, server_context
from lambdalet.sandbox import mounts
from lambdalet.sandbox.instances import RunDir, sweep_stale
from lambdalet.store.disk_gate import DiskGate, admitting
from lambdalet.store.permissions import secure_data_dir

log = logging.getLogger("lambdalet")
# An idle keep-alive connection is closed after this (uvicorn's default, 5 s, made clients that pause
# a few seconds race the close and see ConnectionClosedError on their next call; AWS's endpoints and
# common load balancers keep idle connections for about a minute).
KEEP_ALIVE_S = 60


def _write_endpoint(settings: Settings, url: str, ca_bundle: str | None) -> None:
    doc = {"url": url, "pid": os.getpid(), "region": settings.region, "ca_bundle": ca_bundle}
    tmp = settings.endpoint_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, settings.endpoint_file)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose listener says TCP;
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def _lock_data_dir(settings: Settings):
    """One server per data dir: a second one would share its database, keys and cgroups."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fh = open(settings.data_dir / "server.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another lambdalet server is using {settings.data_dir}") from None
    return fh


def _own_mount_namespace(settings: Settings) -> None:
    """Everything this server mounts (unpacked code and layers, the fork server's mounts) lives in a
    mount namespace of its own, so it is gone with the server's processes, even after kill -9: no
    plaintext code stays on the host's /dev/shm. After the sweep (it unmounts in the host's namespace)
    and before anything is mounted or any thread starts."""
    if settings.sandbox == "process" or os.geteuid() != 0:
        return
    why = mounts.private_mount_namespace()
    if why is not None:
        log.warning("could not give the server a mount namespace of its own (%s): its mounts are in the "
                    "host's and outlive a killed server until the next start", why)


def serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _lock = _lock_data_dir(settings)  # noqa: F841  (held for the life of the process)
    secure_data_dir(settings.data_dir, None if settings.database_url else settings.data_dir / "state.db")
    run_dir = RunDir.claim(settings.run_dir)     # held while we live: other servers' sweeps skip it
    sweep_stale(settings.run_dir.parent, keep=settings.run_dir)   # leftovers of servers that are gone
    _own_mount_namespace(settings)
    try:
        platform = build_platform(settings)
    except PermissionError as e:
        raise SystemExit(f"cannot start the '{settings.sandbox}' sandbox: {e}. Run as root, or pass "
                         "--sandbox process to run functions WITHOUT isolation (development only).") from None
    admin = platform.identity.bootstrap_admin()
    log.info("administrator access key %s (account %s); `lambdalet env` prints the credentials",
             admin.access_key_id, admin.account_id)

    iam_service, sts_service, _directory, authorizer = build_iam(platform)
    wire_execution_roles(platform, _directory, authorizer)   # Role checks; role sessions for environments
    wire_authority(platform, _directory, authorizer)   # mappings, destinations, schedules act as tenants' roles
    platform.kms.authorizer = authorizer     # key policies naming the account defer to IAM policies
    organizations = build_organizations(platform, _directory, authorizer)   # also feeds aws:PrincipalOrgID
    platform.lambda_service.deps.authorizer = authorizer     # a function's Layers: lambda:GetLayerVersion on each
    authorize = RequestAuthorizer(authorizer, function_facts=function_facts(platform.db),
                                  layer_policies=layer_policies(platform.db),
                                  generation=lambda: platform.lambda_service.resolver.generation,
                                  queue_policies=queue_policies(platform.queues),
                                  queue_generation=lambda: platform.queues.generation)
    lambda_model = load_service_model("lambda")
    kms_model = load_service_model("kms")
    function_urls = FunctionUrlService(platform.db)     # the *FunctionUrlConfig operations
    lambda_impls = [i for i in (platform.lambda_service, platform.invoker, platform.events,
                                platform.event_source_mappings, function_urls) if i is not None]
    # Function URLs' own HTTP front (virtual-host and path-style routes, ahead of the AWS APIs).
    url_routes = FunctionUrlFront(
        url_lookup(platform.db), platform.identity.lookup, authorize, platform.invoker,
        max_skew_s=settings.max_clock_skew_s,
        principal_org=lambda account: authorizer.principal_org(account) if authorizer.principal_org else None,
    ).routes() if platform.invoker is not None else []
    app = ApiApp({"lambda": ServiceBinding(RestJsonProtocol(lambda_model), *lambda_impls),
                  "sqs": ServiceBinding(JsonProtocol(load_service_model("sqs")), platform.queues),
                  "logs": ServiceBinding(JsonProtocol(load_service_model("logs")), platform.logs_service),
                  "iam": ServiceBinding(QueryProtocol(load_service_model("iam")), iam_service),
                  "sts": ServiceBinding(QueryProtocol(load_service_model("sts")), sts_service),
                  "organizations": ServiceBinding(OrganizationsProtocol(load_service_model("organizations")),
                                                  organizations),
                  "kms": ServiceBinding(JsonProtocol(kms_model), KmsBinding(platform.kms, kms_model)),
                  "cloudtrail": ServiceBinding(JsonProtocol(load_service_model("cloudtrail")),
                                               CloudTrailService(platform.db, platform.keyring, platform.audit,
                                                                 unattributed_account=BOOTSTRAP_ACCOUNT))},
                 platform.identity.lookup, max_skew_s=settings.max_clock_skew_s,
                 authorize=admitting(authorize, DiskGate(platform.headroom)),   # a nearly full disk: retryable refusals
                 limits=RequestLimits(unverified_body_bytes=settings.max_unverified_body_mb << 20,
                                      body_timeout_s=settings.request_body_timeout_s,
                                      sync_invokes_per_account=settings.account_sync_invokes),
                 internal_routes=[code_route(platform.keyring, platform.blobs,
                                             platform.lambda_service.deps.kms, platform.db), *url_routes])
    if platform.schedules is not None:     # EventBridge Scheduler subset (lambdalet/schedules)
        from lambdalet.api.scheduler_protocol import SchedulerProtocol
        app.services["scheduler"] = ServiceBinding(SchedulerProtocol(load_service_model("scheduler")),
                                                   platform.schedules)
    audit_hook.install(platform.audit)

    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if shown_host in ("0.0.0.0", "[::]"):
        shown_host = "127.0.0.1"
    api_path = InProcessApi(app.asgi)    # functions reach this API through their environment's init only
    if platform.invoker is not None:
        platform.invoker.api_forwarder = api_path
    # proxy_headers off: no X-Forwarded-For is trusted, so aws:SourceIp and the audit trail name the
    # real peer (uvicorn's default trusts it from 127.0.0.1, i.e. from any local process).
    config = uvicorn.Config(api_path.wrap(app.asgi), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S, proxy_headers=False,
                            limit_concurrency=settings.max_connections,
                            http=type("HttpProtocol", (CoalescingHttpToolsProtocol,),
                                      {"head_timeout_s": settings.request_head_timeout_s}))
    config.load()
    if settings.insecure_http:
        print("WARNING: --insecure-http: the API is served WITHOUT TLS. Credentials and code cross the "
              "network in the clear. Use this only on a trusted loopback.", file=sys.stderr, flush=True)
        url, ca = f"http://{shown_host}:{port}", None
    else:
        # The certificate also covers every function URL host of this region (*.lambda-url.<region>.localhost).
        files = ensure_tls(settings.tls_dir, [settings.host, "*." + url_domain(settings.region)])
        config.ssl = server_context(files)
        url, ca = f"https://{shown_host}:{port}", str(files.ca_cert)

    function_urls.endpoint = url     # FunctionUrl is reported on this server's own scheme and port
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has drained; with these handlers that
    # becomes SystemExit, so the clean-up below (environments, endpoint.json, database) still runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    platform.start()                 # pollers: queued Event invocations, event source mappings
    # Everything built so far (botocore service models, imports, the platform) lives as long as the
    # server: moved out of the collector's view, a full collection scans only what requests made
    # since, instead of pausing every thread for 40-70 ms a few times a second under load.
    gc.collect()
    gc.freeze()
    _write_endpoint(settings, url, ca)
    log.info("lambdalet serving the Lambda API at %s (data dir %s)", url, settings.data_dir)
    log.info("data disk: %s", platform.headroom.describe())
    try:
        server.run(sockets=[sock])
    finally:
        try:
            settings.endpoint_file.unlink()
        except FileNotFoundError:
            pass
        platform.close()
        run_dir.release()
