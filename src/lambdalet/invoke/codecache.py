"""Unpacked code for environments, keyed by CodeSha256, on tmpfs under the run dir.

Code is at rest only encrypted (blobs/); plain files exist only here, in memory-backed storage,
while environments may use them. Extraction (codepkg/unpack.py: an unprivileged child writing
relative to directory descriptors, never through a link, reading the archive exactly as upload
inspection did) keeps file modes (an executable `bootstrap`) and the package's internal symlinks.

A package sealed under a SourceKMSKeyArn gets its own entry (per key and function: what that key
opened, never shared with a platform-key copy of the same zip), and its keys are checked on every
`path_for` — i.e. for every new environment — hit or miss. AWS keeps running environments when the
key is disabled but starts no new ones; an unpacked entry must not be a way around that.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable

from lambdalet.codepkg.unpack import UNPACK_UID, unpack


class CodeCache:
    keys = None    # kms.FunctionKeys (set by the wiring): opens and checks SourceKMSKeyArn packages

    def __init__(self, root: Path, blobs, *, unpack_uid: int | None = UNPACK_UID):
        self.root = root
        self.blobs = blobs
        self.unpack_uid = unpack_uid
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)   # only root (and its mounts) reach unpacked code

    def path_for(self, sha256_hex: str, source_kms_key_arn: str | None = None, function_arn: str = "",
                 kms_key_arn: str | None = None) -> Path:
        """The read-only directory holding this package, unpacked on first use. With a
        SourceKMSKeyArn: Lambda's KMS*Exception unless it (and KMSKeyArn, if any) is usable."""
        name, sealer = sha256_hex, None
        if source_kms_key_arn:
            if self.keys is None:
                raise RuntimeError("a SourceKMSKeyArn package needs the KMS wiring (CodeCache.keys)")
            self.keys.check_code_keys(source_kms_key_arn, kms_key_arn)
            sealer = self.keys.code_sealer(source_kms_key_arn, function_arn)
            name = f"{sha256_hex}-{hashlib.sha256(sealer.scope.encode()).hexdigest()[:16]}"
        return build_once(self.root / name, self._lock, lambda tmp: unpack(
            [self.blobs.get(sha256_hex, sealer) if sealer else self.blobs.get(sha256_hex)], tmp, uid=self.unpack_uid))

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def build_once(target: Path, lock: threading.Lock, build: Callable[[Path], None]) -> Path:
    """`target`, built on first use by `build(tmp)` (tmp does not exist yet) and renamed into place,
    so a reader never sees a half-built directory and concurrent first uses build it once."""
    if target.is_dir():
        return target
    with lock:
        if target.is_dir():
            return target
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
