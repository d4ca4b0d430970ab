"""Key hierarchy: master key -> wrapped KEKs (key material store) -> per-message data keys (envelope).

The master key never encrypts data directly: only a wrapping key is derived from it (HKDF), and
purpose keys are derived from the platform KEK, so rotating the master key only re-wraps the
small KEK files (`rewrap`) and nothing else changes.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from types import MethodType
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lambdalet.crypto import envelope
from lambdalet.crypto.errors import DecryptionError
from lambdalet.crypto.master import MASTER_KEY_BYTES, fsync_dir, load_or_create_master_key, write_private_file

PLATFORM_KEY_ID = "platform"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")   # safe as a file name; no leading dot
_WRAP_MAGIC = b"LK\x01"


class KeyMaterialStore(Protocol):
    def load(self, key_id: str) -> bytes | None: ...
    # overwrite=False must raise FileExistsError if key_id exists, so concurrent creators agree.
    def save(self, key_id: str, wrapped: bytes, *, overwrite: bool = True) -> None: ...
    def list(self) -> list[str]: ...
    # Keyring.destroy_key: forget key_id's material for good; absent is not an error.
    def delete(self, key_id: str) -> None: ...


class MemoryKeyMaterialStore:
    """In-memory store for tests and throwaway keyrings."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    def load(self, key_id: str) -> bytes | None:
        return self.items.get(key_id)

    def save(self, key_id: str, wrapped: bytes, *, overwrite: bool = True) -> None:
        check_key_id(key_id)
        if not overwrite and key_id in self.items:
            raise FileExistsError(key_id)
        self.items[key_id] = bytes(wrapped)

    def list(self) -> list[str]:
        return sorted(self.items)

    def delete(self, key_id: str) -> None:
        check_key_id(key_id)
        self.items.pop(key_id, None)


class FileKeyMaterialStore:
    """Wrapped KEKs as `dir/<key_id>.key`, mode 0600, written atomically."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)

    def _path(self, key_id: str) -> Path:
        check_key_id(key_id)
        return self.dir / f"{key_id}.key"

    def load(self, key_id: str) -> bytes | None:
        try:
            return self._path(key_id).read_bytes()
        except FileNotFoundError:
            return None

    def save(self, key_id: str, wrapped: bytes, *, overwrite: bool = True) -> None:
        """overwrite=False raises FileExistsError if the key exists (first creator wins)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self._path(key_id), wrapped, overwrite=overwrite)

    def list(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.key") if _KEY_ID_RE.fullmatch(p.stem))

    def delete(self, key_id: str) -> None:
        try:
            self._path(key_id).unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.dir)


def check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"invalid key id {key_id!r}")


def _hkdf(master_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)


def _wrapping_key(master_key: bytes) -> bytes:
    if len(master_key) != MASTER_KEY_BYTES:
        raise ValueError("master key must be 32 bytes")
    return _hkdf(master_key, b"lambdalet/kek-wrap/v1")


def _wrap(wrapping_key: bytes, key_id: str, kek: bytes) -> bytes:
    nonce = os.urandom(12)
    return _WRAP_MAGIC + nonce + AESGCM(wrapping_key).encrypt(nonce, kek, b"lambdalet/kek\x00" + key_id.encode())


def _unwrap(wrapping_key: bytes, key_id: str, wrapped: bytes) -> bytes:
    if wrapped[:3] != _WRAP_MAGIC or len(wrapped) != 3 + 12 + 32 + 16:
        raise DecryptionError(f"key material for {key_id!r} is malformed")
    try:
        return AESGCM(wrapping_key).decrypt(wrapped[3:15], wrapped[15:], b"lambdalet/kek\x00" + key_id.encode())
    except InvalidTag:
        raise DecryptionError(f"key material for {key_id!r} does not open with this master key") from None


class _ClassOrInstance:
    """`Keyring.open(master, store)` builds a keyring while `ring.open(sealed, aad)` decrypts: the
    contract uses one name for both, so dispatch on whether it is looked up on the class or an instance."""

    def __init__(self, on_class, on_instance):
        self.on_class, self.on_instance = on_class, on_instance

    def __get__(self, obj, objtype=None):
        return MethodType(self.on_class, objtype) if obj is None else MethodType(self.on_instance, obj)


