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
from pathlib import Path
from typing import Sequence

from lambdalet.codepkg.archive import footprint
from lambdalet.codepkg.unpack import UNPACK_UID, unpack
from lambdalet.invoke.unpacked import UnpackedBudget, UnpackedCache


class LayerCache:
    def __init__(self, root: Path, blobs, *, unpack_uid: int | None = UNPACK_UID,
                 budget: UnpackedBudget | None = None, own_fs: bool = False):
        self.blobs = blobs                      # blobs.BlobStore: layers are sealed under the platform key
        self.unpack_uid = unpack_uid
        self.trees = UnpackedCache(root, budget, own_fs=own_fs)

    @property
    def root(self) -> Path:
        return self.trees.root

    def path_for(self, digests: Sequence[str], *, account_id: str = "", holder: object | None = None) -> Path:
        """The read-only directory holding these layers merged in this order, built on first use and
        leased to `holder` (an environment) while it lives."""
        key = hashlib.sha256("\n".join(digests).encode()).hexdigest()

        def prepare():
            archives = [self.blobs.get(d) for d in digests]
            size = sum(footprint(a) for a in archives)          # an upper bound: later layers replace
            return size, lambda tmp: unpack(archives, tmp, uid=self.unpack_uid)

        return self.trees.get(key, account_id, prepare, holder)

    def clear(self) -> None:
        self.trees.clear()
