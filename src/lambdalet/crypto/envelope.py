"""AES-256-GCM envelope encryption with a fresh data key per message.

Layout (version 1), all lengths fixed except the key id:

    b"LE" | 0x01 | len(kek_id):u8 | kek_id (utf-8)        <- prefix, AAD of the key wrap
    | wrap_nonce[12] | wrapped_data_key[32+16]              <- data key sealed by the KEK
    | data_nonce[12] | ciphertext+tag                       <- plaintext sealed by the data key

The data ciphertext's AAD is the whole header (everything before the ciphertext) followed by the
caller's aad, so neither the header nor the caller's binding (e.g. a blob digest) can be swapped.
"""
from __future__ import annotations

import os
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lambdalet.crypto.errors import DecryptionError

MAGIC = b"LE"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES


def _prefix(kek_id: str) -> bytes:
    kid = kek_id.encode("utf-8")
    if not 1 <= len(kid) <= 255:
        raise ValueError("kek_id must be 1..255 bytes of utf-8")
    return MAGIC + bytes([VERSION, len(kid)]) + kid


def seal(kek: bytes, kek_id: str, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt `plaintext` under a fresh data key, itself wrapped by `kek` (32 bytes)."""
    if len(kek) != KEY_BYTES:
        raise ValueError("kek must be 32 bytes")
    prefix = _prefix(kek_id)
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, data_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, prefix)
    header = prefix + wrap_nonce + wrapped + data_nonce
    return header + AESGCM(data_key).encrypt(data_nonce, plaintext, header + aad)


def _parse(sealed: bytes) -> tuple[str, bytes, bytes, bytes, bytes, bytes]:
    """-> (kek_id, prefix, wrap_nonce, wrapped_key, header, ciphertext); DecryptionError if malformed."""
    sealed = bytes(sealed)
    if len(sealed) < 4 or sealed[:2] != MAGIC:
        raise DecryptionError("not a lambdalet envelope")
    if sealed[2] != VERSION:
        raise DecryptionError(f"unsupported envelope version {sealed[2]}")
    end_prefix = 4 + sealed[3]
    end_header = end_prefix + NONCE_BYTES + WRAPPED_KEY_BYTES + NONCE_BYTES
    if len(sealed) < end_header + TAG_BYTES:
        raise DecryptionError("envelope truncated")
    try:
        kek_id = sealed[4:end_prefix].decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("envelope key id is not utf-8") from None
    wrap_nonce = sealed[end_prefix:end_prefix + NONCE_BYTES]
    wrapped = sealed[end_prefix + NONCE_BYTES:end_header - NONCE_BYTES]
    return kek_id, sealed[:end_prefix], wrap_nonce, wrapped, sealed[:end_header], sealed[end_header:]


def sealed_key_id(sealed: bytes) -> str:
    """The KEK id an envelope was sealed under (unauthenticated until opened)."""
    return _parse(sealed)[0]


def open_sealed(get_kek: Callable[[str], bytes], sealed: bytes, aad: bytes = b"") -> bytes:
    """Decrypt an envelope; `get_kek(kek_id)` supplies the KEK. Any failure is a DecryptionError."""
    kek_id, prefix, wrap_nonce, wrapped, header, ciphertext = _parse(sealed)
    try:
        kek = get_kek(kek_id)
    except DecryptionError:
        raise
    except (LookupError, ValueError):        # unknown or invalid key id
        raise DecryptionError(f"unknown key id {kek_id!r}") from None
    if kek is None or len(kek) != KEY_BYTES:
        raise DecryptionError(f"unknown key id {kek_id!r}")
    data_nonce = header[-NONCE_BYTES:]
    try:
        data_key = AESGCM(kek).decrypt(wrap_nonce, wrapped, prefix)
        return AESGCM(data_key).decrypt(data_nonce, ciphertext, header + bytes(aad))
    except InvalidTag:
        raise DecryptionError("envelope authentication failed (tampered, wrong key or wrong aad)") from None
