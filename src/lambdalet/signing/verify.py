"""Deployment-time verification of a package against the signer's records.

Two classes of failure, as Lambda has them:
- integrity (`IntegrityFailure`, always blocks): the signature file is malformed, names a profile
  version this platform does not know, does not verify under that version's public key, covers a
  different digest than the package's (the code was altered), or names a signing job that was
  never recorded (or was recorded for something else);
- untrusted artifact (`Verdict.failures`, blocks under Enforce, warns under Warn): the package is
  unsigned, its profile version is not an allowed publisher (mismatch), the signature expired
  (expiry), or it was revoked (the job itself, or its profile version with an effective time at
  or before the signing time).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa

from lambdalet.signing import package, signature
from lambdalet.signing.tables import signing_jobs as J
from lambdalet.signing.tables import signing_profiles as P

UNSIGNED = "the package is not signed"


class IntegrityFailure(Exception):
    """The signature cannot be trusted at all, or the code changed after signing."""


@dataclass(frozen=True)
class Verdict:
    signed: bool
    claims: signature.Claims | None
    failures: tuple[str, ...]            # untrusted-artifact checks that failed; () = all passed

    @property
    def ok(self) -> bool:
        return not self.failures


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def verify_package(conn, data: bytes, allowed: Sequence[str] | None, now: float) -> Verdict:
    """Check `data` (already through zipcheck) against the signer tables read through `conn`.
    `allowed`: the config's SigningProfileVersionArns (None: do not check the publisher)."""
    try:
        raw = package.read_signature(data)
    except package.PackageError as e:
        raise IntegrityFailure(str(e)) from None
    if raw is None:
        return Verdict(False, None, (UNSIGNED,))
    try:
        doc = signature.parse_document(raw)
    except signature.SignatureFormatError as e:
        raise IntegrityFailure(str(e)) from None
    c = doc.claims
    if c.digest_scheme != package.DIGEST_SCHEME:
        raise IntegrityFailure(f"unknown digest scheme {c.digest_scheme!r}")
    prof = conn.execute(sa.select(P).where(P.c.arn == c.profile_version_arn)).first()
    if prof is None:
        raise IntegrityFailure("the package is signed with a signing profile version this platform does not know")
    if prof.platform_id != c.platform_id or not signature.verify_document(doc, prof.platform_id, prof.public_key):
        raise IntegrityFailure("the signature does not verify under the signing profile's public key")
    try:
        digest = package.package_digest(data)
    except package.PackageError as e:
        raise IntegrityFailure(str(e)) from None
    if digest != c.package_digest:
        raise IntegrityFailure("the code was modified after it was signed (package digest mismatch)")
    job = conn.execute(sa.select(J).where(J.c.job_id == c.job_id)).first()
    if (job is None or job.profile_arn != prof.arn or job.package_digest != c.package_digest
            or job.job_arn != c.job_arn or abs(job.signed_at - c.signed_at) > 0.001
            or abs(job.expires_at - c.expires_at) > 0.001):
        raise IntegrityFailure("the signature's signing job is not on record")
    failures = []
    if allowed is not None and prof.arn not in allowed:
        failures.append(f"mismatch: signed with {prof.arn}, which is not an allowed publisher")
    if now >= job.expires_at:
        failures.append(f"expiry: the signature expired at {_iso(job.expires_at)}")
    if job.revoked_at is not None:
        failures.append(f"revocation: the signature ({job.job_id}) was revoked")
    if prof.revocation_effective_at is not None and job.signed_at >= prof.revocation_effective_at:
        failures.append(f"revocation: signing profile version {prof.arn} was revoked effective "
                        f"{_iso(prof.revocation_effective_at)}, before this signature was made")
    return Verdict(True, c, tuple(failures))
