"""Validation of uploaded deployment packages (.zip), treating every byte as hostile.

Checks what AWS checks (readable zip, unzipped size) plus what an extractor on our hosts needs:
no path leaves the package root (names or symlinks), no decompression bomb, no duplicate or
shadowed paths. Every entry is really decompressed, in chunks, so lying headers are caught.
Names, kinds and link targets are read by archive.py, the one reading that unpacking (unpack.py)
and the code-signing digest use too.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

from lambdalet.codepkg.archive import check_links, link_target, read_archive, show
from lambdalet.models.errors import AwsError, InvalidParameterValueException, RequestEntityTooLargeException

ZIPPED_UPLOAD_LIMIT = 52_428_800           # 50 MB zipped, direct upload
UNZIPPED_LIMIT = 262_144_000               # 250 MB unzipped (function + layers)
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
_CHUNK = 64 * 1024
_CD_SIGNATURE = b"PK\x01\x02"              # starts every central directory record


@dataclass(frozen=True)
class ZipLimits:
    max_unzipped: int = UNZIPPED_LIMIT
    max_entries: int = 20_000
    max_ratio: int = 1000                  # uncompressed:compressed, per entry above ratio_min_size
    ratio_min_size: int = 1024 * 1024
    max_archive_ratio: int = 200           # the whole archive, once over min_bomb_size unzipped (deflate
    min_bomb_size: int = 16 * 1024 * 1024  # tops out near 1032:1, so many small entries evade a per-entry 1000)
    max_zipped: int = ZIPPED_UPLOAD_LIMIT


@dataclass(frozen=True)
class PackageInfo:
    file_count: int                        # regular files and symlinks (directory entries excluded)
    unzipped_size: int                     # real decompressed bytes
    names: list[str] = field(default_factory=list)   # every entry name, in archive order


def _ratio_bomb(size: int, info: zipfile.ZipInfo, limits: ZipLimits) -> bool:
    return size > limits.ratio_min_size and size > limits.max_ratio * max(info.compress_size, 1)


def _invalid(message: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(message)


def _ratio_error(info: zipfile.ZipInfo) -> InvalidParameterValueException:
    return _invalid(f"Uploaded zip contains an entry with a suspicious compression ratio: {show(info.filename)}.")


def _too_big(limits: ZipLimits) -> InvalidParameterValueException:
    return _invalid(f"Unzipped size must be smaller than {limits.max_unzipped} bytes")


def check_zipped_size(size: int, operation: str = "CreateFunction", limit: int = ZIPPED_UPLOAD_LIMIT) -> None:
    """RequestEntityTooLargeException (413) for a zip over the direct-upload limit, worded as AWS answers
    it (recorded); a request over the whole-request cap is refused earlier, by api/app.py."""
    if size > limit:
        raise RequestEntityTooLargeException(f"Zipped size must be smaller than {limit} bytes")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, limits: ZipLimits) -> int:
    """Decompress one entry counting real bytes; abort early on bombs. -> the real size."""
    real = 0
    with zf.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            real += len(chunk)
            if real > info.file_size:          # more data than the header admits: lying header
                raise _invalid(UNZIP_FAILED)
            if real > budget:
                raise _too_big(limits)
            if _ratio_bomb(real, info, limits):
                raise _ratio_error(info)
    if real != info.file_size:
        raise _invalid(UNZIP_FAILED)
    return real


def _inspect(data: bytes, limits: ZipLimits) -> PackageInfo:
    # Cheap bound before zipfile builds one object per entry (each central record has this signature).
    if data.count(_CD_SIGNATURE) > 10 * limits.max_entries:
        raise _invalid(f"Uploaded zip contains too many entries. The maximum is {limits.max_entries}.")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise _invalid(f"Uploaded zip contains too many entries ({len(infos)}). "
                           f"The maximum is {limits.max_entries}.")
        if sum(i.file_size for i in infos) > limits.max_unzipped:
            raise _too_big(limits)
        entries = read_archive(zf)             # names, kinds, duplicates, paths below files/links
        for entry in entries:
            if _ratio_bomb(entry.info.file_size, entry.info, limits):
                raise _ratio_error(entry.info)
        total, links = 0, {}
        for entry in entries:
            total += _read_entry(zf, entry.info, limits.max_unzipped - total, limits)
            if entry.kind == "link":
                links[entry.path] = link_target(zf, entry)
        check_links(links)
        if total > limits.min_bomb_size and total > limits.max_archive_ratio * len(data):
            raise _invalid("Uploaded zip has a suspicious compression ratio: "
                           f"{total} bytes unzipped from {len(data)}.")
        files = sum(1 for e in entries if e.kind != "dir")
        return PackageInfo(file_count=files, unzipped_size=total, names=[i.filename for i in infos])


def inspect_zip(data: bytes, limits: ZipLimits = ZipLimits(), *, operation: str = "CreateFunction") -> PackageInfo:
    """Validate a deployment package. InvalidParameterValueException (AWS wording) for anything
    unsafe or unreadable; RequestEntityTooLargeException if the zip itself is over `limits.max_zipped`."""
    check_zipped_size(len(data), operation, limits.max_zipped)
    try:
        return _inspect(bytes(data), limits)
    except AwsError:
        raise
    except Exception:      # BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ...
        raise _invalid(UNZIP_FAILED) from None
