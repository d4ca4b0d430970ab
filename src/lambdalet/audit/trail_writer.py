"""The trail's write side: call facts -> chained, sealed rows; the chain's state -> signed digests
(in the database, and first in the digest directory when there is one).

`TrailWriter` owns the in-memory chain state and moves it only after a commit, so a failed write
can be retried or abandoned without leaving a hole in the sequence. Callers serialise through
`lock` (the recorder's thread, or a straggler written after close).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from lambdalet.audit import chain, digest_files, digests, records
from lambdalet.audit.tables import audit_digests, audit_events

log = logging.getLogger("lambdalet.audit")


@dataclass(frozen=True)
class ChainState:
    last_seq: int
    last_hash: bytes
    digest_number: int
    digest_last_seq: int
    digest_signature: str | None
    digest_body_hash: str | None = None     # SHA-256 of the last digest's body
    digest_end: float | None = None         # its end time
    digest_final: bool = False              # written by a clean shutdown
    digest_interval: float | None = None


def read_state(conn) -> ChainState:
    row = conn.execute(sa.select(audit_events.c.seq, audit_events.c.hash)
                       .order_by(audit_events.c.seq.desc()).limit(1)).first()
    d = conn.execute(sa.select(audit_digests).order_by(audit_digests.c.number.desc()).limit(1)).first()
    state = ChainState(row.seq if row else 0, bytes.fromhex(row.hash) if row else chain.GENESIS,
                       d.number if d else 0, d.last_seq if d else 0, d.signature if d else None)
    if d is not None:
        try:
            parsed = digests.Digest.parse(d.body)
            state = replace(state, digest_body_hash=digests.body_hash(d.body), digest_end=parsed.time,
                            digest_final=parsed.final, digest_interval=parsed.interval)
        except (ValueError, KeyError, TypeError):
            log.error("audit: the last digest (%s) is malformed; `lambdalet audit verify` will report it", d.number)
    return state


class TrailWriter:
    def __init__(self, db, keyring, key, *, digest_dir: Path | None, interval_s: float,
                 resolve_account: Callable[[str], str | None] | None, clock: Callable[[], float]):
        self.db, self.keyring, self.key = db, keyring, key
        self.fingerprint = digests.fingerprint(key.public_key())
        self.digest_dir = Path(digest_dir) if digest_dir is not None else None
        self.interval_s = float(interval_s)
        self.resolve_account = resolve_account
        self.clock = clock
        self.lock = threading.Lock()
        with db.read() as conn:
            self.state = read_state(conn)
        self.started = clock()

    @property
    def pending(self) -> int:
        """Events committed but not yet covered by a digest."""
        return self.state.last_seq - self.state.digest_last_seq

    # ---- events ----
    def build(self, item: dict) -> dict:
        ctx = item["ctx"]
        caller = getattr(ctx, "caller", None)
        account = None
        if caller is None and item["access_key_id"] and self.resolve_account is not None:
            try:
                account = self.resolve_account(item["access_key_id"]) or ""
            except Exception:
                account = ""
        kw = dict(service=item["service"], operation=item["operation"], caller=caller,
                  params=item["params"], result=item["result"], error=item["error"],
                  source_ip=item["source_ip"], user_agent=item["user_agent"],
                  access_key_id=item["access_key_id"] or getattr(caller, "access_key_id", None),
                  request_id=item["request_id"] or getattr(ctx, "request_id", None),
                  region=item["region"] or getattr(ctx, "region", None), event_time=item["event_time"],
                  account_id=account)
        try:
            record = records.build_record(**kw)
        except Exception:   # a bug must not cost the event: keep what is certainly serialisable
            log.exception("audit: could not build the record of %s; recording it without parameters",
                          item["operation"])
            kw.update(params=None, result=None, caller=None)
            record = records.build_record(**kw)
        if item.get("suppressed"):
            record["additionalEventData"] = {"refusedRequestsNotRecordedBefore": item["suppressed"]}
        return record

    def write_events(self, items: list[dict]) -> None:
        """One transaction for the lot; raises (state unchanged) if it does not commit."""
        if not items:
            return
        with self.lock:
            state = self.state
            for item in items:          # built once: a retried batch keeps its eventIDs
                if "_record" not in item:
                    item["_record"] = self.build(item)
            seq, h = state.last_seq, state.last_hash
            rows = []
            for item in items:
                record = item["_record"]
                seq += 1
                doc = chain.event_document(seq, record)
                h = chain.next_hash(h, doc)
                cols = records.index_columns(record)
                sealed = chain.seal_event(self.keyring, cols["event_id"], doc)
                rows.append(dict(seq=seq, hash=h.hex(), body_sealed=sealed, **cols))
            with self.db.begin() as conn:
                conn.execute(audit_events.insert(), rows)
            self.state = replace(state, last_seq=seq, last_hash=h)

    # ---- digests ----
    def write_digest(self, *, final: bool = False) -> digests.Digest:
        """Sign the range since the last digest (possibly empty) chained to it; the digest file
        first (when there is a directory), then the database row. Raises if either fails (the
        file is withdrawn when the row does not commit)."""
        with self.lock:
            st = self.state
            start = st.digest_end if st.digest_end is not None else self.started
            d = digests.Digest(st.digest_number + 1, st.digest_last_seq + 1, st.last_seq, st.last_hash.hex(),
                               max(self.clock(), start), st.digest_signature, self.fingerprint,
                               start_time=start, previous_hash=st.digest_body_hash, interval=self.interval_s,
                               final=final, external=self.digest_dir is not None)
            body, sig = digests.sign(self.key, d)
            path = digest_files.write(self.digest_dir, d.number, d.time, body, sig) if self.digest_dir else None
            try:
                self._insert_digest(d, body, sig)
            except BaseException:
                if path is not None:
                    digest_files.remove(path)
                raise
            self.state = replace(st, digest_number=d.number, digest_last_seq=d.last_seq, digest_signature=sig,
                                 digest_body_hash=digests.body_hash(body), digest_end=d.time,
                                 digest_final=final, digest_interval=d.interval)
            return d

    def _insert_digest(self, d: digests.Digest, body: str, sig: str) -> None:
        with self.db.begin() as conn:
            conn.execute(audit_digests.insert().values(number=d.number, first_seq=d.first_seq, last_seq=d.last_seq,
                                                       created_at=d.time, body=body, signature=sig))

    def adopt_orphan_files(self) -> None:
        """A crash between a digest's file and its row leaves the file alone: when it continues the
        database's chain exactly (next number, previous signature, events present with that hash),
        commit its row as it was signed. Anything else stays for `audit verify` to report."""
        if self.digest_dir is None or not self.digest_dir.is_dir():
            return
        public = self.key.public_key()
        for f in digest_files.read_all(self.digest_dir):
            st = self.state
            if f.body is None or not digests.check_signature(public, f.body, f.signature):
                continue
            try:
                d = digests.Digest.parse(f.body)
            except (ValueError, KeyError, TypeError):
                continue
            if d.number <= st.digest_number:
                continue
            if (d.number != st.digest_number + 1 or d.previous_signature != st.digest_signature
                    or d.first_seq != st.digest_last_seq + 1 or d.last_seq > st.last_seq
                    or not self._hash_matches(d.last_seq, d.last_hash)):
                log.error("audit: digest file %s does not continue the database's trail (events or digests "
                          "it names are gone?); `lambdalet audit verify --digest-dir` will report it", f.path)
                return
            self._insert_digest(d, f.body, f.signature)
            self.state = replace(st, digest_number=d.number, digest_last_seq=d.last_seq,
                                 digest_signature=f.signature, digest_body_hash=digests.body_hash(f.body),
                                 digest_end=d.time, digest_final=d.final, digest_interval=d.interval)
            log.warning("audit: adopted digest %d from %s (its database row was never committed)", d.number, f.path)

    def _hash_matches(self, seq: int, last_hash: str) -> bool:
        if seq == 0:
            return last_hash == chain.GENESIS.hex()
        with self.db.read() as conn:
            stored = conn.execute(sa.select(audit_events.c.hash).where(audit_events.c.seq == seq)).scalar()
        return stored == last_hash

    def next_due(self) -> float:
        """Monotonic time of the next interval digest: one interval after the last, or now when the
        last one is overdue (a crash) or events are waiting unsealed (from before a restart)."""
        st = self.state
        now_m, now_w = time.monotonic(), self.clock()
        if st.digest_end is None or st.digest_final:
            return now_m if self.pending > 0 else now_m + self.interval_s
        return now_m + max(0.0, st.digest_end + self.interval_s - now_w)
