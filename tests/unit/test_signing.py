"""Code signing internals: the package digest (robust to re-zipping, sensitive to any change in
what unpacks), the signature document, profiles (sealed keys, revocation) and verification."""
from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest
import sqlalchemy as sa

from lambdalet.crypto import Keyring, MemoryKeyMaterialStore
from lambdalet.signing import package, signature
from lambdalet.signing.profiles import SignerError, SignerStore
from lambdalet.signing.tables import signing_jobs, signing_profiles
from lambdalet.signing.verify import UNSIGNED, IntegrityFailure, verify_package
from lambdalet.store import open_database

ACCOUNT, REGION = "123456789012", "us-east-1"
T0 = 1_800_000_000.0


def zip_of(entries, *, compression=zipfile.ZIP_DEFLATED, date=(2024, 1, 1, 0, 0, 0)) -> bytes:
    """entries: (name, content, mode) with mode None for a directory entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, date_time=date)
            info.compress_type = compression
            info.external_attr = ((stat.S_IFDIR | 0o755) if mode is None else mode) << 16
            zf.writestr(info, content)
    return buf.getvalue()


F, X, L = stat.S_IFREG | 0o644, stat.S_IFREG | 0o755, stat.S_IFLNK | 0o777
BASE = [("lib/", b"", None), ("app.py", b"print(1)\n", F), ("lib/util.py", b"x = 1\n", F),
        ("bootstrap", b"#!/bin/sh\n", X), ("lib/link", b"util.py", L)]


# ---- the digest ----
def test_digest_ignores_how_the_zip_was_made():
    d = package.package_digest(zip_of(BASE))
    assert package.package_digest(zip_of(list(reversed(BASE)), compression=zipfile.ZIP_STORED,
                                         date=(2031, 2, 3, 4, 5, 6))) == d
    assert package.package_digest(zip_of([e for e in BASE if e[2] is not None])) == d    # no dir entries
    assert package.package_digest(zip_of([("./app.py", b"print(1)\n", F)] + BASE[2:])) == d   # "./" prefix


@pytest.mark.parametrize("change", [
    [("app.py", b"print(2)\n", F)],                      # content
    [("bootstrap", b"#!/bin/sh\n", F)],                  # executable bit dropped
    [("lib/link", b"../app.py", L)],                     # link target
    [("lib/link", b"util.py", F)],                       # link turned into a file
])
def test_digest_changes_with_what_unpacks(change):
    names = {c[0] for c in change}
    changed = [e for e in BASE if e[0] not in names] + change
    assert package.package_digest(zip_of(changed)) != package.package_digest(zip_of(BASE))


def test_digest_changes_with_added_renamed_or_empty_dirs():
    d = package.package_digest(zip_of(BASE))
    assert package.package_digest(zip_of(BASE + [("extra.py", b"", F)])) != d
    assert package.package_digest(zip_of([("main.py", b"print(1)\n", F)] + BASE[2:])) != d
    assert package.package_digest(zip_of(BASE + [("empty/", b"", None)])) != d
    assert package.package_digest(zip_of(BASE[1:])) == d        # "lib/" is implied by its children


def test_signature_entry_is_excluded_only_at_the_root():
    d = package.package_digest(zip_of(BASE))
    assert package.package_digest(zip_of(BASE + [(package.SIGNATURE_ENTRY, b"{}", F)])) == d
    assert package.package_digest(zip_of(BASE + [("lib/" + package.SIGNATURE_ENTRY, b"{}", F)])) != d


def test_embed_appends_then_replaces():
    z = zip_of(BASE)
    once = package.embed_signature(z, b"one")
    assert once.startswith(z[:100]) and package.read_signature(once) == b"one"
    twice = package.embed_signature(once, b"two")
    assert package.read_signature(twice) == b"two"
    with zipfile.ZipFile(io.BytesIO(twice)) as zf:
        assert [i.filename for i in zf.infolist()].count(package.SIGNATURE_ENTRY) == 1
    assert package.package_digest(twice) == package.package_digest(z)
    assert package.read_signature(z) is None


def test_ambiguous_packages_are_errors():
    with pytest.raises(package.PackageError):
        package.package_digest(b"not a zip")
    with pytest.raises(package.PackageError):
        package.package_digest(zip_of([("a.py", b"1", F), ("./a.py", b"2", F)]))
    with pytest.raises(package.PackageError):
        package.read_signature(zip_of([(package.SIGNATURE_ENTRY, b"x", F), ("./" + package.SIGNATURE_ENTRY, b"y", F)]))


# ---- the document ----
@pytest.mark.parametrize("platform", [signature.ED25519, signature.ECDSA_P384])
def test_document_round_trip_and_tampering(platform):
    key = signature.generate_private_key(platform)
    pem = signature.public_key_pem(key)
    claims = signature.Claims(package.DIGEST_SCHEME, "ab" * 32, "arn:p", "p", "v", "j", "arn:j", platform, T0, T0 + 9)
    raw = signature.make_document(claims, platform, key)
    doc = signature.parse_document(raw)
    assert doc.claims == claims and signature.verify_document(doc, platform, pem)
    other = signature.public_key_pem(signature.generate_private_key(platform))
    assert not signature.verify_document(doc, platform, other)
    # a changed claim (e.g. a later expiry) breaks the signature
    outer = json.loads(raw)
    payload = json.loads(__import__("base64").b64decode(outer["payload"]))
    payload["expiresAt"] = T0 + 10**9
    outer["payload"] = __import__("base64").b64encode(json.dumps(payload).encode()).decode()
    assert not signature.verify_document(signature.parse_document(json.dumps(outer).encode()), platform, pem)


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"format": "other"}', b'{"format": "lambdalet-code-signature/1"}',
                                 b'{"format": "lambdalet-code-signature/1", "payload": "e30=", "signature": "AA=="}',
                                 b'{"format": "lambdalet-code-signature/1", "payload": "!!", "signature": "AA=="}'])
def test_malformed_documents(raw):
    with pytest.raises(signature.SignatureFormatError):
        signature.parse_document(raw)


# ---- profiles and verification ----
@pytest.fixture
def env(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    now = [T0]
    store = SignerStore(db, Keyring.open(os.urandom(32), MemoryKeyMaterialStore()), clock=lambda: now[0])
    yield store, now
    db.close()


def check(store, data, allowed=None, now=None):
    with store.db.read() as conn:
        return verify_package(conn, data, allowed, now if now is not None else store.clock())


def test_private_keys_are_sealed(env):
    store, _ = env
    prof = store.create_profile(ACCOUNT, REGION, "sealed_one", validity_s=60)
    with store.db.read() as conn:
        row = conn.execute(sa.select(signing_profiles).where(signing_profiles.c.arn == prof.arn)).one()
    assert row.private_key_sealed[:2] == b"LE"           # a keyring envelope
    assert b"PRIVATE" not in row.private_key_sealed and "PUBLIC KEY" in row.public_key


def test_profile_names_and_versions(env):
    store, _ = env
    a = store.create_profile(ACCOUNT, REGION, "team_a", validity_s=60)
    assert a.arn == f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/team_a/{a.version}" and len(a.version) == 10
    with pytest.raises(SignerError):
        store.create_profile(ACCOUNT, REGION, "team_a", validity_s=60)
    b = store.create_profile(ACCOUNT, REGION, "team_a", validity_s=60, new_version=True)
    assert store.get_profile(ACCOUNT, REGION, "team_a").arn == b.arn
    for bad in ("x", "has-dash", "a" * 65, "../x"):
        with pytest.raises(SignerError):
            store.create_profile(ACCOUNT, REGION, bad, validity_s=60)
    with pytest.raises(SignerError):
        store.get_profile("210987654321", REGION, "team_a")     # profiles are per account


def test_valid_signature_and_every_failure(env):
    store, now = env
    prof = store.create_profile(ACCOUNT, REGION, "ci", validity_s=100)
    signed, job = store.sign(ACCOUNT, REGION, "ci", zip_of(BASE))
    v = check(store, signed, [prof.arn])
    assert v.ok and v.signed and v.claims.job_arn == job.job_arn
    assert check(store, zip_of(BASE), [prof.arn]).failures == (UNSIGNED,)
    assert "mismatch" in check(store, signed, ["arn:aws:signer:us-east-1:123456789012:/signing-profiles/o/v"]).failures[0]
    assert "expiry" in check(store, signed, [prof.arn], now=T0 + 100).failures[0]
    assert check(store, signed, [prof.arn], now=T0 + 99.9).ok


def test_integrity_failures(env):
    store, _ = env
    prof = store.create_profile(ACCOUNT, REGION, "ci", validity_s=100)
    signed, job = store.sign(ACCOUNT, REGION, "ci", zip_of(BASE))
    doc = package.read_signature(signed)
    altered = package.embed_signature(zip_of(BASE + [("evil.py", b"", F)]), doc)
    with pytest.raises(IntegrityFailure, match="modified"):
        check(store, altered, [prof.arn])
    with pytest.raises(IntegrityFailure):
        check(store, package.embed_signature(zip_of(BASE), b"{not json"), [prof.arn])
    # claims signed with a key that is not the profile's
    foreign = signature.generate_private_key(signature.ED25519)
    c = signature.parse_document(doc).claims
    forged = signature.make_document(c, signature.ED25519, foreign)
    with pytest.raises(IntegrityFailure, match="does not verify"):
        check(store, package.embed_signature(zip_of(BASE), forged), [prof.arn])
    # a profile version this instance never created (e.g. another lambdalet's)
    import dataclasses
    unknown = dataclasses.replace(c, profile_version_arn=c.profile_version_arn[:-10] + "ZZZZZZZZZZ")
    with pytest.raises(IntegrityFailure, match="does not know"):
        check(store, package.embed_signature(zip_of(BASE), signature.make_document(unknown, signature.ED25519,
                                                                                    foreign)), [prof.arn])
    # a genuine signature whose job is not on record is refused (a stolen key cannot back-date one)
    with store.db.begin() as conn:
        conn.execute(signing_jobs.delete().where(signing_jobs.c.job_id == job.job_id))
    with pytest.raises(IntegrityFailure, match="not on record"):
        check(store, signed, [prof.arn])


def test_revocation_effective_time(env):
    store, now = env
    prof = store.create_profile(ACCOUNT, REGION, "rev", validity_s=10_000)
    early, _ = store.sign(ACCOUNT, REGION, "rev", zip_of(BASE))
    now[0] = T0 + 100
    late, _ = store.sign(ACCOUNT, REGION, "rev", zip_of(BASE + [("v2", b"", F)]))
    now[0] = T0 + 200
    store.revoke_profile(ACCOUNT, REGION, "rev", effective_at=T0 + 50, reason="leaked")
    assert check(store, early, [prof.arn]).ok                        # signed before the effective time
    assert "revocation" in check(store, late, [prof.arn]).failures[0]
    with pytest.raises(SignerError, match="Revoked"):
        store.sign(ACCOUNT, REGION, "rev", zip_of(BASE))
    with pytest.raises(SignerError, match="already revoked"):
        store.revoke_profile(ACCOUNT, REGION, "rev")


def test_revoke_one_signature(env):
    store, _ = env
    prof = store.create_profile(ACCOUNT, REGION, "one", validity_s=10_000)
    a, job_a = store.sign(ACCOUNT, REGION, "one", zip_of(BASE))
    b, _ = store.sign(ACCOUNT, REGION, "one", zip_of(BASE + [("b", b"", F)]))
    store.revoke_signature(ACCOUNT, REGION, job_a.job_arn, reason="bad build")
    assert "revocation" in check(store, a, [prof.arn]).failures[0]
    assert check(store, b, [prof.arn]).ok
    with pytest.raises(SignerError):
        store.revoke_signature("210987654321", REGION, job_a.job_id)   # not that account's job


def test_hostile_packages_are_not_signed(env):
    store, _ = env
    store.create_profile(ACCOUNT, REGION, "safe", validity_s=60)
    with pytest.raises(SignerError):
        store.sign(ACCOUNT, REGION, "safe", zip_of([("../escape.py", b"", F)]))
    with pytest.raises(SignerError):
        store.sign(ACCOUNT, REGION, "safe", b"not a zip")
