"""`lambdalet audit verify [--data-dir DIR] [--public-key PEM] [--json]`.

Exit status: 0 the trail is intact; 1 damage found (the first bad sequence number and the kind
of damage are printed); 2 the trail could not be checked (no data dir, master key or trail).
Safe while the server runs (one read snapshot); never creates keys or migrates the database.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group("audit")
def audit_group() -> None:
    """The audit trail (CloudTrail-style records of every API call)."""


@audit_group.command("verify")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")
@click.option("--public-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The digest signer's public key (PEM). Default: <data-dir>/audit/signing-key.pub; pass a "
                   "copy kept elsewhere to not trust this host's disk.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(data_dir: Path | None, public_key: Path | None, as_json: bool) -> None:
    """Recompute the hash chain, open every sealed event and check every signed digest."""
    from lambdalet.audit import audit_dir
    from lambdalet.audit.verify import load_trusted_key, verify_trail
    from lambdalet.config import Settings, default_data_dir
    from lambdalet.crypto.keyring import FileKeyMaterialStore, Keyring
    from lambdalet.crypto.master import load_or_create_master_key
    from lambdalet.store.db import Database, make_engine

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())

    def fail(msg: str) -> None:
        click.echo(f"cannot verify: {msg}", err=True)
        sys.exit(2)

    if not settings.master_key_path.is_file() or not (settings.data_dir / "keys" / "platform.key").is_file():
        fail(f"no master key / platform key in {settings.data_dir}")
    try:
        key = load_trusted_key(audit_dir(settings.data_dir), public_key)
    except FileNotFoundError:
        fail(f"no audit signing public key in {audit_dir(settings.data_dir)} (pass --public-key)")
    except ValueError as e:
        fail(str(e))
    try:
        keyring = Keyring.open(load_or_create_master_key(settings.master_key_path),
                               FileKeyMaterialStore(settings.data_dir / "keys"))
    except (ValueError, OSError) as e:
        fail(f"cannot open the keyring: {e}")
    if settings.database_url is None and not (settings.data_dir / "state.db").is_file():
        fail(f"no database in {settings.data_dir}")
    db = Database(make_engine(settings.db_url))
    try:
        import sqlalchemy as sa
        if not {"audit_events", "audit_digests"} <= set(sa.inspect(db.engine).get_table_names()):
            fail("the database has no audit trail (audit tables missing)")
        report = verify_trail(db, keyring, key)
    finally:
        db.close()
    if as_json:
        first = report.first_problem
        click.echo(json.dumps({
            "ok": report.ok, "events": report.events, "highest_seq": report.highest_seq,
            "digests": report.digests, "digest_last_seq": report.digest_last_seq,
            "unsealed_tail": report.unsealed_tail, "key_fingerprint": report.key_fingerprint,
            "first_bad_seq": first.seq if first else None, "first_bad_kind": first.kind if first else None,
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in report.problems],
        }, indent=2))
    else:
        click.echo(report.summary(), err=not report.ok)
    sys.exit(0 if report.ok else 1)
