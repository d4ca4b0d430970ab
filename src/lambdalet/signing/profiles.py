"""Signing profiles and signing jobs: lambdalet's own small AWS Signer.

A profile is named per account and region; each profile *version* is one key pair, with the ARN
arn:aws:signer:{region}:{account}:/signing-profiles/{name}/{version} that code signing configs
list as an allowed publisher. The private key is sealed by the platform keyring (AAD = the
version ARN) and only ever unsealed to sign; the public key is stored in the clear.

Every signature is a signing job recorded here (id, profile version, package digest, time,
expiry): deployment verification requires the job to exist and match, and one job can be revoked.
"""
from __future__ import annotations

import re
import secrets
import string
import time
import uuid
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from lambdalet.signing import package, signature
from lambdalet.signing.tables import signing_jobs as J
from lambdalet.signing.tables import signing_profiles as P

NAME_RE = re.compile(r"[a-zA-Z0-9_]{2,64}")
DEFAULT_VALIDITY_DAYS = 4106          # ~135 months, AWS Signer's default signature validity
MAX_VALIDITY_DAYS = 5475              # 15 years
_VERSION_CHARS = string.ascii_letters + string.digits


class SignerError(Exception):
    """A refused signer request (unknown or revoked profile, bad name, unreadable package)."""


def profile_arn(region: str, account_id: str, name: str, version: str) -> str:
    return f"arn:aws:signer:{region}:{account_id}:/signing-profiles/{name}/{version}"


def job_arn(region: str, account_id: str, job_id: str) -> str:
    return f"arn:aws:signer:{region}:{account_id}:/signing-jobs/{job_id}"


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Profile:
    arn: str
    account_id: str
    region: str
    name: str
    version: str
    platform_id: str
    validity_s: int
    public_key: str
    status: str
    created_at: float
    revoked_at: float | None = None
    revocation_effective_at: float | None = None
    revocation_reason: str | None = None

    @classmethod
    def of(cls, row) -> "Profile":
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})

    def to_json(self) -> dict:
        out = {"profileName": self.name, "profileVersion": self.version, "profileVersionArn": self.arn,
               "platformId": self.platform_id, "status": self.status,
               "signatureValidityPeriod": {"value": self.validity_s, "type": "SECONDS"},
               "createdAt": _iso(self.created_at)}
        if self.status == "Revoked":
            out["revocationRecord"] = {"revokedAt": _iso(self.revoked_at),
                                       "revocationEffectiveFrom": _iso(self.revocation_effective_at),
                                       "reason": self.revocation_reason or ""}
        return out


@dataclass(frozen=True)
class SigningJob:
    job_id: str
    job_arn: str
    profile_arn: str
    package_digest: str
    signed_at: float
    expires_at: float
    revoked_at: float | None = None
    revocation_reason: str | None = None

    @classmethod
    def of(cls, row) -> "SigningJob":
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})

    def to_json(self) -> dict:
        d = asdict(self)
        return {"jobId": d["job_id"], "jobArn": d["job_arn"], "profileVersionArn": d["profile_arn"],
                "packageDigest": d["package_digest"], "signedAt": _iso(self.signed_at),
                "signatureExpiresAt": _iso(self.expires_at), "revoked": self.revoked_at is not None}


def _aad(arn: str) -> bytes:
    return b"lambdalet/signing-profile\x00" + arn.encode()


