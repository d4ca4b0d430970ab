"""`lambdalet keys rotate-master [--data-dir DIR]`: replace the master key, re-wrapping every KEK
(the platform key, KMS keys' material, ...) under the new one. Nothing sealed is re-encrypted: data
keys are wrapped by KEKs, and only the KEKs' wrapping changes.

The server must be stopped (the data dir's server.lock is taken). Crash-safe and resumable: the new
key is first written to `master.key.new`; each KEK file is then replaced atomically; `master.key.new`
finally replaces `master.key`. Run again after an interruption: KEKs already under the new key are
recognised and kept, the rest are re-wrapped.

Exit status: 0 rotated; 1 refused (server running, no master key, a KEK that opens with neither key).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import click

from lambdalet.crypto.errors import DecryptionError
from lambdalet.crypto.keyring import FileKeyMaterialStore, Keyring, MemoryKeyMaterialStore
from lambdalet.crypto.master import fsync_dir, load_or_create_master_key


class RotationError(RuntimeError):
    pass


def _opens(master_key: bytes, kek_id: str, wrapped: bytes) -> bool:
    probe = MemoryKeyMaterialStore()
    probe.items[kek_id] = wrapped
    try:
        Keyring(master_key, probe).seal(b"", key_id=kek_id)
        return True
    except DecryptionError:
        return False


def rotate_master_key(master_path: Path, keys_dir: Path) -> int:
    """Rotate; -> the number of KEKs re-wrapped by this run. The caller holds the server lock."""
    master_path = Path(master_path)
    if not master_path.is_file():
        raise RotationError(f"no master key at {master_path}")
    old = load_or_create_master_key(master_path)
    pending = master_path.with_name(master_path.name + ".new")
    new = load_or_create_master_key(pending)            # created now, or left by an interrupted run
    if new == old:
        raise RotationError(f"{pending} holds the current master key; remove it and run again")
    store = FileKeyMaterialStore(keys_dir)
    todo = MemoryKeyMaterialStore()
    for kid in store.list():
        wrapped = store.load(kid)
        if wrapped is None:
            continue
        if _opens(old, kid, wrapped):
            todo.items[kid] = wrapped
        elif not _opens(new, kid, wrapped):
            raise RotationError(f"key {kid!r} opens with neither the current nor the new master key; "
                                "nothing was changed for it")
    Keyring(old, todo).rewrap(new)        # unwraps all before rewriting any (in memory)
    for kid, wrapped in todo.items.items():
        store.save(kid, wrapped)          # atomic per file: each KEK is under exactly one key at any time
    os.replace(pending, master_path)      # the commit point
    fsync_dir(master_path.parent)
    return len(todo.items)


@click.group("keys")
def keys_group() -> None:
    """The key hierarchy: master key -> KEKs (platform, KMS keys) -> data keys."""


@keys_group.command("rotate-master")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory (default: $LAMBDALET_DATA_DIR or ~/.lambdalet).")
def rotate_master_command(data_dir: Path | None) -> None:
    """Replace the master key and re-wrap every KEK under it (the server must be stopped)."""
    from lambdalet.config import Settings, default_data_dir

    settings = Settings(data_dir=(data_dir or default_data_dir()).expanduser().resolve())
    if not settings.master_key_path.is_file():
        click.echo(f"no master key in {settings.data_dir}", err=True)
        raise SystemExit(1)
    with open(settings.layout.lock_file, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            click.echo(f"a lambdalet server is using {settings.data_dir}: stop it first", err=True)
            raise SystemExit(1) from None
        try:
            n = rotate_master_key(settings.master_key_path, settings.layout.keys)
        except RotationError as e:
            click.echo(f"cannot rotate: {e}", err=True)
            raise SystemExit(1) from None
    click.echo(f"master key rotated; {n} key(s) re-wrapped in {settings.layout.keys}")
