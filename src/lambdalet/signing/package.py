"""How a signed package travels: the signature is a file at the zip's root, and the digest it
signs covers the *tree the package unpacks to*, not the zip's bytes.

    .lambdalet-signature.json        <- the signature document (see signature.py); excluded

Digest scheme `lambdalet-tree/1`: for every entry except the root signature file, one record
[path, kind, sha256-hex of content] where path is the entry name with empty and "." components
dropped (exactly how zipcheck and the extractor read it), kind is

    "file"   a regular file           "exec"   a regular file with the owner-execute bit
    "link"   a symbolic link (content = its target)
    "dir"    a directory entry with nothing below it (an empty directory; content hash "")

Directory entries that have something below them are implied by their children and left out, so
a package re-zipped with or without directory entries, in another order, with other compression,
timestamps, comments or extra fields has the same digest; changing any byte of any file, adding,
removing or renaming a file, an executable bit or a link target changes it. The records are sorted
by path and serialised as compact ASCII JSON after the line "lambdalet-tree/1\\n"; the digest is
SHA-256 of that text.
"""
from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile

from lambdalet.codepkg.archive import read_archive
from lambdalet.models.errors import InvalidParameterValueException

SIGNATURE_ENTRY = ".lambdalet-signature.json"
DIGEST_SCHEME = "lambdalet-tree/1"
MAX_SIGNATURE_BYTES = 64 * 1024
_CHUNK = 64 * 1024


class PackageError(ValueError):
    """Not a zip, or a zip whose tree is ambiguous (duplicate paths)."""


def _path(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF


def _is_signature(info: zipfile.ZipInfo) -> bool:
    return not info.is_dir() and _path(info.filename) == SIGNATURE_ENTRY


def _open(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise PackageError(f"not a readable zip: {e}") from None


def tree_records(data: bytes) -> list[list[str]]:
    """The sorted [path, kind, sha256] records the digest covers, read through codepkg/archive.py
    (the reading upload inspection and unpacking use, so a signature covers what runs)."""
    with _open(data) as zf:
        try:
            entries = read_archive(zf)
        except InvalidParameterValueException as e:
            raise PackageError(f"ambiguous entry in package: {e.message}") from None
        records: dict[str, list[str]] = {}
        dirs: set[str] = set()
        for entry in entries:
            if _is_signature(entry.info):
                continue
            path = entry.name
            if entry.kind == "dir":
                if path:
                    dirs.add(path)
                continue
            kind = "link" if entry.kind == "link" else ("exec" if entry.perm & 0o100 else "file")
            h = hashlib.sha256()
            try:
                with zf.open(entry.info) as stream:
                    while chunk := stream.read(_CHUNK):
                        h.update(chunk)
            except Exception as e:      # BadZipFile (CRC), zlib.error, NotImplementedError, ...
                raise PackageError(f"cannot read {entry.info.filename!r}: {e}") from None
            records[path] = [path, kind, h.hexdigest()]
        parents = {"/".join(p.split("/")[:n]) for p in list(records) + list(dirs) for n in range(1, p.count("/") + 1)}
        for d in dirs - parents:
            records[d] = [d, "dir", ""]
    return [records[k] for k in sorted(records)]


def package_digest(data: bytes) -> str:
    """The hex SHA-256 a signature covers (scheme lambdalet-tree/1, module docstring)."""
    text = DIGEST_SCHEME + "\n" + json.dumps(tree_records(data), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_signature(data: bytes) -> bytes | None:
    """The raw signature document at the zip root, or None if the package is unsigned."""
    with _open(data) as zf:
        found = [i for i in zf.infolist() if _is_signature(i)]
        if not found:
            return None
        if len(found) > 1:
            raise PackageError("the package holds more than one signature file")
        info = found[0]
        if stat.S_ISLNK(_mode(info)) or info.file_size > MAX_SIGNATURE_BYTES:
            raise PackageError("the signature file is not a small regular file")
        try:
            with zf.open(info) as stream:
                raw = stream.read(MAX_SIGNATURE_BYTES + 1)
        except Exception as e:
            raise PackageError(f"cannot read the signature file: {e}") from None
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise PackageError("the signature file is too large")
        return raw


def embed_signature(data: bytes, document: bytes) -> bytes:
    """The package with `document` as its root signature file (an existing one is replaced).
    Other entries are kept byte for byte when there was no signature (the entry is appended)."""
    sig = zipfile.ZipInfo(SIGNATURE_ENTRY, date_time=(1980, 1, 1, 0, 0, 0))
    sig.external_attr = (stat.S_IFREG | 0o644) << 16
    sig.compress_type = zipfile.ZIP_DEFLATED
    with _open(data) as zf:
        had = any(_is_signature(i) for i in zf.infolist())
    buf = io.BytesIO()
    if not had:
        buf.write(data)
        buf.seek(0)
        with zipfile.ZipFile(buf, "a") as out:
            out.writestr(sig, document)
        return buf.getvalue()
    with _open(data) as zf, zipfile.ZipFile(buf, "w") as out:
        for info in zf.infolist():
            if not _is_signature(info):
                out.writestr(info, zf.read(info))
        out.writestr(sig, document)
    return buf.getvalue()
