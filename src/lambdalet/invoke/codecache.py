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
from pathlib import Path

from lambdalet.codepkg.archive import footprint
from lambdalet.codepkg.unpack import UNPACK_UID, unpack
from lambdalet.invoke.unpacked import UnpackedBudget, UnpackedCache


class CodeCache:
    def __init__(self, root: Path, blobs, *, unpack_uid: int | None = UNPACK_UID,
                 budget: UnpackedBudget | None = None, own_fs: bool = False, keys=None):
        self.blobs = blobs
        self.keys = keys    # kms.FunctionKeys: opens and checks SourceKMSKeyArn packages (None: refused)
        self.unpack_uid = unpack_uid
        self.trees = UnpackedCache(root, budget, own_fs=own_fs)

    @property
    def root(self) -> Path:
        return self.trees.root

    def path_for(self, sha256_hex: str, source_kms_key_arn: str | None = None, function_arn: str = "",
                 kms_key_arn: str | None = None, *, account_id: str = "", holder: object | None = None) -> Path:
        """The read-only directory holding this package, unpacked on first use and leased to `holder`
        (an environment) while it lives. With a SourceKMSKeyArn: Lambda's KMS*Exception unless it
        (and KMSKeyArn, if any) is usable."""
        name, sealer = sha256_hex, None
        if source_kms_key_arn:
            if self.keys is None:
                raise RuntimeError("a SourceKMSKeyArn package needs the KMS wiring (CodeCache.keys)")
            self.keys.check_code_keys(source_kms_key_arn, kms_key_arn)
            sealer = self.keys.code_sealer(source_kms_key_arn, function_arn)
            name = f"{sha256_hex}-{hashlib.sha256(sealer.scope.encode()).hexdigest()[:16]}"

        def prepare():
            data = self.blobs.get(sha256_hex, sealer) if sealer else self.blobs.get(sha256_hex)
            return footprint(data), lambda tmp: unpack([data], tmp, uid=self.unpack_uid)

        return self.trees.get(name, account_id, prepare, holder)

    def clear(self) -> None:
        self.trees.clear()
