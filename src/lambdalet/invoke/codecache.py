"""Unpacked code for environments, keyed by CodeSha256, on tmpfs under the run dir.

Code is at rest only encrypted (blobs/); plain files exist only here, in memory-backed storage,
while environments may use them. Extraction keeps file modes (an executable `bootstrap`) and
the package's internal symlinks, which upload validation already proved stay inside.

A package sealed under a SourceKMSKeyArn gets its own entry (per key and function: what that key
opened, never shared with a platform-key copy of the same zip), and its keys are checked on every
`path_for` — i.e. for every new environment — hit or miss. AWS keeps running environments when the
key is disabled but starts no new ones; an unpacked entry must not be a way around that.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Callable


class CodeCache:
    keys = None    # kms.FunctionKeys (set by the wiring): opens and checks SourceKMSKeyArn packages

    def __init__(self, root: Path, blobs):
        self.root = root
        self.blobs = blobs
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True, mode=0o711)

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
        return build_once(self.root / name, self._lock, lambda tmp: _extract(
            self.blobs.get(sha256_hex, sealer) if sealer else self.blobs.get(sha256_hex), tmp))

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


def _extract(data: bytes, dest: Path) -> None:
    dest.mkdir(mode=0o755)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/").lstrip("/")
            if not name or any(p == ".." for p in name.split("/")):
                continue   # refused at upload; never trust it twice
            path = dest / name
            mode = (info.external_attr >> 16) & 0xFFFF
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True, mode=0o755)
                continue
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if stat.S_ISLNK(mode):
                os.symlink(zf.read(info).decode(), path)
                continue
            with zf.open(info) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            # Lambda keeps the zip's permission bits; everything must be world-readable for the sandbox uid.
            perm = (mode & 0o777) or 0o644
            os.chmod(path, perm | 0o444 | (0o111 if perm & 0o100 else 0))
    for dirpath, dirnames, _ in os.walk(dest):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
