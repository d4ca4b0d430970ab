"""A server's volatile run dir (/dev/shm/lambdalet-<instance>) and what servers that are gone left.

A live server holds an exclusive flock on `<run dir>/owner.lock` for its whole life. At start-up every
server sweeps the run dirs beside its own: one whose lock it can take has no live owner (killed -9,
crashed), so its processes and cgroups (named after it: `lambdalet-<instance>`), the mounts it left in
this namespace and its files — plaintext unpacked code included — are removed. A run dir without a lock
file (an older server's) is removed only if empty. A clean stop removes the lock and the empty run dir.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from pathlib import Path

from lambdalet.sandbox import cgroups, mounts

log = logging.getLogger(__name__)
NAME = re.compile(r"lambdalet-[0-9a-f]{12}")
LOCK = "owner.lock"


class RunDir:
    """This server's run dir, held (locked) until release()."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def claim(cls, path: Path) -> "RunDir":
        path.mkdir(parents=True, exist_ok=True, mode=0o711)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"another live server uses the run dir {path}") from None
        return cls(path, fd)

    def release(self) -> None:
        """The lock goes, then the run dir if nothing is left in it (else a warning naming what is)."""
        try:
            os.unlink(self.path / LOCK)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("run dir %s not empty at exit: %s", self.path, sorted(os.listdir(self.path))[:20])


def sweep_stale(base: Path, keep: Path) -> list[str]:
    """Remove the run dirs (and their cgroups, mounts, processes) in `base` whose owner is gone."""
    cleaned: list[str] = []
    try:
        entries = [e for e in os.scandir(base) if NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    for entry in entries:
        path = Path(entry.path)
        if path == keep:
            continue
        try:
            if os.geteuid() != 0 and entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue                   # rootless: another user's server (root's, say), not ours to sweep
        except FileNotFoundError:
            continue
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:          # no owner lock: an older server's; only an empty one goes
            try:
                os.rmdir(path)
                cleaned.append(f"empty run dir {path}")
            except OSError:
                pass
            continue
        except OSError as e:
            log.warning("stale run dir %s: %s", path, e)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)                   # its server is alive
            continue
        try:
            cleaned += _remove_instance(path, entry.name)
        except Exception as e:             # one bad leftover never stops a server from starting
            log.error("stale run dir %s could not be removed: %s", path, e)
        finally:
            os.close(fd)
    for line in cleaned:
        log.warning("cleaned up after a server that is gone: %s", line)
    return cleaned


def _remove_instance(path: Path, name: str) -> list[str]:
    """Processes and cgroups first (nothing may still use the files), then mounts, then the files."""
    cleaned = []
    if os.geteuid() == 0:
        try:
            if cgroups.existing_parent_dirs(name):
                killed = cgroups.remove_stale_parent(name)
                cleaned.append(f"cgroup {name}" + (f" (killed pids {killed})" if killed else ""))
        except (OSError, RuntimeError, TimeoutError) as e:
            log.error("stale cgroup %s could not be removed: %s", name, e)
            return cleaned                 # its environments may still run: keep their files
        cleaned += [f"mount {mp}" for mp in mounts.unmount_tree(str(path))]   # raises if one stays
    shutil.rmtree(path)                    # never follows a link; no mount is left below
    cleaned.append(f"run dir {path}")
    return cleaned
