"""`lambdalet audit verify [--data-dir DIR] [--public-key PEM] [--digest-dir DIR]
[--start-time T] [--end-time T] [--json]`.

Exit status: 0 the trail is intact; 1 damage found (the first bad sequence number, the event id
when one row is at fault, and the kind of damage are printed); 2 the trail could not be checked
(no data dir, master key or trail). Safe while the server runs (one read snapshot); never creates
keys or migrates the database. Whether a server is running is read from the data dir's
server.lock: a stopped trail must end with a clean shutdown's final digest.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import sys
from pathlib import Path

import click


def _parse_time(text: str | None) -> float | None:
    """ISO 8601 (2024-05-01T12:00:00Z, or a date) or epoch seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor epoch seconds") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def _server_running(data_dir: Path) -> bool:
    """True while a `lambdalet serve` holds the data dir's lock (server/startup.py)."""
    from lambdalet.config import DataDirLayout
    try:
        fh = open(DataDirLayout(data_dir).lock_file, "r")
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@click.group("audit")
def audit_group() -> None:
    """The audit trail (CloudTrail-style records of every API call)."""


@audit_group.command("verify")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")
@click.option("--public-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The digest signer's public key (PEM). Default: <data-dir>/audit/signing-key.pub; pass a "
                   "copy kept elsewhere to not trust this host's disk.")
@click.option("--digest-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A directory of digest copies (serve --audit-digest-dir) to cross-check the database against.")
@click.option("--start-time", default=None, help="Check the digest timeline from this time (ISO 8601 or epoch).")
@click.option("--end-time", default=None, help="... up to this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(data_dir: Path | None, public_key: Path | None, as_json: bool, digest_dir: Path | None = None,
                   start_time: str | None = None, end_time: str | None = None) -> None:
    """Recompute the hash chain, open every sealed event, check every signed digest, that no digest
    is missing between --start-time and --end-time, and (with --digest-dir) that every digest copied
    out is still in the database with its events."""
    from lambdalet.audit.verify import load_trusted_key, verify_trail
    from lambdalet.config import Settings, default_data_dir
    from lambdalet.crypto.keyring import FileKeyMaterialStore, Keyring
    from lambdalet.crypto.master import load_or_create_master_key
    from lambdalet.store.db import Database, make_engine

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
    layout = settings.layout
    start, end = _parse_time(start_time), _parse_time(end_time)

    def fail(msg: str) -> None:
        click.echo(f"cannot verify: {msg}", err=True)
        sys.exit(2)

    if not settings.master_key_path.is_file() or not (layout.keys / "platform.key").is_file():
        fail(f"no master key / platform key in {settings.data_dir}")
    try:
        key = load_trusted_key(layout.audit, public_key)
    except FileNotFoundError:
        fail(f"no audit signing public key in {layout.audit} (pass --public-key)")
    except ValueError as e:
        fail(str(e))
    try:
        keyring = Keyring.open(load_or_create_master_key(settings.master_key_path),
                               FileKeyMaterialStore(layout.keys))
    except (ValueError, OSError) as e:
        fail(f"cannot open the keyring: {e}")
    if settings.database_url is None and not layout.state_db.is_file():
        fail(f"no database in {settings.data_dir}")
    import sqlalchemy as sa
    db = Database(make_engine(settings.db_url))
    try:
        if not {"audit_events", "audit_digests"} <= set(sa.inspect(db.engine).get_table_names()):
            fail("the database has no audit trail (audit tables missing)")
        report = verify_trail(db, keyring, key, start=start, end=end, running=_server_running(settings.data_dir),
                              digest_dir=digest_dir)
    except sa.exc.SQLAlchemyError as e:     # an unreadable database, not a damaged row: say so, no traceback
        fail(f"the database cannot be read: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    finally:
        db.close()
    if as_json:
        first = report.first_problem
        click.echo(json.dumps({
            "ok": report.ok, "events": report.events, "highest_seq": report.highest_seq,
            "digests": report.digests, "digest_last_seq": report.digest_last_seq,
            "unsealed_tail": report.unsealed_tail, "key_fingerprint": report.key_fingerprint,
            "first_bad_seq": first.seq if first else None, "first_bad_kind": first.kind if first else None,
            "first_bad_event_id": first.event_id if first else None, "notes": report.notes,
            "problems": [{"seq": p.seq, "event_id": p.event_id, "kind": p.kind, "detail": p.detail}
                         for p in report.problems],
        }, indent=2))
    else:
        click.echo(report.summary(), err=not report.ok)
    sys.exit(0 if report.ok else 1)
