"""A function's layers, extracted in order into one directory that environments mount at /opt.

Keyed by the ordered list of layer digests (one directory per distinct combination) on tmpfs under
the run dir, next to invoke/codecache.py's unpacked code: layer content is at rest only encrypted
(blobs/), never plain in the data dir. As AWS documents, layers are extracted in the function's
order and a later layer's file replaces an earlier one's at the same path.

Packages were each proven safe on their own (codepkg/zipcheck.py), but not together: an earlier
layer's symlink could sit where a later layer writes a directory. codepkg/unpack.py writes them in
one unprivileged child that never writes through a link: a path component that is not a real
directory is replaced by one, and a later layer's entry replaces what is at its path.
"""
from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path
from typing import Sequence

from lambdalet.codepkg.unpack import UNPACK_UID, unpack
from lambdalet.invoke.codecache import build_once


class LayerCache:
    def __init__(self, root: Path, blobs, *, unpack_uid: int | None = UNPACK_UID):
        self.root = Path(root)
        self.blobs = blobs                      # blobs.BlobStore: layers are sealed under the platform key
        self.unpack_uid = unpack_uid
        self._lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)   # only root (and its mounts) reach unpacked code

    def path_for(self, digests: Sequence[str]) -> Path:
        """The read-only directory holding these layers merged in this order, built on first use."""
        key = hashlib.sha256("\n".join(digests).encode()).hexdigest()

        return build_once(self.root / key, self._lock,
                          lambda tmp: unpack([self.blobs.get(d) for d in digests], tmp, uid=self.unpack_uid))

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