class Keyring:
    def __init__(self, master_key: bytes, material: KeyMaterialStore):
        self._wrapping = _wrapping_key(bytes(master_key))   # the master key itself is not kept
        self._material = material
        self._keks: dict[str, bytes] = {}
        self._lock = threading.RLock()

    @classmethod
    def create(cls, master_key: bytes, material: KeyMaterialStore) -> "Keyring":
        """Same as `Keyring.open(master_key, material)`."""
        ring = cls(master_key, material)
        ring.create_key(PLATFORM_KEY_ID)    # first start creates it; later starts check it unwraps
        ring._kek(PLATFORM_KEY_ID)
        return ring

    def _kek(self, key_id: str) -> bytes:
        with self._lock:
            kek = self._keks.get(key_id)
            if kek is None:
                check_key_id(key_id)
                wrapped = self._material.load(key_id)
                if wrapped is None:
                    raise KeyError(key_id)
                kek = self._keks[key_id] = _unwrap(self._wrapping, key_id, wrapped)
            return kek

    def has_key(self, key_id: str) -> bool:
        check_key_id(key_id)
        with self._lock:
            return key_id in self._keks or self._material.load(key_id) is not None

    def create_key(self, key_id: str) -> None:
        """Create KEK `key_id` if it does not exist yet (idempotent, safe across processes)."""
        check_key_id(key_id)
        with self._lock:
            if self.has_key(key_id):
                return
            wrapped = _wrap(self._wrapping, key_id, AESGCM.generate_key(bit_length=256))
            try:
                self._material.save(key_id, wrapped, overwrite=False)
            except FileExistsError:
                pass                 # lost a race with another process: its key is the key

    def destroy_key(self, key_id: str) -> None:
        """Forget KEK `key_id` for good (crypto-shredding: what it sealed no longer opens).
        The platform key cannot be destroyed."""
        check_key_id(key_id)
        if key_id == PLATFORM_KEY_ID:
            raise ValueError("the platform key cannot be destroyed")
        with self._lock:
            self._keks.pop(key_id, None)
            self._material.delete(key_id)

    def seal(self, plaintext: bytes, aad: bytes = b"", key_id: str = PLATFORM_KEY_ID) -> bytes:
        """Envelope-encrypt under KEK `key_id` (KeyError if it was never created)."""
        return envelope.seal(self._kek(key_id), key_id, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes = b"") -> bytes:
        """Same as `ring.open(sealed, aad)`: decrypt anything `seal` produced, whichever KEK it
        names. DecryptionError on any failure (tampering, wrong aad, unknown key)."""
        return envelope.open_sealed(self._kek, sealed, aad)

    open = _ClassOrInstance(create.__func__, unseal)   # type: ignore[attr-defined]  # a classmethod here, in the body

    def derive_key(self, purpose: str) -> bytes:
        """A stable 32-byte key for `purpose` (e.g. "code-url" token MACs), independent per purpose.

        Derived from the platform KEK rather than the master key itself, so that rotating the
        master key (`rewrap`) does not rename every blob or invalidate outstanding tokens.
        """
        if not purpose:
            raise ValueError("purpose must be non-empty")
        return _hkdf(self._kek(PLATFORM_KEY_ID), b"lambdalet/derive/v1\x00" + purpose.encode())

    def rewrap(self, new_master_key: bytes) -> None:
        """Re-wrap every KEK under `new_master_key`; sealed data is untouched.

        Every KEK is unwrapped before anything is written, so a wrong current key changes nothing.
        Keep the old master key until this returns: a crash midway leaves KEKs under both keys.
        """
        new_wrapping = _wrapping_key(new_master_key)
        with self._lock:
            keks = {kid: self._kek(kid) for kid in self._material.list()}
            for kid, kek in keks.items():
                self._material.save(kid, _wrap(new_wrapping, kid, kek))
            self._wrapping = new_wrapping


def open_keyring(data_dir: Path, master_key_path: Path) -> Keyring:
    """A data dir's key ring: the master key file (created 0600 on first use) unwraps the keys in
    <data_dir>/keys. The server and the offline tools (signer, event sources) open it this one way."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from lambdalet.config import DataDirLayout
    return Keyring.open(load_or_create_master_key(master_key_path), FileKeyMaterialStore(DataDirLayout(data_dir).keys))
