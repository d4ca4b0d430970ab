"""`lambdalet serve | env`: thin commands over the server package."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from lambdalet.audit.cli import audit_group
from lambdalet.config import DEFAULT_PORT, Settings, default_data_dir, default_database_url

_data_dir = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")


_runtimes_dir = click.option("--runtimes-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                             help="Provisioned runtimes (e.g. node22/ from `make install`); default: "
                                  "<repo>/.venv/runtimes when it exists.")
_runtime_interpreter = click.option("--runtime-interpreter", "runtime_interpreters", multiple=True,
                                    type=click.Path(dir_okay=False, exists=True),
                                    help="Extra pythonX.Y or node binary to run functions with (repeatable).")


@click.group()
def main() -> None:
    """lambdalet: AWS Lambda on your own machine."""


@main.command()
@_data_dir
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="0 picks a free port.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--insecure-http", is_flag=True, help="Serve plain HTTP instead of TLS (unsafe; loud warning).")
@click.option("--sandbox", type=click.Choice(["namespace", "process", "microvm"]), default="namespace",
              show_default=True, help="Isolation backend; 'process' runs code UNISOLATED (development only).")
@click.option("--sandbox-slots", type=click.IntRange(0, 64), default=2, show_default=True,
              help="Pre-isolated environments kept ready per forked runtime, for faster cold starts (0: none).")
@click.option("--egress", type=click.Choice(["none", "public", "all"]), default="public", show_default=True,
              help="Environments' outbound network: public (AWS's non-VPC functions: the internet, no private, "
                   "link-local or host addresses), all (private ranges too) or none. A function's tag "
                   "lambdalet:egress sets its own (docs/architecture.md).")
@click.option("--concurrency-limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="The account's concurrent executions limit.")
@click.option("--env-idle-ttl", type=click.FloatRange(0.1), default=300.0, show_default=True,
              help="Seconds an idle execution environment is kept warm.")
@click.option("--env-max-lifetime", type=click.FloatRange(1), default=7200.0, show_default=True,
              help="Seconds after which any execution environment is replaced.")
@click.option("--account-envs", type=click.IntRange(1), default=200, show_default=True,
              help="Live execution environments (running, idle or starting) per account; its idle ones are "
                   "evicted to make room, else Invoke answers 429.")
@click.option("--account-env-mb", type=click.IntRange(128), default=None,
              help="Their MemorySize summed per account, MiB.  [default: 10240 or half of --env-memory-mb]")
@click.option("--env-memory-mb", type=click.IntRange(128), default=None,
              help="Their MemorySize summed over all accounts, MiB; the least recently used idle environment of "
                   "the account holding the most goes first.  [default: 75% of the host's RAM]")
@click.option("--esm-batches", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Event source mapping batches in flight at once, all accounts; one account's mappings run at "
                   "most 3/4 of them, the others' are served round robin.")
@click.option("--account-sync-invokes", type=click.IntRange(1, 512), default=128, show_default=True,
              help="Synchronous Invokes of one account in flight at once (each holds one of the API's 512 worker "
                   "threads); past it Invoke answers 429 ConcurrentInvocationLimitExceeded.")
@click.option("--account-pids", type=click.IntRange(64), default=4096, show_default=True,
              help="Processes and threads of one account's environments, idle ones included (each: 1,024).")
@click.option("--platform-pids", type=click.IntRange(64), default=None,
              help="Processes and threads of all environments.  [default: 16,384 or half of kernel.pid_max]")
@click.option("--async-workers", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Threads delivering Event (asynchronous) invocations.")
@click.option("--async-retry-scale", type=click.FloatRange(0.0001, 1.0), default=1.0, show_default=True,
              help="Scale AWS's async retry backoff (~1 min, 2 min) and event-age limits, e.g. 0.01 in tests.")
@click.option("--allow-unknown-roles", is_flag=True,
              help="Development only: accept a function Role that does not exist or does not trust Lambda "
                   "(AWS refuses it; such functions run without credentials). Warns.")
@click.option("--lambda-principal", "lambda_principals", multiple=True, default=("lambda.amazonaws.com",),
              show_default=True, help="Trust-policy service principal that stands for Lambda (repeatable).")
@_runtimes_dir
@_runtime_interpreter
@click.option("--database-url", default=None, metavar="URL",
              help="SQLAlchemy URL of the state database (default: SQLite in the data dir), e.g. "
                   "postgresql+psycopg://user@host/db; prefer the env var LAMBDALET_DATABASE_URL for a password.")
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="Open client connections; past it requests answer 503.")
@click.option("--max-unverified-body-mb", type=click.IntRange(1, 65_536), default=256, show_default=True,
              help="Request bodies buffered (all connections) before their SigV4 signature is verified; past it 429.")
@click.option("--request-head-timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds for a request's line and headers to arrive (slow clients are dropped).")
@click.option("--log-rate-kb", type=click.IntRange(1), default=1024, show_default=True,
              help="Log output a function may write, KiB/s; more is dropped with a line saying so.")
@click.option("--log-account-mb", type=click.IntRange(1), default=4096, show_default=True,
              help="Stored function logs per account, MiB; past it the oldest are deleted.")
@click.option("--unpacked-mb", type=click.IntRange(1), default=8192, show_default=True,
              help="Unpacked code and layers kept on tmpfs for environments, MiB, all accounts together.")
@click.option("--unpacked-account-mb", type=click.IntRange(1), default=2048, show_default=True,
              help="The same per account; past it new environments answer 429 until others end.")
@click.option("--request-body-timeout", type=click.FloatRange(0.1), default=120.0, show_default=True,
              help="Seconds for a request's body to arrive.")
@click.option("--audit-data-events", is_flag=True,
              help="Also record data events (Invoke, SendMessage, Encrypt, ...) in the audit trail, as a CloudTrail "
                   "trail with data event selectors does; management events are always recorded.")
@click.option("--audit-digest-every", type=click.IntRange(1), default=500, show_default=True,
              help="A signed audit digest at least every this many records (and every --audit-digest-interval).")
@click.option("--audit-digest-interval", type=click.FloatRange(0.1), default=3600.0, show_default=True,
              help="Seconds between signed audit digests, written even when idle (CloudTrail: hourly).")
@click.option("--audit-digest-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write every audit digest here, one 0600 file each (use another mount), so whoever "
                   "can rewrite the database cannot erase them; check with `audit verify --digest-dir`.")
@click.option("--disk-low-mb", type=click.IntRange(1), default=256, show_default=True,
              help="Data disk low-water mark, MiB (or --disk-low-percent, whichever is larger): below it function "
                   "logs are dropped; below half of it state-changing calls answer retryable throttling errors.")
@click.option("--disk-low-percent", type=click.FloatRange(0, 50), default=2.0, show_default=True,
              help="The same as a percentage of the data dir's filesystem.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="The server's own log: one line per API request and environment event at "
                                      "info; thaw/freeze at debug.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a message and key=value fields a line; json: one JSON object a line.")
@click.option("--metrics-listen", default=None, metavar="[HOST:]PORT",
              help="Serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (HOST defaults to "
                   "127.0.0.1; off unless given). Unauthenticated: keep it on loopback or firewalled.")
@click.option("--schedule-test-seconds", is_flag=True, hidden=True,
              help="TEST ONLY: accept rate(N seconds) schedule expressions and tick the scheduler every 0.2 s.")
def serve(data_dir: Path | None, host: str, port: int, region: str, insecure_http: bool, sandbox: str,
          concurrency_limit: int, env_idle_ttl: float, env_max_lifetime: float, async_workers: int = 16,
          account_envs: int = 200, account_env_mb: int | None = None, env_memory_mb: int | None = None,
          account_pids: int = 4096, platform_pids: int | None = None, account_sync_invokes: int = 128,
          esm_batches: int = 64,
          async_retry_scale: float = 1.0, allow_unknown_roles: bool = False,
          lambda_principals: tuple[str, ...] = ("lambda.amazonaws.com",), schedule_test_seconds: bool = False,
          runtimes_dir: Path | None = None, runtime_interpreters: tuple[str, ...] = (),
          database_url: str | None = None, sandbox_slots: int = 2, egress: str = "public", max_connections: int = 1000,
          max_unverified_body_mb: int = 256, request_head_timeout: float = 10.0,
          request_body_timeout: float = 120.0, log_rate_kb: int = 1024, log_account_mb: int = 4096,
          unpacked_mb: int = 8192, unpacked_account_mb: int = 2048, audit_digest_interval: float = 3600.0,
          audit_digest_dir: Path | None = None, disk_low_mb: int = 256, disk_low_percent: float = 2.0,
          audit_data_events: bool = False, audit_digest_every: int = 500, log_level: str = "info",
          log_format: str = "text", metrics_listen: str | None = None) -> None:
    """Run the platform in the foreground."""
    from lambdalet.server.run import serve as run_server

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve(), host=host, port=port,
                        region=region, insecure_http=insecure_http, sandbox=sandbox,
                        concurrent_executions_limit=concurrency_limit, env_idle_ttl_s=env_idle_ttl,
                        env_max_lifetime_s=env_max_lifetime, async_workers=async_workers,
                        account_envs=account_envs, account_env_mb=account_env_mb, env_memory_mb=env_memory_mb,
                        account_pids=account_pids, platform_pids=platform_pids,
                        account_sync_invokes=account_sync_invokes, esm_batches=esm_batches,
                        async_retry_scale=async_retry_scale, allow_unknown_roles=allow_unknown_roles,
                        lambda_principals=tuple(lambda_principals), schedule_test_seconds=schedule_test_seconds,
                        runtimes_dir=runtimes_dir, runtime_interpreters=tuple(runtime_interpreters),
                        database_url=database_url or default_database_url(), sandbox_slots=sandbox_slots,
                        egress=egress,
                        max_connections=max_connections, max_unverified_body_mb=max_unverified_body_mb,
                        request_head_timeout_s=request_head_timeout, request_body_timeout_s=request_body_timeout,
                        log_rate_kb=log_rate_kb, log_account_mb=log_account_mb,
                        unpacked_mb=unpacked_mb, unpacked_account_mb=unpacked_account_mb,
                        audit_data_events=audit_data_events, audit_digest_every=audit_digest_every,
                        audit_digest_interval_s=audit_digest_interval,
                        audit_digest_dir=audit_digest_dir.expanduser().resolve() if audit_digest_dir else None,
                        disk_low_mb=disk_low_mb, disk_low_percent=disk_low_percent,
                        log_level=log_level, log_format=log_format, metrics_listen=metrics_listen)
    if metrics_listen is not None:
        from lambdalet.observe.listener import parse_listen
        try:
            parse_listen(metrics_listen)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--metrics-listen") from None
    run_server(settings)


@main.command()
@_runtimes_dir
@_runtime_interpreter
def runtimes(runtimes_dir: Path | None, runtime_interpreters: tuple[str, ...]) -> None:
    """List the Lambda runtimes this host can run, and with which interpreter."""
    from lambdalet.services.runtimes import default_catalogue

    host = Settings(runtimes_dir=runtimes_dir, runtime_interpreters=tuple(runtime_interpreters)).host_runtimes()
    cat = default_catalogue().with_host(host)
    for rid in cat.available():
        ex = host.get(rid)
        sdk_name = "@aws-sdk/* (v3)" if rid.startswith("nodejs") else "boto3"
        managed = rid.startswith(("python", "nodejs"))
        sdk = f"   {sdk_name} {ex.sdk_version}" if ex.sdk_dir else ("   (no AWS SDK: make install)" if managed else "")
        click.echo(f"{rid:<16} {ex.version or '-':<10} {ex.exe or '(the function’s own bootstrap)'}{sdk}")
    missing = [r for r in default_catalogue().with_host(None).available() if not host.runs(r)]
    if missing:
        click.echo(f"not available here: {', '.join(missing)}")
    for line in host.architectures.describe():     # what `Architectures` may say here (runtime/hostarch.py)
        click.echo(line)


@main.command()
@_data_dir
def env(data_dir: Path | None) -> None:
    """Print `export` lines so boto3 and the AWS CLI talk to this server: eval "$(lambdalet env)"."""
    from lambdalet.server.credentials import read_admin_credentials

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
    if not settings.endpoint_file.exists():
        click.echo(f"no running server found in {settings.data_dir} (start one with `lambdalet serve`)", err=True)
        sys.exit(1)
    endpoint = json.loads(settings.endpoint_file.read_text())
    creds = read_admin_credentials(settings)
    lines = {
        "AWS_ENDPOINT_URL": endpoint["url"],
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_DEFAULT_REGION": endpoint.get("region") or settings.region,
    }
    if endpoint.get("ca_bundle"):
        lines["AWS_CA_BUNDLE"] = endpoint["ca_bundle"]
    for k, v in lines.items():
        click.echo(f"export {k}={shlex.quote(v)}")


main.add_command(audit_group)

from lambdalet.cli.status import status  # noqa: E402  (is the server up, and is its data disk healthy)

main.add_command(status)

from lambdalet.signing.cli import signer  # noqa: E402  (code signing: profiles, sign, revoke)

main.add_command(signer)

from lambdalet.kms.cli import keys_group  # noqa: E402  (master key rotation)

main.add_command(keys_group)

from lambdalet.events.sources_cli import sources_group  # noqa: E402  (external SQS endpoints for mappings)

main.add_command(sources_group)
