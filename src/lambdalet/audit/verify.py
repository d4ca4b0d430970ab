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
             does not follow the previous digest (number, first event, previous signature and
             body hash, start time), or whose lastHash is not the recomputed chain;
- malformed  a row whose columns have the wrong types or are NULL (named by its event id);
- gap        (audit/timeline.py) no digest for longer than the interval the previous one promised,
             events older than one interval that no digest covers, or a stopped trail whose last
             digest is not a clean shutdown's final one (a crash, or its newest events and digests
             were deleted); with a digest directory, a digest there that the database lacks.
Events after the last digest are protected by the chain (and the seal) only until the next digest
(at most one interval: CloudTrail has the same window before its hourly digest). Deleting events
and digests back to an earlier clean shutdown is detectable only against the digest directory.

Everything is read in one snapshot, so verifying a running server's trail is safe.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.types import NullType

from lambdalet.audit import chain, digests, records, timeline
from lambdalet.audit.tables import audit_digests, audit_events
from lambdalet.crypto.errors import CryptoError

_PAGE = 1000


@dataclass(frozen=True)
class Problem:
    seq: int | None          # the first event sequence number concerned (None: not an event)
    kind: str                # changed | removed | reordered | truncated | digest | malformed | gap
    detail: str
    event_id: str | None = None    # the row's event id, when the problem is one row's

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "trail"
        if self.event_id:
            where += f" (event {self.event_id})"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass
class Report:
    events: int = 0
    highest_seq: int = 0
    digests: int = 0
    digest_last_seq: int = 0
    key_fingerprint: str = ""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # facts that are not damage (e.g. the range checked)

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
            text = self._ok_summary()
            return text + "".join(f"\n  note: {n}" for n in self.notes)
        return self._damage_summary()

    def _ok_summary(self) -> str:
        text = (f"audit trail OK: {self.events} events (seq 1-{self.highest_seq}), {self.digests} signed digests"
                + (f" (last covers up to seq {self.digest_last_seq})" if self.digests else ""))
        if self.unsealed_tail:
            text += (f"; {self.unsealed_tail} newer events are covered by the hash chain only "
                     "(not yet by a signed digest)")
        return text

    def _damage_summary(self) -> str:
        first = self.first_problem
        named = f" (event {first.event_id})" if first.event_id else ""
        lines = [f"AUDIT TRAIL DAMAGED: first bad event seq {first.seq}: {first.kind}{named}" if first.seq is not None
                 else f"AUDIT TRAIL DAMAGED: {first.kind}{named}",
                 f"  {len(self.problems)} problem(s) in {self.events} events and {self.digests} digests:"]
        shown = sorted(self.problems, key=lambda p: (p.seq if p.seq is not None else float("inf")))
        lines += [f"  - {p}" for p in shown[:50]]
        if len(shown) > 50:
            lines.append(f"  ... and {len(shown) - 50} more")
        return "\n".join(lines)


def verify_trail(db, keyring, public_key, *, start: float | None = None, end: float | None = None,
                 now: float | None = None, running: bool | None = None, digest_dir: Path | None = None) -> Report:
    """Verify everything in `db` (a store.db.Database) with `keyring` (to open the events) against
    `public_key` (an Ed25519PublicKey: the digests' signer). `start`/`end` (epoch seconds) bound the
    digest-timeline checks (the rows and the chain are always checked in full); `running` says
    whether a server holds the data dir (None: unknown, the trail's end is not judged);
    `digest_dir` is a directory of digest copies to cross-check (audit/digest_files.py)."""
    now = time.time() if now is None else now
    report = Report(key_fingerprint=digests.fingerprint(public_key))
    with db.read() as conn:
        dig_rows = conn.execute(sa.select(*_raw(audit_digests)).order_by(audit_digests.c.number)).all()
        scan = _EventScan(report, keyring, times_after=max(map(_sealed_to, dig_rows), default=0))
        for row in conn.execute(sa.select(*_raw(audit_events)).order_by(audit_events.c.seq)):
            scan.row(row)
    computed, highest = scan.finish()
    parsed = _check_digests(report, dig_rows, public_key, computed, highest)
    timeline.check(report, parsed, scan.times, start=start, end=now if end is None else end, now=now,
                   running=running)
    if digest_dir is not None:
        timeline.check_digest_dir(report, digest_dir, dig_rows, public_key, computed, highest)
    return report


