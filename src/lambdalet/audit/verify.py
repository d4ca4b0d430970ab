"""`audit verify`: recompute the chain, open every sealed event, check every digest signature.

Damage is reported per event sequence number, with its kind:
- changed    a row that does not decrypt (any edited byte of the sealed body or its event id), an
             index column that disagrees with the sealed record, or a stored hash that is not
             SHA-256(previous hash || event);
- removed    sequence numbers missing below the highest one present (whether or not the later
             rows were renumbered to hide the gap);
- reordered  events stored out of order (the sequence inside the seal goes backwards);
- truncated  events missing after the highest one present that a signed digest covers;
- digest     a digest whose signature does not verify, whose signer is not the trusted key, that
             does not follow the previous digest (number, first event, previous signature), or
             whose lastHash is not the recomputed chain.
Events after the last digest are protected by the chain (and the seal) only: deleting them
together with nothing else cannot be told from "never written" until the next digest seals them
— the same window CloudTrail has before its hourly digest. Removing the tail AND its digests is
only detectable against a copy of a later digest (or its signature) kept off this host.

Everything is read in one snapshot, so verifying a running server's trail is safe.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from lambdalet.audit import chain, digests, records
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.errors import CryptoError

_PAGE = 1000


@dataclass(frozen=True)
class Problem:
    seq: int | None          # the first event sequence number concerned (None: not an event)
    kind: str                # changed | removed | reordered | truncated | digest
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "trail"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class Report:
    events: int = 0
    highest_seq: int = 0
    digests: int = 0
    digest_last_seq: int = 0
    key_fingerprint: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq if p.seq is not None else float("inf")))

    @property
    def unsealed_tail(self) -> int:
        return max(0, self.highest_seq - self.digest_last_seq)

    def summary(self) -> str:
        if self.ok:
            text = (f"audit trail OK: {self.events} events (seq 1-{self.highest_seq}), {self.digests} signed digests"
                    + (f" (last covers up to seq {self.digest_last_seq})" if self.digests else ""))
            if self.unsealed_tail:
                text += (f"; {self.unsealed_tail} newer events are covered by the hash chain only "
                         "(not yet by a signed digest)")
            return text
        first = self.first_problem
        lines = [f"AUDIT TRAIL DAMAGED: first bad event seq {first.seq}: {first.kind}" if first.seq is not None
                 else f"AUDIT TRAIL DAMAGED: {first.kind}",
                 f"  {len(self.problems)} problem(s) in {self.events} events and {self.digests} digests:"]
        shown = sorted(self.problems, key=lambda p: (p.seq if p.seq is not None else float("inf")))
        lines += [f"  - {p}" for p in shown[:50]]
        if len(shown) > 50:
            lines.append(f"  ... and {len(shown) - 50} more")
        return "\n".join(lines)


def verify_trail(db, keyring, public_key) -> Report:
    """Verify everything in `db` (a store.db.Database) with `keyring` (to open the events) against
    `public_key` (an Ed25519PublicKey: the digests' signer)."""
    report = Report(key_fingerprint=digests.fingerprint(public_key))
    add = report.problems.append
    stored: dict[int, bytes] = {}      # seq (inside the seal, or row seq if unreadable) -> stored hash
    computed: dict[int, bytes] = {}    # seq -> recomputed chain hash
    present: set[int] = set()          # seqs accounted for (readable or damaged in place)
    deferred: list[tuple[int, bytes, bytes]] = []   # (seq, document, stored hash) whose predecessor comes later
    last_doc_seq = 0

    def _hash_bytes(text: str) -> bytes | None:
        try:
            b = bytes.fromhex(text)
            return b if len(b) == 32 else None
        except (TypeError, ValueError):
            return None

    def _link(seq: int, doc: bytes, stored_hash: bytes | None) -> bool:
        """Check the chain link into `seq`; False if its predecessor is not known yet."""
        if seq == 1:
            prev = chain.GENESIS
        else:
            prev = computed.get(seq - 1) or stored.get(seq - 1)
            if prev is None:
                return False
        h = chain.next_hash(prev, doc)
        computed[seq] = h
        if stored_hash != h:
            add(Problem(seq, "changed", "the stored chain hash is not SHA-256(previous hash || event)"))
        return True

    with db.read() as conn:
        dig_rows = conn.execute(sa.select(audit_digests).order_by(audit_digests.c.number)).all()
        t = audit_events
        after = None
        while True:
            q = sa.select(t).order_by(t.c.seq).limit(_PAGE)
            if after is not None:
                q = q.where(t.c.seq > after)
            rows = conn.execute(q).all()
            if not rows:
                break
            after = rows[-1].seq
            for row in rows:
                report.events += 1
                stored_hash = _hash_bytes(row.hash)
                try:
                    doc = chain.open_event(keyring, row.event_id, row.body_sealed)
                    parsed = json.loads(doc)
                    seq, record = int(parsed["seq"]), parsed["event"]
                    if chain.event_document(seq, record) != doc:
                        raise ValueError("not canonical")
                except (CryptoError, ValueError, KeyError, TypeError) as e:
                    what = ("does not decrypt (edited or corrupted)" if isinstance(e, CryptoError)
                            else "decrypts to a malformed record")
                    add(Problem(row.seq, "changed", f"the sealed event in row {row.seq} {what}"))
                    present.add(row.seq)
                    if stored_hash is not None:
                        stored.setdefault(row.seq, stored_hash)
                    continue
                if seq in present:
                    add(Problem(seq, "reordered", f"event {seq} is stored twice (again in row {row.seq})"))
                    continue
                present.add(seq)
                if seq <= last_doc_seq:
                    add(Problem(seq, "reordered", f"event {seq} is stored after event {last_doc_seq} "
                                                  f"(in row {row.seq})"))
                last_doc_seq = max(last_doc_seq, seq)
                try:
                    expected_cols = records.index_columns(record)
                except (KeyError, ValueError, TypeError):
                    expected_cols = None
                if expected_cols is None:
                    add(Problem(seq, "changed", "the sealed record lacks CloudTrail fields"))
                else:
                    bad = [k for k, v in expected_cols.items() if getattr(row, k) != v]
                    if bad:
                        add(Problem(seq, "changed", f"index column(s) {', '.join(bad)} of row {row.seq} "
                                                    "disagree with the sealed record"))
                if stored_hash is not None:
                    stored[seq] = stored_hash
                if not _link(seq, doc, stored_hash):
                    deferred.append((seq, doc, stored_hash))

    for seq, doc, stored_hash in sorted(deferred, key=lambda d: d[0]):
        if not _link(seq, doc, stored_hash):
            computed[seq] = stored_hash or b""    # predecessor removed (reported below): resynchronise

    highest = max(present) if present else 0
    report.highest_seq = highest
    missing_start = None
    for s in range(1, highest + 2):
        if s <= highest and s not in present:
            if missing_start is None:
                missing_start = s
        elif missing_start is not None:
            span = f"event {missing_start}" if missing_start == s - 1 else f"events {missing_start}-{s - 1}"
            add(Problem(missing_start, "removed", f"{span} missing below the highest event {highest}"))
            missing_start = None

    _check_digests(report, dig_rows, public_key, computed, highest)
    return report


def _check_digests(report: Report, rows, public_key, computed: dict[int, bytes], highest: int) -> None:
    add = report.problems.append
    fp = report.key_fingerprint
    prev_sig, prev_last, expected_number = None, 0, 1
    covered = 0
    for row in rows:
        report.digests += 1
        try:
            d = digests.Digest.parse(row.body)
        except (ValueError, KeyError, TypeError):
            add(Problem(None, "digest", f"digest {row.number} is malformed"))
            continue
        where = d.first_seq if d.first_seq > 0 else None
        if not digests.check_signature(public_key, row.body, row.signature):
            add(Problem(where, "digest", f"digest {row.number} (seq {d.first_seq}-{d.last_seq}): signature does "
                                         "not verify" + ("" if d.key_fingerprint == fp else
                                                         " (signed by another key than the trusted one)")))
        if (row.number, row.first_seq, row.last_seq) != (d.number, d.first_seq, d.last_seq):
            add(Problem(where, "digest", f"digest {row.number}: columns disagree with the signed body"))
        if d.number != expected_number:
            add(Problem(where, "digest", f"digest {expected_number} missing (found digest {d.number} next)"))
        if d.previous_signature != prev_sig:
            add(Problem(where, "digest", f"digest {d.number} does not name the previous digest's signature "
                                         "(a digest was removed, replaced or reordered)"))
        if d.first_seq != prev_last + 1 or d.last_seq < d.first_seq:
            add(Problem(where, "digest", f"digest {d.number} covers seq {d.first_seq}-{d.last_seq}, "
                                         f"expected to start at {prev_last + 1}"))
        if d.last_seq > highest:
            covered = max(covered, d.last_seq)
        else:
            h = computed.get(d.last_seq)
            if h is not None and h.hex() != d.last_hash:
                add(Problem(d.first_seq, "changed", f"the chain through seq {d.last_seq} does not match signed "
                                                    f"digest {d.number} (events {d.first_seq}-{d.last_seq} rewritten)"))
        prev_sig, prev_last, expected_number = row.signature, max(prev_last, d.last_seq), d.number + 1
    if covered > highest:
        add(Problem(highest + 1, "truncated",
                    f"events {highest + 1}-{covered} are covered by signed digests but missing"))
    report.digest_last_seq = prev_last


def load_trusted_key(audit_dir: Path, public_key_path: Path | None = None):
    return digests.load_public_key(public_key_path or Path(audit_dir) / digests.PUBLIC_FILE)
