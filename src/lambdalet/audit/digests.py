"""Signed digests: every `digestInterval` seconds even when idle (CloudTrail: hourly), after every
N events, and once more on clean shutdown (`final`), the writer signs the covered range (events
firstSeq..lastSeq, the chain hash lastHash, digestStartTime..digestEndTime) chained to the
previous digest (its signature and the SHA-256 of its body) with an Ed25519 key, as CloudTrail's
digest files do (SHA-256 with RSA there).

The private key is kept sealed by the keyring (`<audit dir>/signing-key.sealed`, 0600); the public
key is written next to it (`signing-key.pub`, PEM) for verifiers. A verifier that must not trust
this host's disk can be given a copy of the public key kept elsewhere (`audit verify --public-key`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lambdalet.audit.chain import canonical
from lambdalet.crypto.master import write_private_file

PRIVATE_FILE = "signing-key.sealed"
PUBLIC_FILE = "signing-key.pub"
_KEY_AAD = b"lambdalet/audit-signing-key/v1"


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def load_or_create_signing_key(audit_dir: Path, keyring) -> Ed25519PrivateKey:
    """The digest signing key: created (sealed) on first use, unsealed afterwards. The public key
    file is (re)written when missing."""
    audit_dir = Path(audit_dir)
    audit_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    priv_path, pub_path = audit_dir / PRIVATE_FILE, audit_dir / PUBLIC_FILE
    if not priv_path.exists():
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        try:
            write_private_file(priv_path, keyring.seal(raw, _KEY_AAD), overwrite=False)
        except FileExistsError:
            pass      # another creator won: its key is the key
    key = Ed25519PrivateKey.from_private_bytes(keyring.open(priv_path.read_bytes(), _KEY_AAD))
    pem = public_pem(key.public_key())
    if not pub_path.exists() or pub_path.read_bytes() != pem:
        tmp = pub_path.with_name(pub_path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(pem)
        os.chmod(tmp, 0o644)
        os.replace(tmp, pub_path)
    return key


@dataclass(frozen=True)
class Digest:
    """One signed digest. It covers the events `first_seq..last_seq` (empty when last_seq =
    first_seq - 1: an idle interval) and the time `start_time..time`, and is chained to the
    previous digest by its signature and the SHA-256 of its body. `interval` is the writer's
    promise that the next digest follows within that many seconds unless `final` (a clean
    shutdown) says the trail stops here; `external` says a copy was also written to a digest
    directory outside the state store. Digests written before these fields existed parse with
    interval None (no promise to check)."""
    number: int
    first_seq: int
    last_seq: int
    last_hash: str           # hex
    time: float              # the end of the covered time range
    previous_signature: str | None
    key_fingerprint: str
    start_time: float | None = None
    previous_hash: str | None = None
    interval: float | None = None
    final: bool = False
    external: bool = False

    def body(self) -> str:
        if self.interval is None:        # the original format (kept so old digests re-serialise)
            return canonical({
                "digestNumber": self.number, "firstSeq": self.first_seq, "lastSeq": self.last_seq,
                "lastHash": self.last_hash, "digestTime": round(self.time, 3),
                "previousDigestSignature": self.previous_signature,
                "publicKeyFingerprint": self.key_fingerprint,
            }).decode()
        return canonical({
            "digestNumber": self.number, "firstSeq": self.first_seq, "lastSeq": self.last_seq,
            "lastHash": self.last_hash, "digestStartTime": round(self.start_time or 0.0, 3),
            "digestEndTime": round(self.time, 3), "previousDigestSignature": self.previous_signature,
            "previousDigestHash": self.previous_hash, "publicKeyFingerprint": self.key_fingerprint,
            "digestInterval": self.interval, "final": self.final, "externalCopy": self.external,
        }).decode()

    @staticmethod
    def parse(body: str) -> "Digest":
        """ValueError / KeyError / TypeError on anything malformed."""
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("a digest body is a JSON object")
        interval = doc.get("digestInterval")
        end = doc["digestEndTime"] if interval is not None else doc["digestTime"]
        prev_sig, prev_hash = doc.get("previousDigestSignature"), doc.get("previousDigestHash")
        for v in (prev_sig, prev_hash):
            if v is not None and not isinstance(v, str):
                raise TypeError("previous digest references are strings")
        return Digest(_int(doc["digestNumber"]), _int(doc["firstSeq"]), _int(doc["lastSeq"]), _str(doc["lastHash"]),
                      _num(end), prev_sig, _str(doc["publicKeyFingerprint"]),
                      start_time=_num(doc["digestStartTime"]) if interval is not None else None,
                      previous_hash=prev_hash, interval=_num(interval) if interval is not None else None,
                      final=doc.get("final") is True, external=doc.get("externalCopy") is True)


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"not an integer: {v!r}")
    return v


def _num(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"not a number: {v!r}")
    return float(v)


def _str(v) -> str:
    if not isinstance(v, str):
        raise TypeError(f"not a string: {v!r}")
    return v


def sign(key: Ed25519PrivateKey, digest: Digest) -> tuple[str, str]:
    """(body, hex signature)."""
    body = digest.body()
    return body, key.sign(body.encode()).hex()


def check_signature(public: Ed25519PublicKey, body: str, signature_hex: str) -> bool:
    if not isinstance(body, str) or not isinstance(signature_hex, str):
        return False
    try:
        public.verify(bytes.fromhex(signature_hex), body.encode())
        return True
    except (InvalidSignature, ValueError):
        return False
