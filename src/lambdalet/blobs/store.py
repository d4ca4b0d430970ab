"""Encrypted, content-addressed blob store (function code packages).

A blob is addressed by the sha256 of its plaintext but stored under HMAC(key, digest), so the
directory listing does not reveal whether some known file (whose hash anyone can compute) is
stored. The content is sealed with the digest as AAD, so a blob file swapped for another fails.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from lambdalet.crypto.errors import DecryptionError
from lambdalet.crypto.keyring import Keyring
from lambdalet.crypto.master import fsync_dir, write_private_file

_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobNotFound(KeyError):
    """No blob with this digest. A KeyError, so lookups can treat it like a missing mapping key."""


@dataclass(frozen=True)
class BlobRef:
    sha256_hex: str
    size: int

    @property
    def code_sha256_b64(self) -> str:
        """AWS's CodeSha256: base64 of the raw digest."""
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode("ascii")


def _check_digest(sha256_hex: str) -> str:
    if not isinstance(sha256_hex, str) or not _HEX64.fullmatch(sha256_hex):
        raise ValueError("blob id must be 64 lowercase hex characters (sha256)")
    return sha256_hex


class BlobStore:
    def __init__(self, root: Path, keyring: Keyring):
        self.root = Path(root)
        self._keyring = keyring
        self._name_key = keyring.derive_key("blob-name")

    def _path(self, sha256_hex: str) -> Path:
        name = hmac.new(self._name_key, _check_digest(sha256_hex).encode(), hashlib.sha256).hexdigest()
        return self.root / name[:2] / f"{name}.blob"     # fan-out keeps directories small

    def put(self, data: bytes) -> BlobRef:
        """Store `data` (idempotent: storing the same bytes again only returns the same ref)."""
        digest = hashlib.sha256(data).hexdigest()
        ref = BlobRef(digest, len(data))
        path = self._path(digest)
        if path.exists():
            return ref
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealed = self._keyring.seal(bytes(data), aad=digest.encode())
        # Overwrite is fine: a concurrent put of the same digest writes equivalent content.
        write_private_file(path, sealed, overwrite=True)
        return ref

    def get(self, sha256_hex: str) -> bytes:
        """The plaintext; BlobNotFound if absent, DecryptionError if the file was tampered with."""
        try:
            sealed = self._path(sha256_hex).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(sha256_hex) from None
        data = self._keyring.open(sealed, aad=sha256_hex.encode())
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha256_hex):
            raise DecryptionError("blob content does not match its digest")   # belt and braces
        return data

    def exists(self, sha256_hex: str) -> bool:
        return self._path(sha256_hex).exists()

    def delete(self, sha256_hex: str) -> None:
        """Remove the blob; deleting a missing blob is not an error (callers may race)."""
        path = self._path(sha256_hex)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)
