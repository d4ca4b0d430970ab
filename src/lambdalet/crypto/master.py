"""The master key: 32 random bytes in a 0600 file, the root of every other secret.

The file is written to a private temporary name and then hard-linked into place, so it appears
atomically (readers never see a half-written key) and a concurrent creator loses cleanly.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from lambdalet.crypto.errors import InsecureKeyFile

MASTER_KEY_BYTES = 32


def _read_checked(path: Path) -> bytes:
    # O_NOFOLLOW: a symlink planted at the key path must not redirect us to another file.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InsecureKeyFile(f"master key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise InsecureKeyFile(f"master key {path} is accessible by group/other "
                                  f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
        data = os.read(fd, MASTER_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != MASTER_KEY_BYTES:
        raise InsecureKeyFile(f"master key {path} must be exactly {MASTER_KEY_BYTES} bytes")
    return data


def write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write `data` to `path` with mode 0600, atomically and durably.

    overwrite=False raises FileExistsError if `path` exists (no window where two writers both win).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)            # the umask can only remove bits, but be explicit
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)              # fails with FileExistsError instead of clobbering
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable; some filesystems refuse fsync on a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_or_create_master_key(path: Path) -> bytes:
    """Return the master key at `path`, creating it (0600) on first start."""
    path = Path(path)
    try:
        return _read_checked(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_private_file(path, secrets.token_bytes(MASTER_KEY_BYTES), overwrite=False)
    except FileExistsError:
        pass                                 # another process created it first; use theirs
    return _read_checked(path)
