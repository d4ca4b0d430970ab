"""blobs/: encrypted content-addressed store."""
from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from lambdalet.blobs import BlobNotFound, BlobRef, BlobStore
from lambdalet.crypto import DecryptionError, Keyring, MemoryKeyMaterialStore

DATA = b"PK\x03\x04 pretend this is a zip " * 100


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", Keyring.open(os.urandom(32), MemoryKeyMaterialStore()))


def _files(store: BlobStore) -> list:
    return [p for p in store.root.rglob("*") if p.is_file()]


def test_put_get_round_trip(store):
    ref = store.put(DATA)
    digest = hashlib.sha256(DATA).hexdigest()
    assert ref == BlobRef(digest, len(DATA))
    assert ref.code_sha256_b64 == base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert store.exists(digest) and store.get(digest) == DATA
    assert store.put(b"").size == 0 and store.get(hashlib.sha256(b"").hexdigest()) == b""


def test_put_is_idempotent(store):
    a, b = store.put(DATA), store.put(DATA)
    assert a == b and len(_files(store)) == 1


def test_blob_file_is_private_encrypted_and_unnamed(store):
    ref = store.put(DATA)
    (path,) = _files(store)
    raw = path.read_bytes()
    assert DATA not in raw and b"pretend this is a zip" not in raw
    assert ref.sha256_hex not in str(path.relative_to(store.root))   # name does not reveal the digest
    assert ref.sha256_hex.encode() not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_names_depend_on_the_keyring(tmp_path):
    a = BlobStore(tmp_path / "a", Keyring.open(os.urandom(32), MemoryKeyMaterialStore()))
    b = BlobStore(tmp_path / "b", Keyring.open(os.urandom(32), MemoryKeyMaterialStore()))
    a.put(DATA), b.put(DATA)
    assert _files(a)[0].name != _files(b)[0].name


def test_tampered_blob_is_rejected(store):
    ref = store.put(DATA)
    (path,) = _files(store)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x80
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        store.get(ref.sha256_hex)


def test_swapped_blob_is_rejected(store):
    # Copying one blob's file over another's must fail: the digest is the AAD.
    ref1, ref2 = store.put(b"one"), store.put(b"two")
    path1, path2 = store._path(ref1.sha256_hex), store._path(ref2.sha256_hex)
    path2.write_bytes(path1.read_bytes())
    with pytest.raises(DecryptionError):
        store.get(ref2.sha256_hex)


def test_missing_delete_and_bad_ids(store):
    digest = hashlib.sha256(b"nope").hexdigest()
    assert not store.exists(digest)
    with pytest.raises(BlobNotFound):
        store.get(digest)
    with pytest.raises(KeyError):
        store.get(digest)
    ref = store.put(DATA)
    store.delete(ref.sha256_hex)
    store.delete(ref.sha256_hex)          # deleting twice is fine
    assert not store.exists(ref.sha256_hex)
    for bad in ("../../etc/passwd", "AB" * 32, "a" * 63, "", "g" * 64):
        with pytest.raises(ValueError):
            store.get(bad)


def test_survives_master_key_rotation(tmp_path):
    from lambdalet.crypto import FileKeyMaterialStore
    ring = Keyring.open(os.urandom(32), FileKeyMaterialStore(tmp_path / "keys"))
    ref = BlobStore(tmp_path / "blobs", ring).put(DATA)
    new_master = os.urandom(32)
    ring.rewrap(new_master)
    again = BlobStore(tmp_path / "blobs", Keyring.open(new_master, FileKeyMaterialStore(tmp_path / "keys")))
    assert again.get(ref.sha256_hex) == DATA
