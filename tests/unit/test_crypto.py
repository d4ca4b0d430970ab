"""crypto/: master key file, envelope format, keyring, tokens."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from lambdalet.crypto import (DecryptionError, FileKeyMaterialStore, InsecureKeyFile, InvalidToken, Keyring,
                              MemoryKeyMaterialStore, load_or_create_master_key, make_token, open_sealed,
                              read_token, seal, sealed_key_id)
from lambdalet.crypto.envelope import MAGIC

KEK = bytes(range(32))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- master key ---------------------------------------------------------------------------------

def test_master_key_created_0600_and_stable(tmp_path):
    path = tmp_path / "sub" / "master.key"
    key = load_or_create_master_key(path)
    assert len(key) == 32 and _mode(path) == 0o600
    assert load_or_create_master_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]   # no temp file left behind


def test_master_key_created_0600_despite_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_master_key(tmp_path / "m.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.key") == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_master_key_refuses_group_or_other_access(tmp_path, mode):
    path = tmp_path / "master.key"
    load_or_create_master_key(path)
    os.chmod(path, mode)
    with pytest.raises(InsecureKeyFile):
        load_or_create_master_key(path)
    assert isinstance(InsecureKeyFile("x"), ValueError)


def test_master_key_refuses_wrong_length_and_symlink(tmp_path):
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(InsecureKeyFile):
        load_or_create_master_key(path)
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(OSError):        # O_NOFOLLOW: a planted symlink is never followed
        load_or_create_master_key(link)


def test_master_key_concurrent_creators_agree(tmp_path):
    path, results = tmp_path / "master.key", []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_master_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


# --- envelope -----------------------------------------------------------------------------------

def test_envelope_round_trip_and_fresh_keys():
    a = seal(KEK, "platform", b"secret", b"ctx")
    b = seal(KEK, "platform", b"secret", b"ctx")
    assert a != b                                   # fresh data key and nonces every time
    assert a.startswith(MAGIC + b"\x01") and b"secret" not in a
    assert sealed_key_id(a) == "platform"
    assert open_sealed(lambda kid: KEK, a, b"ctx") == b"secret"
    assert open_sealed(lambda kid: KEK, seal(KEK, "k", b""), b"") == b""


def test_envelope_every_flipped_byte_is_detected():
    sealed = seal(KEK, "platform", b"payload bytes", b"aad")
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(DecryptionError):
            open_sealed(lambda kid: KEK, bytes(bad), b"aad")


def test_envelope_wrong_aad_wrong_key_truncation_unknown_key():
    sealed = seal(KEK, "platform", b"payload", b"digest-1")
    with pytest.raises(DecryptionError):
        open_sealed(lambda kid: KEK, sealed, b"digest-2")
    with pytest.raises(DecryptionError):
        open_sealed(lambda kid: bytes(32), sealed, b"digest-1")
    for cut in (0, 3, 20, len(sealed) - 1):
        with pytest.raises(DecryptionError):
            open_sealed(lambda kid: KEK, sealed[:cut], b"digest-1")

    def missing(kid):
        raise KeyError(kid)
    with pytest.raises(DecryptionError):
        open_sealed(missing, sealed, b"digest-1")


def test_envelope_key_id_is_bound():
    sealed = seal(KEK, "aaaa", b"payload")
    swapped = sealed.replace(b"aaaa", b"bbbb", 1)    # same length: only the AAD binding catches it
    assert sealed_key_id(swapped) == "bbbb"
    with pytest.raises(DecryptionError):
        open_sealed(lambda kid: KEK, swapped)


# --- keyring ------------------------------------------------------------------------------------

def test_keyring_round_trip_and_files(tmp_path):
    store = FileKeyMaterialStore(tmp_path / "keys")
    ring = Keyring.open(os.urandom(32), store)
    assert store.list() == ["platform"]
    key_file = tmp_path / "keys" / "platform.key"
    assert _mode(key_file) == 0o600
    sealed = ring.seal(b"hello", b"aad")
    assert ring.open(sealed, b"aad") == b"hello" == ring.unseal(sealed, b"aad")
    with pytest.raises(DecryptionError):
        ring.open(sealed, b"other")


def test_keyring_reopens_with_same_master_and_not_with_another(tmp_path):
    master = os.urandom(32)
    sealed = Keyring.open(master, FileKeyMaterialStore(tmp_path)).seal(b"persisted")
    assert Keyring.open(master, FileKeyMaterialStore(tmp_path)).open(sealed) == b"persisted"
    with pytest.raises(DecryptionError):
        Keyring.open(os.urandom(32), FileKeyMaterialStore(tmp_path))


def test_keyring_named_keys(tmp_path):
    ring = Keyring.open(os.urandom(32), MemoryKeyMaterialStore())
    with pytest.raises(KeyError):
        ring.seal(b"x", key_id="tenant-1")
    ring.create_key("tenant-1")
    ring.create_key("tenant-1")                      # idempotent
    sealed = ring.seal(b"x", key_id="tenant-1")
    assert sealed_key_id(sealed) == "tenant-1" and ring.open(sealed) == b"x"
    for bad in ("../evil", ".hidden", "", "a/b", "x" * 200):
        with pytest.raises(ValueError):
            ring.create_key(bad)


def test_keyring_material_never_contains_kek_in_clear(tmp_path):
    master = os.urandom(32)
    store = MemoryKeyMaterialStore()
    ring = Keyring.open(master, store)
    kek = ring._kek("platform")
    assert kek not in store.items["platform"] and master not in store.items["platform"]


def test_keyring_derive_key_is_stable_and_separated(tmp_path):
    master = os.urandom(32)
    ring = Keyring.open(master, FileKeyMaterialStore(tmp_path))
    k1 = ring.derive_key("code-url")
    assert len(k1) == 32 and k1 != ring.derive_key("blob-name") and k1 != master
    assert Keyring.open(master, FileKeyMaterialStore(tmp_path)).derive_key("code-url") == k1


def test_keyring_rewrap_keeps_data_and_derived_keys(tmp_path):
    old, new = os.urandom(32), os.urandom(32)
    ring = Keyring.open(old, FileKeyMaterialStore(tmp_path))
    ring.create_key("other")
    sealed, sealed2, derived = ring.seal(b"data"), ring.seal(b"d2", key_id="other"), ring.derive_key("code-url")
    before = (tmp_path / "platform.key").read_bytes()
    ring.rewrap(new)
    assert (tmp_path / "platform.key").read_bytes() != before
    assert _mode(tmp_path / "platform.key") == 0o600
    assert ring.open(sealed) == b"data"
    reopened = Keyring.open(new, FileKeyMaterialStore(tmp_path))
    assert reopened.open(sealed) == b"data" and reopened.open(sealed2) == b"d2"
    assert reopened.derive_key("code-url") == derived
    with pytest.raises(DecryptionError):
        Keyring.open(old, FileKeyMaterialStore(tmp_path))


def test_keyring_open_name_dispatch():
    ring = Keyring.create(os.urandom(32), MemoryKeyMaterialStore())
    assert isinstance(ring, Keyring)
    assert ring.open(ring.seal(b"z")) == b"z"


# --- tokens -------------------------------------------------------------------------------------

TOKEN_KEY = os.urandom(32)


def test_token_round_trip_url_safe():
    token = make_token(TOKEN_KEY, {"a": "000000000000", "s": "ab" * 32}, 600, now=1000.0)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert read_token(TOKEN_KEY, token, now=1599.0) == {"a": "000000000000", "s": "ab" * 32}
    assert read_token(TOKEN_KEY, make_token(TOKEN_KEY, {"x": 1}, 60)) == {"x": 1}


def test_token_expiry():
    token = make_token(TOKEN_KEY, {"x": 1}, 600, now=1000.0)
    with pytest.raises(InvalidToken):
        read_token(TOKEN_KEY, token, now=1600.0)
    with pytest.raises(InvalidToken):
        read_token(TOKEN_KEY, token, now=10_000.0)


def test_token_forgery():
    token = make_token(TOKEN_KEY, {"s": "a"}, 600, now=1000.0)
    with pytest.raises(InvalidToken):
        read_token(os.urandom(32), token, now=1000.0)
    body, sig = token.split(".")
    forged_body = make_token(os.urandom(32), {"s": "b"}, 10**9, now=1000.0).split(".")[0]
    for bad in (f"{forged_body}.{sig}", f"{body}.{sig[:-2]}", f"{body}x.{sig}", body, "", "a.b.c",
                f"{body}.{sig}=", token + " ", "." * 10, "x" * 10_000):
        with pytest.raises(InvalidToken):
            read_token(TOKEN_KEY, bad, now=1000.0)
    with pytest.raises(InvalidToken):
        read_token(TOKEN_KEY, None, now=1000.0)   # type: ignore[arg-type]
    assert isinstance(InvalidToken("x"), ValueError)
