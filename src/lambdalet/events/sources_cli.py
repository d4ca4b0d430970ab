"""`lambdalet sources ...`: external SQS-compatible endpoints for event source mappings.

    lambdalet sources add-sqs-endpoint --account 111122223333 --region us-east-1 \
        --url https://sqs.example.net --access-key AKIA... [--secret-key-stdin] [--ca-bundle ca.pem]
    lambdalet sources list-sqs-endpoints
    lambdalet sources remove-sqs-endpoint NAME

The credentials are sealed with the data dir's keyring before they are written (never in plain text
in the data dir). Pass the secret on stdin (--secret-key-stdin), in $LAMBDALET_SQS_SECRET_KEY, or at
the hidden prompt rather than on the command line, where other users can read it in `ps`.
A running server picks changes up within a second or two (new mappings; running pollers use the new
credentials at their next call).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lambdalet.config import Settings, default_data_dir

_data_dir = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")


def _registry(data_dir: Path | None):
    from lambdalet.crypto.keyring import open_keyring
    from lambdalet.events.sources import SqsEndpointRegistry
    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
    return SqsEndpointRegistry(settings.data_dir, open_keyring(settings.data_dir, settings.master_key_path))


@click.group("sources")
def sources_group() -> None:
    """External event sources (SQS-compatible endpoints) for event source mappings."""


@sources_group.command("add-sqs-endpoint")
@_data_dir
@click.option("--name", default=None, help="Endpoint name (default: ACCOUNT-REGION, or derived from the prefix).")
@click.option("--url", required=True, help="The endpoint URL, e.g. https://sqs.us-east-1.amazonaws.com.")
@click.option("--account", default=None, help="Queue ARNs of this 12-digit account use the endpoint ...")
@click.option("--region", default=None, help="... in this region only (default: any region).")
@click.option("--queue-arn-prefix", default=None,
              help="Or: queue ARNs starting with this prefix use the endpoint (wins over --account rules).")
@click.option("--access-key", required=True, envvar="LAMBDALET_SQS_ACCESS_KEY", help="Access key id.")
@click.option("--secret-key", default=None, envvar="LAMBDALET_SQS_SECRET_KEY",
              help="Secret access key (prefer --secret-key-stdin, $LAMBDALET_SQS_SECRET_KEY or the prompt).")
@click.option("--secret-key-stdin", is_flag=True, help="Read the secret access key from stdin.")
@click.option("--session-token", default=None, envvar="LAMBDALET_SQS_SESSION_TOKEN", help="Optional session token.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PEM file of the CA(s) the endpoint's certificate chains to (copied into the data dir).")
@click.option("--allow-account", "allow_accounts", multiple=True,
              help="lambdalet account allowed to map queues through this endpoint (repeatable; default: every "
                   "account of this server).")
@click.option("--replace", is_flag=True, help="Replace an endpoint of the same name.")
def add_sqs_endpoint(data_dir, name, url, account, region, queue_arn_prefix, access_key, secret_key,
                     secret_key_stdin, session_token, ca_bundle, allow_accounts, replace) -> None:
    """Register an SQS-compatible endpoint; its credentials are sealed with the keyring."""
    if secret_key_stdin:
        secret_key = sys.stdin.readline().strip()
    if not secret_key:
        secret_key = click.prompt("Secret access key", hide_input=True)
    if not name:
        name = (f"{account}-{region or 'any'}" if account else
                "".join(c if c.isalnum() or c in "-_." else "-" for c in (queue_arn_prefix or "")[8:]).strip("-")
                or "endpoint")[:64]
    if url.startswith("http://"):
        click.echo("WARNING: http:// endpoint: credentials are signed (SigV4) but messages cross the network "
                   "in the clear.", err=True)
    try:
        ep = _registry(data_dir).add(name, url, access_key=access_key, secret_key=secret_key,
                                     session_token=session_token, account=account, region=region,
                                     arn_prefix=queue_arn_prefix,
                                     ca_bundle_pem=ca_bundle.read_bytes() if ca_bundle else None,
                                     allowed_accounts=allow_accounts or ("*",), replace=replace)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(json.dumps(ep.public_view(), indent=2))


@sources_group.command("list-sqs-endpoints")
@_data_dir
def list_sqs_endpoints(data_dir) -> None:
    """Show the configured endpoints (never their secrets)."""
    reg = _registry(data_dir)
    click.echo(json.dumps([e.public_view() for e in reg.endpoints()], indent=2))


@sources_group.command("remove-sqs-endpoint")
@_data_dir
@click.argument("name")
def remove_sqs_endpoint(data_dir, name) -> None:
    """Forget an endpoint (mappings that used it report a problem until it is added again)."""
    if not _registry(data_dir).remove(name):
        click.echo(f"no SQS endpoint named {name!r}", err=True)
        sys.exit(1)
