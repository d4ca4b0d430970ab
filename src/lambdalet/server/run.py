"""Serve the platform: bind, TLS, uvicorn, and the endpoint file that `lambdalet env` reads.
What is served is built by server/platform.py; the data dir and the host are claimed by startup.py."""
from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import ssl
import sys

import uvicorn

from lambdalet.config import Settings
from lambdalet.observe.listener import MetricsListener
from lambdalet.observe.logsetup import configure as configure_logging
from lambdalet.server import startup
from lambdalet.server.http_protocol import CoalescingHttpToolsProtocol
from lambdalet.server.platform import build_platform
from lambdalet.server.tls import ensure_tls, server_context
from lambdalet.services.function_urls import url_domain

log = logging.getLogger("lambdalet")
# An idle keep-alive connection is closed after this (uvicorn's default, 5 s, made clients that pause
# a few seconds race the close and see ConnectionClosedError on their next call; AWS's endpoints and
# common load balancers keep idle connections for about a minute).
KEEP_ALIVE_S = 60


def _write_endpoint(settings: Settings, url: str, ca_bundle: str | None, metrics_url: str | None = None) -> None:
    doc = {"url": url, "pid": os.getpid(), "region": settings.region, "ca_bundle": ca_bundle}
    if metrics_url:
        doc["metrics_url"] = metrics_url       # `lambdalet status` names it; scrapers are pointed at it
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


def _url_and_tls(settings: Settings, port: int) -> tuple[str, str | None, ssl.SSLContext | None]:
    """The URL clients use, the CA bundle that verifies it, and the server's TLS context."""
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if shown_host in ("0.0.0.0", "[::]"):
        shown_host = "127.0.0.1"
    if settings.insecure_http:
        print("WARNING: --insecure-http: the API is served WITHOUT TLS. Credentials and code cross the "
              "network in the clear. Use this only on a trusted loopback.", file=sys.stderr, flush=True)
        return f"http://{shown_host}:{port}", None, None
    # The certificate also covers every function URL host of this region (*.lambda-url.<region>.localhost).
    files = ensure_tls(settings.tls_dir, [settings.host, "*." + url_domain(settings.region)])
    return f"https://{shown_host}:{port}", str(files.ca_cert), server_context(files)


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)     # observe/logsetup.py: text or JSON lines
    claim = startup.claim(settings)      # the data dir's lock and the run dir, held while we live
    sock = _bind(settings.host, settings.port)
    try:
        metrics = MetricsListener(settings.metrics_listen) if settings.metrics_listen else None
    except OSError as e:
        raise SystemExit(f"--metrics-listen {settings.metrics_listen}: {e}") from None
    url, ca, tls = _url_and_tls(settings, sock.getsockname()[1])
    try:
        platform = build_platform(settings, endpoint=url)   # FunctionUrl is reported on this server's own URL
    except PermissionError as e:
        raise SystemExit(f"cannot start the '{settings.sandbox}' sandbox: {e}. Run as root, or pass "
                         "--sandbox process to run functions WITHOUT isolation (development only).") from None

    # proxy_headers off: no X-Forwarded-For is trusted, so aws:SourceIp and the audit trail name the
    # real peer (uvicorn's default trusts it from 127.0.0.1, i.e. from any local process).
    config = uvicorn.Config(platform.asgi, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S, proxy_headers=False,
                            limit_concurrency=settings.max_connections,
                            http=type("HttpProtocol", (CoalescingHttpToolsProtocol,),
                                      {"head_timeout_s": settings.request_head_timeout_s}))
    config.load()
    config.ssl = tls
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has drained; with these handlers that
    # becomes SystemExit, so the clean-up below (environments, endpoint.json, database) still runs.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    platform.start()                 # pollers: queued Event invocations, event source mappings, schedules
    # Everything built so far (botocore service models, imports, the platform) lives as long as the
    # server: moved out of the collector's view, a full collection scans only what requests made
    # since, instead of pausing every thread for 40-70 ms a few times a second under load.
    gc.collect()
    gc.freeze()
    _write_endpoint(settings, url, ca, metrics.url if metrics is not None else None)
    log.info("lambdalet serving the Lambda API at %s (data dir %s)", url, settings.data_dir)
    log.info("data disk: %s", platform.headroom.describe())
    if metrics is not None:
        log.info("Prometheus metrics at %s", metrics.url)
    try:
        server.run(sockets=[sock])
    finally:
        if metrics is not None:
            metrics.close()
        try:
            settings.endpoint_file.unlink()
        except FileNotFoundError:
            pass
        platform.close()
        claim.release()