def _raw(table) -> list:
    """Every column without SQLAlchemy's result processing: a row with wrong types or NULLs is then
    reported by the checks below instead of failing the fetch."""
    return [sa.type_coerce(c, NullType()).label(c.name) for c in table.columns]


def _sealed_to(row) -> int:
    try:
        return digests.Digest.parse(row.body).last_seq
    except (ValueError, KeyError, TypeError):
        return 0


def _hash_bytes(text) -> bytes | None:
    try:
        b = bytes.fromhex(text)
        return b if len(b) == 32 else None
    except (TypeError, ValueError):
        return None


class _EventScan:
    """One pass over the event rows, in stored order: opens, checks and chains each one."""

    def __init__(self, report: Report, keyring, *, times_after: int):
        self.report, self.keyring = report, keyring
        self.times_after = times_after          # only unsealed events' times are kept (memory)
        self.stored: dict[int, bytes] = {}      # seq (inside the seal, or row seq if unreadable) -> stored hash
        self.computed: dict[int, bytes] = {}    # seq -> recomputed chain hash
        self.present: set[int] = set()          # seqs accounted for (readable or damaged in place)
        self.deferred: list[tuple] = []          # (seq, doc, stored hash, event id): predecessor comes later
        self.times: dict[int, float] = {}       # seq -> eventTime (for the timeline checks)
        self.last_doc_seq = 0

    def add(self, seq, kind: str, detail: str, event_id=None) -> None:
        eid = event_id if isinstance(event_id, str) else None
        self.report.problems.append(Problem(seq, kind, detail, eid))

    def _link(self, seq: int, doc: bytes, stored_hash: bytes | None, event_id: str) -> bool:
        """Check the chain link into `seq`; False if its predecessor is not known yet."""
        if seq == 1:
            prev = chain.GENESIS
        else:
            prev = self.computed.get(seq - 1) or self.stored.get(seq - 1)
            if prev is None:
                return False
        h = chain.next_hash(prev, doc)
        self.computed[seq] = h
        if stored_hash != h:
            self.add(seq, "changed", "the stored chain hash is not SHA-256(previous hash || event)", event_id)
        return True

    def row(self, row) -> None:
        self.report.events += 1
        eid = row.event_id
        if not isinstance(row.seq, int) or isinstance(row.seq, bool):
            self.add(None, "malformed", f"a row has seq {row.seq!r} (not an event number)", eid)
            return
        if not isinstance(eid, str) or not isinstance(row.body_sealed, (bytes, bytearray, memoryview)):
            what = "event_id" if not isinstance(eid, str) else "body_sealed"
            self.add(row.seq, "malformed", f"row {row.seq}: {what} is {type(getattr(row, what)).__name__}, "
                                           "not what the schema holds", eid)
            self.present.add(row.seq)
            return
        stored_hash = _hash_bytes(row.hash)
        try:
            doc = chain.open_event(self.keyring, eid, row.body_sealed)
            parsed = json.loads(doc)
            seq, record = int(parsed["seq"]), parsed["event"]
            if chain.event_document(seq, record) != doc or not isinstance(record, dict):
                raise ValueError("not canonical")
        except (CryptoError, ValueError, KeyError, TypeError, AttributeError) as e:
            what = ("does not decrypt (edited or corrupted)" if isinstance(e, CryptoError)
                    else "decrypts to a malformed record")
            self.add(row.seq, "changed", f"the sealed event in row {row.seq} {what}", eid)
            self.present.add(row.seq)
            if stored_hash is not None:
                self.stored.setdefault(row.seq, stored_hash)
            return
        if seq in self.present:
            self.add(seq, "reordered", f"event {seq} is stored twice (again in row {row.seq})", eid)
            return
        self.present.add(seq)
        if seq <= self.last_doc_seq:
            self.add(seq, "reordered", f"event {seq} is stored after event {self.last_doc_seq} (in row {row.seq})", eid)
        self.last_doc_seq = max(self.last_doc_seq, seq)
        try:
            expected_cols = records.index_columns(record)
            if seq > self.times_after:
                self.times[seq] = expected_cols["event_time"]
        except (KeyError, ValueError, TypeError, AttributeError):
            expected_cols = None
        if expected_cols is None:
            self.add(seq, "changed", "the sealed record lacks CloudTrail fields", eid)
        else:
            bad = [k for k, v in expected_cols.items() if getattr(row, k) != v]
            if bad:
                self.add(seq, "changed", f"index column(s) {', '.join(bad)} of row {row.seq} "
                                         "disagree with the sealed record", eid)
        if stored_hash is not None:
            self.stored[seq] = stored_hash
        if not self._link(seq, doc, stored_hash, eid):
            self.deferred.append((seq, doc, stored_hash, eid))

    def finish(self) -> tuple[dict[int, bytes], int]:
        for seq, doc, stored_hash, eid in sorted(self.deferred, key=lambda d: d[0]):
            if not self._link(seq, doc, stored_hash, eid):
                self.computed[seq] = stored_hash or b""    # predecessor removed (reported below): resynchronise
        highest = max(self.present) if self.present else 0
        self.report.highest_seq = highest
        missing_start = None
        for s in range(1, highest + 2):
            if s <= highest and s not in self.present:
                if missing_start is None:
                    missing_start = s
            elif missing_start is not None:
                span = f"event {missing_start}" if missing_start == s - 1 else f"events {missing_start}-{s - 1}"
                self.add(missing_start, "removed", f"{span} missing below the highest event {highest}")
                missing_start = None
        return self.computed, highest


