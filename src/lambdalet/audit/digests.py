"""Signed digests: every N events or T seconds (and on clean shutdown) the writer signs
`{digestNumber, firstSeq, lastSeq, lastHash, digestTime, previousDigestSignature, publicKeyFingerprint}`
with an Ed25519 key, as CloudTrail's digest files do (SHA-256 with RSA there).

The private key is kept sealed by the keyring (`<audit dir>/signing-key.sealed`, 0600); the public
key is written next to it (`signing-key.pub`, PEM) for verifiers. A verifier that must not trust
this host's disk can be given a copy of the public key kept elsewhere (`audit verify --public-key`).
"""
from __future__ import annotations

import hashlib
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
    number: int
    first_seq: int
    last_seq: int
    last_hash: str           # hex
    time: float
    previous_signature: str | None
    key_fingerprint: str

    def body(self) -> str:
        return canonical({
            "digestNumber": self.number, "firstSeq": self.first_seq, "lastSeq": self.last_seq,
            "lastHash": self.last_hash, "digestTime": round(self.time, 3),
            "previousDigestSignature": self.previous_signature,
            "publicKeyFingerprint": self.key_fingerprint,
        }).decode()

    @staticmethod
    def parse(body: str) -> "Digest":
        import json
        doc = json.loads(body)
        return Digest(int(doc["digestNumber"]), int(doc["firstSeq"]), int(doc["lastSeq"]), str(doc["lastHash"]),
                      float(doc["digestTime"]), doc.get("previousDigestSignature"), str(doc["publicKeyFingerprint"]))


def sign(key: Ed25519PrivateKey, digest: Digest) -> tuple[str, str]:
    """(body, hex signature)."""
    body = digest.body()
    return body, key.sign(body.encode()).hex()


def check_signature(public: Ed25519PublicKey, body: str, signature_hex: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature_hex), body.encode())
        return True
    except (InvalidSignature, ValueError):
        return False
