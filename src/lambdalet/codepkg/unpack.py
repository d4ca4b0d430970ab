"""Unpacking archives for environments: without privilege, relative to directory descriptors, never
through a link.

`unpack(archives, dest)` creates `dest` and writes the archives into it in order; an entry of a later
archive replaces whatever an earlier one put at its path (how AWS merges a function's layers), so
code packages and layer sets take the same path. The writing happens in a forked child that:

- drops to `UNPACK_UID` — a uid of its own, below the environments' range — with no groups, no
  capabilities and no_new_privs, before it reads a byte of the archive;
- writes under `dest` through an open directory descriptor (it never resolves a host path), creating
  every path with *at() calls relative to descriptors it opened with O_NOFOLLOW; files are created
  O_EXCL | O_NOFOLLOW and given their mode with fchmod, so no write or chmod ever lands through a
  link, whatever the archive holds;
- reads each archive through codepkg/archive.py, the reading upload inspection used, and refuses
  anything it refuses (the reason comes back over a pipe).

A fork, not a new interpreter: spawning and importing cost ~100 ms per new package (bench/
unpack_bench.py); the child runs only this module's code, all imported already, and leaves with
os._exit. The parent then gives the tree back to its own user (lchown, no link followed) so that a
later unpacking child cannot alter what an earlier one wrote.
"""
from __future__ import annotations

import ctypes
import encodings.cp437  # noqa: F401  (zipfile decodes legacy names with it; the child cannot import after the drop)
import gc
import io
import os
import select
import shutil
import signal
import stat
import zipfile
from pathlib import Path
from typing import Sequence

from lambdalet.codepkg import archive
from lambdalet.models.errors import InvalidZipFileException

UNPACK_UID = 199_999                 # just below the sandbox's environment uids (200,000 and up)
_TIMEOUT_S = 300
_CHUNK = 1 << 20
_MAX_OPEN_DIRS = 256
_MAX_REASON = 4096
_libc = ctypes.CDLL(None, use_errno=True)


class UnpackError(InvalidZipFileException):
    """The child refused an archive or failed (Invoke's 502 InvalidZipFileException); the message says why."""

    def __init__(self, reason: str):
        super().__init__(f"Lambda could not unzip the deployment package: {reason}")


def unpack(archives: Sequence[bytes], dest: Path, *, uid: int | None = UNPACK_UID) -> None:
    """Create `dest` (it must not exist; its parent must not be writable by `uid`) holding the
    archives written in order. `uid` None (or a server not running as root) writes as the server's
    own, unprivileged, user."""
    os.mkdir(dest, 0o700)
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        drop = uid if uid is not None and os.geteuid() == 0 else None
        if drop is not None:
            os.fchown(fd, drop, drop)
        _run_child(archives, fd, drop)
        if drop is not None:
            _own(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)


def _run_child(archives: Sequence[bytes], top_fd: int, uid: int | None) -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:                                   # the child: never returns
        code = 1
        try:
            os.close(r)
            code = _child(archives, top_fd, uid, w)
        finally:
            os._exit(code)
    os.close(w)
    reason = b""
    try:
        while True:
            ready, _, _ = select.select([r], [], [], _TIMEOUT_S)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                reason = b"timed out"
                break
            chunk = os.read(r, _MAX_REASON)
            if not chunk:
                break
            reason = (reason + chunk)[:_MAX_REASON]
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise UnpackError(reason.decode("utf-8", "replace").strip() or f"unpacking failed (status {status})")


def _child(archives: Sequence[bytes], top_fd: int, uid: int | None, report: int) -> int:
    try:
        gc.disable()                # no finalizer of the server's objects runs in this copy of it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the server's handlers
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if uid is not None:
            _drop_privileges(uid)
        os.umask(0o022)
        for data in archives:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                write_archive(zf, archive.read_archive(zf), top_fd)
        return 0
    except BaseException as e:     # the reason goes to the parent; nothing of the archive is trusted
        reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        os.write(report, reason.encode("utf-8", "replace")[:_MAX_REASON])
        return 1


def _own(top_fd: int, uid: int, gid: int) -> None:
    os.chown(".", uid, gid, dir_fd=top_fd, follow_symlinks=False)
    for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if _libc.prctl(38, 1, 0, 0, 0) != 0:          # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError("could not drop privileges")


def write_archive(zf: zipfile.ZipFile, entries, top_fd: int) -> None:
    """Write checked entries under the directory `top_fd`, replacing what is at each path."""
    dirs: dict[tuple[str, ...], int] = {(): top_fd}
    try:
        for entry in entries:
            if not entry.path:
                continue
            parent = _dir_fd(dirs, entry.path[:-1])
            leaf = entry.path[-1]
            if entry.kind == "dir":
                _dir_fd(dirs, entry.path)
                continue
            _remove(parent, leaf)
            if entry.kind == "link":
                os.symlink(archive.link_target(zf, entry), leaf, dir_fd=parent)
                continue
            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            try:
                _copy(zf, entry.info, fd)
                os.fchmod(fd, archive.file_mode(entry))
            finally:
                os.close(fd)
    finally:
        for path, fd in dirs.items():
            if path:
                os.close(fd)


def _dir_fd(dirs: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    """An open descriptor of the real directory at `path`, made (replacing a file or link) if needed."""
    if path in dirs:
        return dirs[path]
    if len(dirs) > _MAX_OPEN_DIRS:            # a package of many directories: stay far below RLIMIT_NOFILE
        for cached in [p for p in dirs if p]:
            os.close(dirs.pop(cached))
    parent = _dir_fd(dirs, path[:-1])
    name = path[-1]
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            _remove(parent, name)                 # an earlier layer's file or link gives way
            os.mkdir(name, 0o755, dir_fd=parent)
    dirs[path] = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    return dirs[path]


def _remove(parent: int, name: str) -> None:
    """Whatever is at `name` under `parent`, without following links."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)       # the descriptor-based walk: links are removed, not followed
    else:
        os.unlink(name, dir_fd=parent)


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, fd: int) -> None:
    written = 0
    with zf.open(info) as src:              # zipfile checks the CRC at the end of the stream
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise ValueError(f"entry {info.orig_filename!r} is larger than its header says")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