def _check_digests(report: Report, rows, public_key, computed: dict[int, bytes],
                   highest: int) -> list[digests.Digest]:
    """Each digest row: signature, columns, its link to the previous one, the chain it names.
    Returns the digests that parse, in order, for the timeline checks."""
    add = report.problems.append
    fp = report.key_fingerprint
    prev_sig, prev_body, prev, prev_last, expected_number = None, None, None, 0, 1
    covered = 0
    out: list[digests.Digest] = []
    for row in rows:
        report.digests += 1
        try:
            d = digests.Digest.parse(row.body)
        except (ValueError, KeyError, TypeError):
            add(Problem(None, "digest", f"digest {row.number!r} is malformed"))
            continue
        out.append(d)
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
        if d.interval is not None and prev is not None and (
                (prev.interval is not None and d.start_time != prev.time)
                or d.previous_hash != digests.body_hash(prev_body)):
            add(Problem(where, "digest", f"digest {d.number} does not start where digest {prev.number} ended "
                                         "(its previous digest hash or start time differ)"))
        empty_ok = d.interval is not None and d.last_seq == d.first_seq - 1     # an idle interval
        if d.first_seq != prev_last + 1 or (d.last_seq < d.first_seq and not empty_ok):
            add(Problem(where, "digest", f"digest {d.number} covers seq {d.first_seq}-{d.last_seq}, "
                                         f"expected to start at {prev_last + 1}"))
        if d.last_seq > highest:
            covered = max(covered, d.last_seq)
        elif d.last_seq >= d.first_seq:
            h = computed.get(d.last_seq)
            if h is not None and h.hex() != d.last_hash:
                add(Problem(d.first_seq, "changed", f"the chain through seq {d.last_seq} does not match signed "
                                                    f"digest {d.number} (events {d.first_seq}-{d.last_seq} rewritten)"))
        prev_sig, prev_body, prev = row.signature, row.body, d
        prev_last, expected_number = max(prev_last, d.last_seq), d.number + 1
    if covered > highest:
        add(Problem(highest + 1, "truncated",
                    f"events {highest + 1}-{covered} are covered by signed digests but missing"))
    report.digest_last_seq = prev_last
    return out


def load_trusted_key(audit_dir: Path, public_key_path: Path | None = None):
    return digests.load_public_key(public_key_path or Path(audit_dir) / digests.PUBLIC_FILE)
