"""The hash chain and the sealed form of an event.

What is chained and sealed is one canonical document per event: `{"seq": n, "event": <record>}`
as canonical JSON (sorted keys, no spaces, UTF-8, no NaN). Its bytes are
- hashed: `hash_n = SHA-256(hash_{n-1} || canonical_n)`, `hash_0` = 32 zero bytes;
- sealed: `keyring.seal(canonical_n, aad=b"lambdalet/audit-event\\x00" + eventID)`.

Why the chain is over the plaintext and the seal is separate: the chain must be recomputable from
the meaning of the trail, not from one particular encryption of it (every seal uses a fresh data
key and nonce, so ciphertexts are not reproducible), and the digest's `lastHash` then commits to
the events themselves. The seal gives confidentiality at rest (request parameters, source IPs,
user agents) and makes every changed byte of a stored row a decryption failure. The sequence
number inside the sealed document tells the verifier where an event belongs, so a row moved to
another position is reported as reordered (or removed, when the positions before it are missing)
rather than as an unexplained hash mismatch.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = bytes(32)
_AAD_PREFIX = b"lambdalet/audit-event\x00"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def event_document(seq: int, record: dict) -> bytes:
    return canonical({"seq": seq, "event": record})


def next_hash(prev: bytes, document: bytes) -> bytes:
    return hashlib.sha256(prev + document).digest()


def seal_aad(event_id: str) -> bytes:
    return _AAD_PREFIX + event_id.encode()


def seal_event(keyring, event_id: str, document: bytes) -> bytes:
    return keyring.seal(document, seal_aad(event_id))


def open_event(keyring, event_id: str, sealed: bytes) -> bytes:
    """The document's bytes; DecryptionError if the row was edited (body or event_id)."""
    return keyring.open(bytes(sealed), seal_aad(event_id))
