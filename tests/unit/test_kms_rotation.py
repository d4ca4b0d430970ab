"""`lambdalet keys rotate-master`: every KEK re-wrapped under a new master key, nothing sealed
re-encrypted, resumable after a crash, refused while a server holds the data dir."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lambdalet.cli.main import main
from lambdalet.crypto import DecryptionError, FileKeyMaterialStore, Keyring
from lambdalet.crypto.master import load_or_create_master_key
from lambdalet.kms.cli import RotationError, rotate_master_key


def _seed(data: Path) -> tuple[bytes, dict[str, bytes], dict[str, bytes]]:
    """-> (old master, sealed blobs by KEK, KEK files before rotation)."""
    master = load_or_create_master_key(data / "master.key")
    ring = Keyring.open(master, FileKeyMaterialStore(data / "keys"))
    sealed = {"platform": ring.seal(b"platform data", aad=b"a")}
    for i in range(3):
        kid = f"kms-0000000{i}-0000-4000-8000-000000000000"
        ring.create_key(kid)
        sealed[kid] = ring.seal(f"kms data {i}".encode(), aad=b"a", key_id=kid)
    files = {p.name: p.read_bytes() for p in (data / "keys").iterdir()}
    return master, sealed, files


def _reopen(data: Path) -> Keyring:
    return Keyring.open(load_or_create_master_key(data / "master.key"), FileKeyMaterialStore(data / "keys"))


def test_rotate_rewraps_without_reencrypting(tmp_path):
    old, sealed, before = _seed(tmp_path)
    derived = Keyring.open(old, FileKeyMaterialStore(tmp_path / "keys")).derive_key("code-url")
    assert rotate_master_key(tmp_path / "master.key", tmp_path / "keys") == 4
    new = (tmp_path / "master.key").read_bytes()
    assert new != old and len(new) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "master.key.new").exists()
    after = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    ring = _reopen(tmp_path)
    for blob in sealed.values():                          # data sealed before the rotation still opens
        assert ring.open(blob, aad=b"a")
    assert ring.derive_key("code-url") == derived         # tokens and blob names survive
    with pytest.raises(DecryptionError):                  # the old master key opens nothing any more
        Keyring.open(old, FileKeyMaterialStore(tmp_path / "keys"))


def test_interrupted_rotation_resumes(tmp_path):
    old, sealed, _ = _seed(tmp_path)
    # simulate a crash after two of the four KEK files were re-wrapped
    new = load_or_create_master_key(tmp_path / "master.key.new")
    store = FileKeyMaterialStore(tmp_path / "keys")
    from lambdalet.crypto import MemoryKeyMaterialStore
    half = MemoryKeyMaterialStore()
    for kid in store.list()[:2]:
        half.items[kid] = store.load(kid)
    Keyring(old, half).rewrap(new)
    for kid, w in half.items.items():
        store.save(kid, w)
    assert rotate_master_key(tmp_path / "master.key", tmp_path / "keys") == 2
    assert (tmp_path / "master.key").read_bytes() == new
    ring = _reopen(tmp_path)
    for blob in sealed.values():
        assert ring.open(blob, aad=b"a")


def test_refuses_a_foreign_kek(tmp_path):
    _seed(tmp_path)
    Keyring(os.urandom(32), FileKeyMaterialStore(tmp_path / "keys")).create_key("stray")
    with pytest.raises(RotationError):
        rotate_master_key(tmp_path / "master.key", tmp_path / "keys")


def test_cli_refuses_while_a_server_runs(tmp_path):
    old, sealed, _ = _seed(tmp_path)
    runner = CliRunner()
    with open(tmp_path / "server.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = runner.invoke(main, ["keys", "rotate-master", "--data-dir", str(tmp_path)])
        assert res.exit_code == 1 and "stop it first" in res.output
    assert (tmp_path / "master.key").read_bytes() == old
    res = runner.invoke(main, ["keys", "rotate-master", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "4 key(s) re-wrapped" in res.output
    assert _reopen(tmp_path).open(sealed["platform"], aad=b"a") == b"platform data"
    res = runner.invoke(main, ["keys", "rotate-master", "--data-dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 1
