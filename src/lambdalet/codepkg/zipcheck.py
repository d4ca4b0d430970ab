"""Validation of uploaded deployment packages (.zip), treating every byte as hostile.

Checks what AWS checks (readable zip, unzipped size) plus what an extractor on our hosts needs:
no path leaves the package root (names or symlinks), no decompression bomb, no duplicate or
shadowed paths. Every entry is really decompressed, in chunks, so lying headers are caught.
"""
from __future__ import annotations

import io
import re
import stat
import zipfile
from collections import deque
from dataclasses import dataclass, field

from lambdalet.models.errors import AwsError, InvalidParameterValueException, RequestTooLargeException

ZIPPED_UPLOAD_LIMIT = 52_428_800           # 50 MB zipped, direct upload
UNZIPPED_LIMIT = 262_144_000               # 250 MB unzipped (function + layers)
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
_CHUNK = 64 * 1024
_MAX_LINK_TARGET = 4096                    # PATH_MAX
_MAX_LINK_HOPS = 40                        # Linux's ELOOP limit
_CD_SIGNATURE = b"PK\x01\x02"              # starts every central directory record
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits:
    max_unzipped: int = UNZIPPED_LIMIT
    max_entries: int = 20_000
    max_ratio: int = 1000                  # uncompressed:compressed, only checked above ratio_min_size
    ratio_min_size: int = 4 * 1024 * 1024
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


def _show(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "...")


def _ratio_error(info: zipfile.ZipInfo) -> InvalidParameterValueException:
    return _invalid(f"Uploaded zip contains an entry with a suspicious compression ratio: {_show(info.filename)}.")


def _too_big(limits: ZipLimits) -> InvalidParameterValueException:
    return _invalid(f"Unzipped size must be smaller than {limits.max_unzipped} bytes")


def check_zipped_size(size: int, operation: str = "CreateFunction", limit: int = ZIPPED_UPLOAD_LIMIT) -> None:
    """RequestTooLargeException for a zip over the direct-upload limit, worded like AWS (which
    quotes the base64-encoded request size: 50 MB -> 70167211 bytes)."""
    if size > limit:
        request_limit = -(-limit * 4 // 3) + 262_144
        raise RequestTooLargeException(
            f"Request must be smaller than {request_limit} bytes for the {operation} operation")


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or bool(_DRIVE.match(path))


def _has_dotdot(path: str) -> bool:
    # Backslash counts as a separator here too, so Windows-style traversal is refused as well.
    return ".." in re.split(r"[/\\]", path)


def _entry_key(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path as components after checking it is safe; raises for unsafe names."""
    raw = info.orig_filename
    if not raw or "\x00" in raw or _is_absolute(raw) or _has_dotdot(raw):
        raise _invalid(f"Uploaded zip contains an entry with an unsafe path: {_show(raw)}. "
                       "Paths must be relative and must not contain '..'.")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if not parts and not info.is_dir():
        raise _invalid(f"Uploaded zip contains an entry with an invalid name: {_show(raw)}.")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, limits: ZipLimits,
                keep: int) -> tuple[int, bytes]:
    """Decompress one entry counting real bytes; abort early on bombs. -> (real size, first `keep` bytes)."""
    real, kept = 0, bytearray()
    with zf.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            real += len(chunk)
            if real > info.file_size:          # more data than the header admits: lying header
                raise _invalid(UNZIP_FAILED)
            if real > budget:
                raise _too_big(limits)
            if _ratio_bomb(real, info, limits):
                raise _ratio_error(info)
            if len(kept) < keep:
                kept += chunk[:keep - len(kept)]
    if real != info.file_size:
        raise _invalid(UNZIP_FAILED)
    return real, bytes(kept)


def _check_link(key: tuple[str, ...], target: str, links: dict[tuple[str, ...], str]) -> None:
    """Resolve `target` the way the kernel would (following the package's other links) and refuse
    it if it is absolute or climbs above the package root at any point."""
    where = _show("/".join(key))
    if not target or "\x00" in target:
        raise _invalid(f"Uploaded zip contains a symbolic link with an invalid target: {where}.")
    if _is_absolute(target) or ("\\" in target and _has_dotdot(target)):
        raise _invalid(f"Uploaded zip contains a symbolic link that points outside the package: {where}.")
    stack, queue, hops = list(key[:-1]), deque(target.split("/")), 0
    while queue:
        part = queue.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise _invalid(f"Uploaded zip contains a symbolic link that points outside the package: {where}.")
            stack.pop()
            continue
        stack.append(part)
        next_target = links.get(tuple(stack))
        if next_target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise _invalid(f"Uploaded zip contains a symbolic link loop: {where}.")
            stack.pop()
            if _is_absolute(next_target):
                raise _invalid(f"Uploaded zip contains a symbolic link that points outside the package: {where}.")
            queue.extendleft(reversed(next_target.split("/")))


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
        entries = [(_entry_key(info), info) for info in infos]
        keys: dict[tuple[str, ...], zipfile.ZipInfo] = {}
        for key, info in entries:
            if key and key in keys:
                raise _invalid(f"Uploaded zip contains duplicate entries: {_show(info.filename)}.")
            keys[key] = info
            if _ratio_bomb(info.file_size, info, limits):
                raise _ratio_error(info)
        # Nothing may sit below a file or a symlink: writing "link/x" would follow the link.
        for key in keys:
            for n in range(1, len(key)):
                parent = keys.get(key[:n])
                if parent is not None and not (parent.is_dir() and not _is_symlink(parent)):
                    raise _invalid("Uploaded zip contains a path below a file or symbolic link: "
                                   f"{_show('/'.join(key))}.")
        total, links = 0, {}
        for key, info in entries:
            link = _is_symlink(info)
            keep = _MAX_LINK_TARGET + 1 if link else 0      # a link's content is its target
            size, head = _read_entry(zf, info, limits.max_unzipped - total, limits, keep)
            total += size
            if link:
                if size > _MAX_LINK_TARGET:
                    raise _invalid("Uploaded zip contains a symbolic link with an invalid target: "
                                   f"{_show(info.filename)}.")
                links[key] = head.decode("utf-8", "surrogateescape")
        for key, target in links.items():
            _check_link(key, target, links)
        files = sum(1 for i in infos if _is_symlink(i) or not i.is_dir())
        return PackageInfo(file_count=files, unzipped_size=total, names=[i.filename for i in infos])


def inspect_zip(data: bytes, limits: ZipLimits = ZipLimits(), *, operation: str = "CreateFunction") -> PackageInfo:
    """Validate a deployment package. InvalidParameterValueException (AWS wording) for anything
    unsafe or unreadable; RequestTooLargeException if the zip itself is over `limits.max_zipped`."""
    check_zipped_size(len(data), operation, limits.max_zipped)
    try:
        return _inspect(bytes(data), limits)
    except AwsError:
        raise
    except Exception:      # BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ...
        raise _invalid(UNZIP_FAILED) from None
