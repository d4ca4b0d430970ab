"""Encrypted, content-addressed blob store (function code packages).

A blob is addressed by the sha256 of its plaintext but stored under HMAC(key, digest), so the
directory listing does not reveal whether some known file (whose hash anyone can compute) is
stored. The content is sealed with the digest as AAD, so a blob file swapped for another fails.

Who seals is a `BlobSealer`: by default the platform key (one blob per digest, shared by every
function). A function whose code names a SourceKMSKeyArn passes its own sealer (kms.lambda_keys.
CodeSealer), whose non-empty `scope` (key ARN + function ARN) joins the digest in both the file name
and the AAD: the same zip under another key, or for another function, is another blob, never one
ciphertext shared across keys.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lambdalet.crypto.envelope import sealed_key_id
from lambdalet.crypto.errors import DecryptionError
from lambdalet.crypto.keyring import PLATFORM_KEY_ID, Keyring
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


class BlobSealer(Protocol):
    """Seals and opens blob content. `scope` is "" for the platform key; otherwise it names what the
    sealing is bound to, and becomes part of the blob's address."""
    scope: str

    def seal(self, data: bytes, aad: bytes) -> bytes: ...
    def open(self, sealed: bytes, aad: bytes) -> bytes: ...


class PlatformSealer:
    """The default: the platform key, and nothing else opens (a customer-key envelope put in a
    platform blob's place is refused rather than opened)."""
    scope = ""

    def __init__(self, keyring: Keyring):
        self._keyring = keyring

    def seal(self, data: bytes, aad: bytes) -> bytes:
        return self._keyring.seal(data, aad=aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        if sealed_key_id(sealed) != PLATFORM_KEY_ID:
            raise DecryptionError("blob is not sealed under the platform key")
        return self._keyring.open(sealed, aad=aad)


class BlobStore:
    def __init__(self, root: Path, keyring: Keyring):
        self.root = Path(root)
        self._platform = PlatformSealer(keyring)
        self._name_key = keyring.derive_key("blob-name")

    def _address(self, sha256_hex: str, sealer: BlobSealer | None) -> tuple[Path, bytes, BlobSealer]:
        """-> (file, AAD, sealer). Platform blobs keep the digest alone (names and AADs unchanged)."""
        sealer = sealer or self._platform
        ident = _check_digest(sha256_hex).encode()
        if sealer.scope:
            ident += b"\x00" + sealer.scope.encode()
        name = hmac.new(self._name_key, ident, hashlib.sha256).hexdigest()
        return self.root / name[:2] / f"{name}.blob", ident, sealer     # fan-out keeps directories small

    def _path(self, sha256_hex: str, sealer: BlobSealer | None = None) -> Path:
        return self._address(sha256_hex, sealer)[0]

    def put(self, data: bytes, sealer: BlobSealer | None = None) -> BlobRef:
        """Store `data` (idempotent: storing the same bytes again under the same sealer only returns
        the same ref)."""
        digest = hashlib.sha256(data).hexdigest()
        ref = BlobRef(digest, len(data))
        path, aad, sealer = self._address(digest, sealer)
        if path.exists():
            return ref
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        sealed = sealer.seal(bytes(data), aad)
        # Overwrite is fine: a concurrent put of the same address writes equivalent content.
        write_private_file(path, sealed, overwrite=True)
        return ref

    def get(self, sha256_hex: str, sealer: BlobSealer | None = None) -> bytes:
        """The plaintext; BlobNotFound if absent (under this sealer), DecryptionError if the file was
        tampered with; whatever the sealer raises (e.g. a disabled KMS key) before anything is opened."""
        path, aad, sealer = self._address(sha256_hex, sealer)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(sha256_hex) from None
        data = sealer.open(sealed, aad)
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), sha256_hex):
            raise DecryptionError("blob content does not match its digest")   # belt and braces
        return data

    def exists(self, sha256_hex: str, sealer: BlobSealer | None = None) -> bool:
        return self._path(sha256_hex, sealer).exists()

    def delete(self, sha256_hex: str, sealer: BlobSealer | None = None) -> None:
        """Remove the blob; deleting a missing blob is not an error (callers may race)."""
        path = self._path(sha256_hex, sealer)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)