class SignerStore:
    def __init__(self, db, keyring, clock=time.time):
        self.db, self.keyring, self.clock = db, keyring, clock

    # ---- profiles ----
    def create_profile(self, account_id: str, region: str, name: str, *, validity_s: int,
                       platform_id: str = signature.ED25519, new_version: bool = False) -> Profile:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise SignerError(f"invalid profile name {name!r}: 2-64 characters of [a-zA-Z0-9_]")
        if not 1 <= int(validity_s) <= MAX_VALIDITY_DAYS * 86400:
            raise SignerError(f"the signature validity period must be 1 second to {MAX_VALIDITY_DAYS} days")
        if platform_id not in signature.PLATFORMS.values():
            raise SignerError(f"unknown signing platform {platform_id!r}")
        key = signature.generate_private_key(platform_id)
        version = "".join(secrets.choice(_VERSION_CHARS) for _ in range(10))
        arn = profile_arn(region, account_id, name, version)
        sealed = self.keyring.seal(signature.private_key_der(key), _aad(arn))
        with self.db.begin() as conn:
            newest = conn.execute(sa.select(sa.func.max(P.c.created_at)).where(
                P.c.account_id == account_id, P.c.region == region, P.c.name == name)).scalar()
            if newest is not None and not new_version:
                raise SignerError(f"signing profile {name!r} already exists (use --new-version for a new key)")
            created = self.clock() if newest is None else max(self.clock(), newest + 0.001)   # newest sorts last
            conn.execute(P.insert().values(
                arn=arn, account_id=account_id, region=region, name=name, version=version, platform_id=platform_id,
                validity_s=int(validity_s), public_key=signature.public_key_pem(key), private_key_sealed=sealed,
                status="Active", created_at=created))
            return Profile.of(conn.execute(sa.select(P).where(P.c.arn == arn)).one())

    def list_profiles(self, account_id: str, region: str, name: str | None = None) -> list[Profile]:
        q = sa.select(P).where(P.c.account_id == account_id, P.c.region == region)
        if name is not None:
            q = q.where(P.c.name == name)
        with self.db.read() as conn:
            return [Profile.of(r) for r in conn.execute(q.order_by(P.c.name, P.c.created_at))]

    def get_profile(self, account_id: str, region: str, name: str, version: str | None = None) -> Profile:
        """A named version, or the newest version of the profile."""
        found = [p for p in self.list_profiles(account_id, region, name) if version in (None, p.version)]
        if not found:
            what = f"{name}/{version}" if version else name
            raise SignerError(f"no signing profile {what!r} in account {account_id}, region {region}")
        return found[-1]

    def revoke_profile(self, account_id: str, region: str, name: str, *, version: str | None = None,
                       effective_at: float | None = None, reason: str = "") -> Profile:
        """Signatures made at or after `effective_at` (default: now) become invalid; the version
        signs nothing more. Revoking again is refused, as AWS Signer refuses it."""
        prof = self.get_profile(account_id, region, name, version)
        if prof.status == "Revoked":
            raise SignerError(f"signing profile version {prof.arn} is already revoked")
        now = self.clock()
        with self.db.begin() as conn:
            conn.execute(P.update().where(P.c.arn == prof.arn).values(
                status="Revoked", revoked_at=now, revocation_effective_at=now if effective_at is None else effective_at,
                revocation_reason=reason[:500]))
            return Profile.of(conn.execute(sa.select(P).where(P.c.arn == prof.arn)).one())

    # ---- signing ----
    def sign(self, account_id: str, region: str, name: str, data: bytes, *,
             version: str | None = None) -> tuple[bytes, SigningJob]:
        """-> (the package with its signature file, the recorded signing job)."""
        from lambdalet.codepkg.zipcheck import inspect_zip
        from lambdalet.models.errors import AwsError

        prof = self.get_profile(account_id, region, name, version)
        if prof.status != "Active":
            raise SignerError(f"signing profile version {prof.arn} is {prof.status}: it cannot sign")
        try:
            inspect_zip(data, operation="sign")       # never sign what the platform would refuse
            digest = package.package_digest(data)
        except AwsError as e:
            raise SignerError(f"the package cannot be signed: {e.message}") from None
        except package.PackageError as e:
            raise SignerError(f"the package cannot be signed: {e}") from None
        with self.db.read() as conn:
            sealed = conn.execute(sa.select(P.c.private_key_sealed).where(P.c.arn == prof.arn)).scalar_one()
        key = signature.load_private_key(self.keyring.unseal(sealed, _aad(prof.arn)))
        job_id = str(uuid.uuid4())
        signed_at = round(self.clock(), 3)
        job = SigningJob(job_id, job_arn(region, account_id, job_id), prof.arn, digest, signed_at,
                         signed_at + prof.validity_s)
        claims = signature.Claims(package.DIGEST_SCHEME, digest, prof.arn, prof.name, prof.version, job_id,
                                  job.job_arn, prof.platform_id, job.signed_at, job.expires_at)
        document = signature.make_document(claims, prof.platform_id, key)
        with self.db.begin() as conn:                # recorded before the signed package exists
            conn.execute(J.insert().values(**asdict(job)))
        return package.embed_signature(data, document), job

    def find_job(self, account_id: str, region: str, job: str) -> SigningJob:
        job_id = job.rsplit("/", 1)[-1]
        with self.db.read() as conn:
            row = conn.execute(sa.select(J).join(P, J.c.profile_arn == P.c.arn).where(
                J.c.job_id == job_id, P.c.account_id == account_id, P.c.region == region)).first()
        if row is None:
            raise SignerError(f"no signing job {job!r} in account {account_id}, region {region}")
        return SigningJob.of(row)

    def revoke_signature(self, account_id: str, region: str, job: str, *, reason: str = "") -> SigningJob:
        found = self.find_job(account_id, region, job)
        if found.revoked_at is not None:
            raise SignerError(f"signature {found.job_id} is already revoked")
        with self.db.begin() as conn:
            conn.execute(J.update().where(J.c.job_id == found.job_id).values(revoked_at=self.clock(),
                                                                               revocation_reason=reason[:500]))
            return SigningJob.of(conn.execute(sa.select(J).where(J.c.job_id == found.job_id)).one())
