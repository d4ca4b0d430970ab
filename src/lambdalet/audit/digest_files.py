"""Digests outside the state store (`serve --audit-digest-dir DIR`): one file per digest, so that
whoever can rewrite the database cannot also erase the evidence of what it held.

Files are named by time as CloudTrail names its digest files (a day directory, then the digest's
end time), plus the digest number so two digests of the same second never collide:
`DIR/YYYY/MM/DD/lambdalet_CloudTrail-Digest_YYYYMMDDTHHMMSSZ_<number>.json`, holding
`{"body": <the exact signed text>, "signature": <hex>}`. Each file is written 0600 under a temporary
name, fsync'd, renamed into place and its directory fsync'd: a file either exists whole or not at
all. The writer writes the file BEFORE committing the digest to the database, so a digest the
database holds (with `externalCopy`) always has its file; a file whose database row never
committed (a crash between the two) is adopted at the next start when it is consistent.

Point DIR at another mount (or a directory only an append-only shipper reads) for the separation
to mean anything: on the data dir's own disk it only protects against edits of the database file.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

PATTERN = "*_CloudTrail-Digest_*.json"


@dataclass(frozen=True)
class DigestFile:
    path: Path
    body: str | None          # None: the file is not a readable digest file
    signature: str | None


def file_name(number: int, end_time: float) -> str:
    stamp = dt.datetime.fromtimestamp(int(end_time), dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"lambdalet_CloudTrail-Digest_{stamp}_{number:08d}.json"


def day_dir(root: Path, end_time: float) -> Path:
    day = dt.datetime.fromtimestamp(int(end_time), dt.timezone.utc)
    return Path(root) / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"


def write(root: Path, number: int, end_time: float, body: str, signature: str) -> Path:
    """Write one digest file durably (0600, fsync'd file and directories). Raises OSError."""
    folder = day_dir(root, end_time)
    _make_dirs(Path(root), folder)
    final = folder / file_name(number, end_time)
    tmp = folder / f".{final.name}.tmp{os.getpid()}"
    data = json.dumps({"body": body, "signature": signature}, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(folder)
    return final


def remove(path: Path) -> None:
    """Withdraw a file whose digest did not commit (best effort)."""
    _unlink_quietly(path)
    _fsync_dir(path.parent, quiet=True)


def read_all(root: Path) -> list[DigestFile]:
    """Every digest file under root, sorted by name (time, then number)."""
    out = []
    for path in sorted(Path(root).rglob(PATTERN), key=lambda p: p.name):
        body = sig = None
        try:
            doc = json.loads(path.read_bytes())
            if isinstance(doc, dict) and isinstance(doc.get("body"), str) and isinstance(doc.get("signature"), str):
                body, sig = doc["body"], doc["signature"]
        except (OSError, ValueError):
            pass
        out.append(DigestFile(path, body, sig))
    return out


def _make_dirs(root: Path, folder: Path) -> None:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = []
    for d in reversed([folder, *folder.parents]):
        if d == root or root not in d.parents:
            continue
        if not d.is_dir():
            d.mkdir(mode=0o700, exist_ok=True)
            created.append(d)
    for d in created:                    # each new directory entry made durable in its parent
        _fsync_dir(d.parent)


def _fsync_dir(path: Path, *, quiet: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if quiet:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not quiet:
            raise
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
