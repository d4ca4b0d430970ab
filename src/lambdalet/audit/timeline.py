"""`audit verify`'s checks of the trail's timeline and of the digest directory.

Every digest promises the next one within its `digestInterval` unless it is `final` (a clean
shutdown). So, within the checked time range:
- two consecutive digests further apart than the promise (plus a small slack for a busy writer)
  mean a digest is missing: deleted, or the server crashed in between (the two cannot be told
  apart here; the digest directory can);
- events older than one interval that no digest covers were never sealed (the writer stopped, or
  the digest that sealed them was deleted);
- with no server running (`running` False), a trail whose last digest is not final ends in a
  crash, or its newest events were deleted together with the digests covering them;
- with a server running, a last digest older than one interval means a digest is missing.
With a digest directory, each file must be in the database exactly as signed and its events must
be there; each digest the database says was copied out (`externalCopy`) must have its file.
Digests from before these fields existed carry no promise and are not judged.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from lambdalet.audit import digest_files, digests

DEFAULT_INTERVAL_S = 3600.0      # the serve default, for a trail that has no digest to say its own


def slack(interval: float) -> float:
    """Tolerance for a late digest: the writer may be busy or briefly failing."""
    return max(2.0, 0.05 * interval)


def _at(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check(report, parsed: list[digests.Digest], times: dict[int, float], *, start: float | None, end: float,
          now: float, running: bool | None) -> None:
    from lambdalet.audit.verify import Problem
    add = report.problems.append
    lo = float("-inf") if start is None else start
    for p, d in zip(parsed, parsed[1:]):
        if p.interval is None or p.final or d.time <= lo or p.time >= end:
            continue
        if d.time - p.time > p.interval + slack(p.interval):
            add(Problem(None, "gap", f"no digest between {_at(p.time)} (digest {p.number}) and {_at(d.time)} "
                                     f"(digest {d.number}): {d.time - p.time:.0f}s, digests are written every "
                                     f"{p.interval:g}s (a digest was deleted, or the server crashed)"))
    last = parsed[-1] if parsed else None
    interval = last.interval if last is not None and last.interval is not None else DEFAULT_INTERVAL_S
    if last is not None and last.interval is not None and not last.final and end >= last.time:
        if running is False:
            add(Problem(last.last_seq + 1, "gap", f"the trail ends at digest {last.number} ({_at(last.time)}), "
                                                  "which is not the final digest of a clean shutdown: the server "
                                                  "crashed, or its newest events and digests were deleted"))
        elif running and min(end, now) - last.time > interval + slack(interval):
            add(Problem(last.last_seq + 1, "gap", f"no digest since {_at(last.time)} (digest {last.number}); "
                                                  f"one is due every {interval:g}s"))
    if last is None and not times:
        return
    sealed_to = max((d.last_seq for d in parsed), default=0)
    late = sorted(s for s, t in times.items()
                  if s > sealed_to and lo <= t <= end and now - t > interval + slack(interval))
    if late:
        add(Problem(late[0], "gap", f"{len(late)} event(s) from {_at(times[late[0]])} on are older than one digest "
                                    f"interval ({interval:g}s) but no digest covers them (the writer stopped, or "
                                    "the digest covering them was deleted)"))


def check_digest_dir(report, root: Path, rows, public_key, computed: dict[int, bytes], highest: int) -> None:
    from lambdalet.audit.verify import Problem
    add = report.problems.append
    in_db = {}
    for row in rows:
        in_db.setdefault(row.number, row)
    files = digest_files.read_all(root) if Path(root).is_dir() else []
    seen: dict[int, str] = {}
    for f in files:
        if f.body is None or not digests.check_signature(public_key, f.body, f.signature):
            add(Problem(None, "digest", f"{f.path.name} in the digest directory is not a digest signed by the "
                                        "trusted key"))
            continue
        try:
            d = digests.Digest.parse(f.body)
        except (ValueError, KeyError, TypeError):
            add(Problem(None, "digest", f"{f.path.name} in the digest directory is malformed"))
            continue
        where = d.first_seq if d.first_seq > 0 else None
        if d.number in seen and seen[d.number] != f.body:
            add(Problem(where, "digest", f"two different digests numbered {d.number} in the digest directory"))
        seen[d.number] = f.body
        row = in_db.get(d.number)
        if row is None:
            add(Problem(where, "truncated", f"digest {d.number} ({f.path.name}) is in the digest directory but "
                                            "not in the database: it was deleted"))
        elif (row.body, row.signature) != (f.body, f.signature):
            add(Problem(where, "digest", f"digest {d.number} in the database differs from {f.path.name}"))
        if d.last_seq > highest:
            add(Problem(highest + 1, "truncated", f"events {highest + 1}-{d.last_seq} are covered by digest "
                                                  f"{d.number} in the digest directory but missing"))
        elif d.last_seq >= d.first_seq:
            h = computed.get(d.last_seq)
            if h is not None and h.hex() != d.last_hash:
                add(Problem(d.first_seq, "changed", f"the chain through seq {d.last_seq} does not match digest "
                                                    f"{d.number} in the digest directory"))
    for number, row in in_db.items():
        try:
            d = digests.Digest.parse(row.body)
        except (ValueError, KeyError, TypeError):
            continue
        if d.external and number not in seen:
            add(Problem(d.first_seq if d.first_seq > 0 else None, "digest",
                        f"digest {number} was written to a digest directory, but {root} does not hold it"))
    report.notes.append(f"{len(seen)} digest file(s) in {root} cross-checked")
