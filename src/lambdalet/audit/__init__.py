"""The audit trail: every authenticated management call (and every refused one) becomes a
CloudTrail record; records are append-only, hash-chained, sealed at rest and signed by periodic
Ed25519 digests. `lambdalet audit verify` proves integrity; CloudTrail's LookupEvents reads them.

- records.py   call -> CloudTrail record (management/data rule, eventSource, userIdentity, redaction)
- chain.py     canonical form, SHA-256 chain, sealing
- digests.py   signing key (sealed by the keyring; public key in the audit dir), digest bodies
- digest_files.py  digests written outside the state store (`serve --audit-digest-dir`)
- facts.py     what the queue may hold about a call (no blobs, no exceptions), and its size
- trail_writer.py  rows and digests: the chain state, moved only after a commit
- recorder.py  AuditRecorder: the bounded queue, the writer thread, admission, bounded retries
- verify.py    verify_trail -> Report (changed / removed / reordered / truncated / digest / gap)
- timeline.py  verify's digest timeline: missing digests, unsealed events, the trail's end
- lookup.py    CloudTrailService.lookup_events
- cli.py       `lambdalet audit verify`
- tables.py    audit_events, audit_digests (migration 0007)
"""
from __future__ import annotations

from pathlib import Path

from lambdalet.audit.lookup import CloudTrailService
from lambdalet.audit.recorder import AuditRecorder
from lambdalet.audit.verify import Problem, Report, verify_trail
from lambdalet.config import DataDirLayout, Settings

__all__ = ["AuditRecorder", "CloudTrailService", "Problem", "Report", "verify_trail", "audit_dir", "build_recorder"]


def audit_dir(data_dir: Path) -> Path:
    return DataDirLayout(Path(data_dir)).audit


def build_recorder(settings: Settings, db, keyring, identity=None) -> AuditRecorder:
    """The platform's recorder (started). Refused requests naming a real access key are filed
    under that key's account."""
    def resolve_account(access_key_id: str) -> str | None:
        if identity is None:
            return None
        found = identity.lookup(access_key_id)
        return found[0].account_id if found else None

    return AuditRecorder(db, keyring, settings.layout.audit, data_events=settings.audit_data_events,
                         digest_every=settings.audit_digest_every, digest_interval_s=settings.audit_digest_interval_s,
                         digest_dir=settings.audit_digest_dir, resolve_account=resolve_account).start()
