"""`lambdalet signer ...`: signing profiles, signing, revocation, local verification.

These commands work on the server's data dir directly (like `lambdalet env` and `audit verify`):
the signer's records live in the platform database and the private keys are sealed by the
platform keyring, so signing needs the master key, i.e. the operator of the host, never an API
key. That is the point: an API caller allowed to UpdateFunctionCode still cannot produce a
signature. Safe while the server runs (SQLite WAL; each command is one short transaction) and
the server sees revocations at the next deployment (it reads the signer tables every time).

Profiles are per account and region: --account defaults to the bootstrap administrator's account
(000000000000), --region to the running server's region (endpoint.json) or us-east-1.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

_data_dir = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")
_account = click.option("--account", default=None, help="Account owning the profile (default 000000000000).")
_region = click.option("--region", default=None, help="Region (default: the server's, else us-east-1).")


class _Ctx:
    def __init__(self, data_dir: Path | None, account: str | None, region: str | None):
        from lambdalet.config import Settings, default_data_dir
        from lambdalet.iam.identity import BOOTSTRAP_ACCOUNT

        self.settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
        if not self.settings.master_key_path.is_file():
            _fail(f"no lambdalet data dir at {self.settings.data_dir} (start `lambdalet serve` once first)")
        self.account = account or BOOTSTRAP_ACCOUNT
        if not (len(self.account) == 12 and self.account.isdigit()):
            _fail("--account must be 12 digits")
        self.region = region or self._server_region()
        self.db = None

    def _server_region(self) -> str:
        try:
            return json.loads(self.settings.endpoint_file.read_text()).get("region") or self.settings.region
        except (OSError, ValueError):
            return self.settings.region

    def __enter__(self):
        from lambdalet.crypto.keyring import open_keyring
        from lambdalet.signing.profiles import SignerStore
        from lambdalet.store.db import open_database

        self.db = open_database(self.settings.db_url)
        return SignerStore(self.db, open_keyring(self.settings.data_dir, self.settings.master_key_path))

    def __exit__(self, *exc):
        if self.db is not None:
            self.db.close()


def _fail(msg: str) -> None:
    click.echo(f"lambdalet signer: {msg}", err=True)
    sys.exit(1)


def _run(fn):
    from lambdalet.signing.profiles import SignerError

    try:
        return fn()
    except SignerError as e:
        _fail(str(e))


def _echo(doc) -> None:
    click.echo(json.dumps(doc, indent=2))


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--effective-time must be ISO 8601 (e.g. 2026-01-31T12:00:00Z), not {value!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


@click.group("signer")
def signer() -> None:
    """Code signing: signing profiles and signatures for code signing configs."""


@signer.command("create-profile")
@click.argument("name")
@click.option("--validity-days", type=click.IntRange(1, 5475), default=None,
              help="Signature validity period in days (default 4106, ~135 months, as AWS Signer).")
@click.option("--validity-seconds", type=click.IntRange(1), default=None, hidden=True,
              help="Validity period in seconds (tests: signatures that expire quickly).")
@click.option("--algorithm", type=click.Choice(["ed25519", "ecdsa-p384"]), default="ed25519", show_default=True)
@click.option("--new-version", is_flag=True, help="Add a new version (a new key) to an existing profile.")
@_data_dir
@_account
@_region
def create_profile(name, validity_days, validity_seconds, algorithm, new_version, data_dir, account, region):
    """Create signing profile NAME (an Ed25519 or ECDSA P-384 key pair) and print its version ARN."""
    from lambdalet.signing.profiles import DEFAULT_VALIDITY_DAYS
    from lambdalet.signing.signature import PLATFORMS

    validity = validity_seconds or (validity_days or DEFAULT_VALIDITY_DAYS) * 86400
    c = _Ctx(data_dir, account, region)
    with c as store:
        prof = _run(lambda: store.create_profile(c.account, c.region, name, validity_s=validity,
                                                 platform_id=PLATFORMS[algorithm], new_version=new_version))
    _echo(prof.to_json())


@signer.command("list-profiles")
@_data_dir
@_account
@_region
def list_profiles(data_dir, account, region):
    """List signing profile versions (active and revoked)."""
    c = _Ctx(data_dir, account, region)
    with c as store:
        _echo({"profiles": [p.to_json() for p in store.list_profiles(c.account, c.region)]})


@signer.command("get-public-key")
@click.argument("name")
@click.option("--version", default=None, help="Profile version (default: the newest).")
@_data_dir
@_account
@_region
def get_public_key(name, version, data_dir, account, region):
    """Print a profile version's public key (PEM), to verify signatures elsewhere."""
    c = _Ctx(data_dir, account, region)
    with c as store:
        click.echo(_run(lambda: store.get_profile(c.account, c.region, name, version)).public_key, nl=False)


@signer.command("sign")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--profile", "profile_name", required=True, help="Signing profile name.")
@click.option("--version", default=None, help="Profile version (default: the newest).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the signed zip.")
@_data_dir
@_account
@_region
def sign(package, profile_name, version, output, data_dir, account, region):
    """Sign PACKAGE (a deployment .zip): writes it with .lambdalet-signature.json at its root."""
    data = package.read_bytes()
    c = _Ctx(data_dir, account, region)
    with c as store:
        signed, job = _run(lambda: store.sign(c.account, c.region, profile_name, data, version=version))
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(signed)
    tmp.replace(output)
    _echo(job.to_json())


@signer.command("revoke-profile")
@click.argument("name")
@click.option("--version", default=None, help="Profile version (default: the newest).")
@click.option("--effective-time", default=None,
              help="ISO 8601; signatures made at or after it become invalid (default: now).")
@click.option("--reason", default="", help="Recorded with the revocation.")
@_data_dir
@_account
@_region
def revoke_profile(name, version, effective_time, reason, data_dir, account, region):
    """Revoke a signing profile version: it signs nothing more, and signatures made at or after the
    effective time are refused at deployment (earlier ones stay valid, as in AWS Signer)."""
    when = _parse_time(effective_time)
    c = _Ctx(data_dir, account, region)
    with c as store:
        _echo(_run(lambda: store.revoke_profile(c.account, c.region, name, version=version, effective_at=when,
                                                reason=reason)).to_json())


@signer.command("revoke-signature")
@click.argument("job")
@click.option("--reason", default="", help="Recorded with the revocation.")
@_data_dir
@_account
@_region
def revoke_signature(job, reason, data_dir, account, region):
    """Revoke one signature, by signing job id or ARN (printed by `sign`)."""
    c = _Ctx(data_dir, account, region)
    with c as store:
        _echo(_run(lambda: store.revoke_signature(c.account, c.region, job, reason=reason)).to_json())


@signer.command("verify")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_data_dir
def verify(package, data_dir):
    """Check a signed package as a deployment would (without a publisher list). Exit 0 if valid."""
    import time

    from lambdalet.signing.verify import IntegrityFailure, verify_package

    data = package.read_bytes()
    c = _Ctx(data_dir, None, None)
    with c:
        with c.db.read() as conn:
            try:
                v = verify_package(conn, data, None, time.time())
            except IntegrityFailure as e:
                _echo({"valid": False, "integrity": str(e)})
                sys.exit(1)
    out = {"valid": v.ok, "signed": v.signed, "failures": list(v.failures)}
    if v.claims:
        out.update(profileVersionArn=v.claims.profile_version_arn, jobArn=v.claims.job_arn,
                   packageDigest=v.claims.package_digest)
    _echo(out)
    sys.exit(0 if v.ok else 1)
