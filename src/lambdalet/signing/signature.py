"""The detached signature document and the signing algorithms.

    {"format": "lambdalet-code-signature/1",
     "payload": base64(JSON claims, the exact bytes signed),
     "signature": base64(sign(b"lambdalet-code-signature/1\\n" + payload bytes))}

The claims name the digest scheme and value (package.py), the signing profile version ARN, the
signing job, the signing time and the expiry. The verifier checks the signature over the payload
*bytes* it received (no JSON re-canonicalisation) and only then parses them.

Algorithms: Ed25519 (platform `lambdalet-Ed25519`, the default) and ECDSA P-384 with SHA-384
(`lambdalet-SHA384-ECDSA`, the curve and hash of AWS Signer's AWSLambda-SHA384-ECDSA platform).
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

FORMAT = "lambdalet-code-signature/1"
_DOMAIN = (FORMAT + "\n").encode()
ED25519 = "lambdalet-Ed25519"
ECDSA_P384 = "lambdalet-SHA384-ECDSA"
PLATFORMS = {"ed25519": ED25519, "ecdsa-p384": ECDSA_P384}
_CLAIMS = ("digestScheme", "packageDigest", "signingProfileVersionArn", "signingProfileName",
           "signingProfileVersion", "signingJobId", "signingJobArn", "platformId", "signedAt", "expiresAt")


class SignatureFormatError(ValueError):
    """The document is not a well-formed lambdalet code signature."""


@dataclass(frozen=True)
class Claims:
    digest_scheme: str
    package_digest: str
    profile_version_arn: str
    profile_name: str
    profile_version: str
    job_id: str
    job_arn: str
    platform_id: str
    signed_at: float
    expires_at: float

    def to_json(self) -> dict:
        return {"digestScheme": self.digest_scheme, "packageDigest": self.package_digest,
                "signingProfileVersionArn": self.profile_version_arn, "signingProfileName": self.profile_name,
                "signingProfileVersion": self.profile_version, "signingJobId": self.job_id,
                "signingJobArn": self.job_arn, "platformId": self.platform_id,
                "signedAt": self.signed_at, "expiresAt": self.expires_at}


@dataclass(frozen=True)
class SignedDocument:
    payload: bytes          # exactly what was signed (after the domain prefix)
    signature: bytes
    claims: Claims


# ---- keys ----
def generate_private_key(platform_id: str):
    if platform_id == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if platform_id == ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown signing platform {platform_id!r}")


def private_key_der(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(der: bytes):
    return serialization.load_der_private_key(der, password=None)


def public_key_pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _sign(platform_id: str, key, message: bytes) -> bytes:
    if platform_id == ED25519 and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if platform_id == ECDSA_P384 and isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA384()))
    raise ValueError("the key does not match the signing platform")


def verify_bytes(platform_id: str, public_pem: str, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is valid for `message` under the profile's public key and platform."""
    try:
        pub = serialization.load_pem_public_key(public_pem.encode("ascii"))
        if platform_id == ED25519 and isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(signature, message)
            return True
        if platform_id == ECDSA_P384 and isinstance(pub, ec.EllipticCurvePublicKey) \
                and isinstance(pub.curve, ec.SECP384R1):
            pub.verify(signature, message, ec.ECDSA(hashes.SHA384()))
            return True
    except (InvalidSignature, ValueError, TypeError):
        return False
    return False


# ---- documents ----
def make_document(claims: Claims, platform_id: str, private_key) -> bytes:
    payload = json.dumps(claims.to_json(), sort_keys=True, separators=(",", ":")).encode()
    sig = _sign(platform_id, private_key, _DOMAIN + payload)
    doc = {"format": FORMAT, "payload": base64.b64encode(payload).decode(), "signature": base64.b64encode(sig).decode()}
    return (json.dumps(doc, indent=1) + "\n").encode()


def parse_document(raw: bytes) -> SignedDocument:
    """Structure only: the signature is NOT checked here (verify_document does)."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SignatureFormatError(f"not a {FORMAT} document")
        payload = base64.b64decode(doc["payload"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
        c = json.loads(payload)
    except SignatureFormatError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise SignatureFormatError("the signature document is malformed") from None
    if not isinstance(c, dict) or any(k not in c for k in _CLAIMS):
        raise SignatureFormatError("the signature document lacks required claims")
    strings = [k for k in _CLAIMS if k not in ("signedAt", "expiresAt")]
    if any(not isinstance(c[k], str) or not c[k] for k in strings) or \
            any(isinstance(c[k], bool) or not isinstance(c[k], (int, float)) for k in ("signedAt", "expiresAt")):
        raise SignatureFormatError("the signature document has claims of the wrong type")
    claims = Claims(c["digestScheme"], c["packageDigest"], c["signingProfileVersionArn"], c["signingProfileName"],
                    c["signingProfileVersion"], c["signingJobId"], c["signingJobArn"], c["platformId"],
                    float(c["signedAt"]), float(c["expiresAt"]))
    return SignedDocument(payload, signature, claims)


def verify_document(doc: SignedDocument, platform_id: str, public_pem: str) -> bool:
    return verify_bytes(platform_id, public_pem, _DOMAIN + doc.payload, doc.signature)
