"""Who may read the data dir: its owner only. The directory is 0700 and the SQLite files (database,
WAL, shared memory, journal) 0600. SQLite gives the -wal/-shm/-journal files the mode of the database
file, so creating that file 0600 before SQLite opens it is what keeps them private from the start;
`secure_data_dir` checks (and fixes, with a warning) a data dir made by an older server or by hand."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("lambdalet.store")
DIR_MODE, FILE_MODE = 0o700, 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (never follows a symlink there)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        pass


def _tighten(path: Path, want: int) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link: left alone"
    have = stat.S_IMODE(st.st_mode)
    if have & ~want & 0o077:                 # group or other may do something: take it away
        os.chmod(path, have & ~0o077, follow_symlinks=False)
        return f"{path} was {oct(have)}: now {oct(have & ~0o077)}"
    return None


def secure_data_dir(data_dir: Path, database: Path | None) -> list[str]:
    """Check the data dir (0700) and the SQLite files (0600), fixing and logging a warning for each one
    that gave access to anyone but its owner. Returns what was fixed."""
    fixed = [_tighten(data_dir, DIR_MODE)]
    if database is not None:
        fixed += [_tighten(Path(f"{database}{s}"), FILE_MODE) for s in SQLITE_SUFFIXES]
    fixed = [f for f in fixed if f]
    for line in fixed:
        log.warning("data dir permissions: %s", line)
    return fixed
