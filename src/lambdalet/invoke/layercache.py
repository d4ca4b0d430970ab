"""A function's layers, extracted in order into one directory that environments mount at /opt.

Keyed by the ordered list of layer digests (one directory per distinct combination) on tmpfs under
the run dir, next to invoke/codecache.py's unpacked code: layer content is at rest only encrypted
(blobs/), never plain in the data dir. As AWS documents, layers are extracted in the function's
order and a later layer's file replaces an earlier one's at the same path.

Merging runs as the server's (often root) user over packages that were each proven safe on their
own (codepkg/zipcheck.py), but not together: an earlier layer's symlink could sit where a later
layer writes a directory. So nothing is ever written through a symlink: a path component that is
not a real directory is replaced by one, and files are created with O_EXCL | O_NOFOLLOW.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import threading
import zipfile
from pathlib import Path
from typing import Sequence

from lambdalet.invoke.codecache import build_once


class LayerCache:
    def __init__(self, root: Path, blobs):
        self.root = Path(root)
        self.blobs = blobs                      # blobs.BlobStore: layers are sealed under the platform key
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)

    def path_for(self, digests: Sequence[str]) -> Path:
        """The read-only directory holding these layers merged in this order, built on first use."""
        key = hashlib.sha256("\n".join(digests).encode()).hexdigest()

        def build(tmp: Path) -> None:
            tmp.mkdir(mode=0o755)
            for digest in digests:
                merge_zip(self.blobs.get(digest), tmp)
            _open_up(tmp)

        return build_once(self.root / key, self._lock, build)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _remove(path: Path) -> None:
    """Whatever is at `path` (file, symlink or directory), without following links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _real_dir(path: Path) -> None:
    """Make `path` a real directory: an earlier layer's file or symlink there gives way."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return
    except FileNotFoundError:
        pass
    _remove(path)
    path.mkdir(mode=0o755)


def merge_zip(data: bytes, dest: Path) -> None:
    """Extract one (already validated) layer zip over `dest`, replacing what is at each path."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                continue                        # refused at upload; never trust it twice
            here = dest
            for part in parts[:-1]:
                here = here / part
                _real_dir(here)
            path = here / parts[-1]
            if info.is_dir():
                _real_dir(path)
                continue
            _remove(path)                       # the later layer wins
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                os.symlink(zf.read(info).decode(), path)
                continue
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with zf.open(info) as src, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            # Lambda keeps the zip's permission bits; everything must be readable by the sandbox's uid.
            perm = (mode & 0o777) or 0o644
            os.chmod(path, perm | 0o444 | (0o111 if perm & 0o100 else 0))


def _open_up(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):      # does not follow symlinks
        for d in dirnames:
            path = os.path.join(dirpath, d)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
