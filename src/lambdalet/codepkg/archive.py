"""The one reading of a deployment archive (.zip): entry names, kinds, modes and link targets.

Upload inspection (zipcheck.py), unpacking for environments (unpack.py: code and merged layers) and
the code-signing digest (signing/package.py) all read an archive through `read_archive`, so what was
checked is exactly what is written. Anything that cannot be represented unambiguously on a Linux
filesystem is refused, naming the entry:

- names: empty, NUL, backslash (a separator to some tools, a character to others), absolute or
  drive-lettered, `..` components; two entries whose names are equal after Unicode NFC
  normalisation (the same file to a user, two to the kernel); a file and a directory (or two files)
  at one path; anything below a file or a link.
- links: empty, NUL, backslash or absolute targets, and targets that — resolved the way the kernel
  resolves them, through the package's other links — climb above the package root.

Case-only differences (`A.py`, `a.py`) are allowed: Lambda's filesystem is case-sensitive, so they
are two files there too, and refusing them would refuse packages AWS runs.
"""
from __future__ import annotations

import io
import re
import stat
import unicodedata
import zipfile
from collections import deque
from dataclasses import dataclass
from typing import Literal

from lambdalet.models.errors import InvalidParameterValueException

MAX_LINK_TARGET = 4096                     # PATH_MAX
_MAX_LINK_HOPS = 40                        # Linux's ELOOP limit
_DRIVE = re.compile(r"[A-Za-z]:")

Kind = Literal["file", "dir", "link"]


@dataclass(frozen=True)
class Entry:
    path: tuple[str, ...]                  # components; () only for a "./" directory entry (the root)
    kind: Kind
    perm: int                              # permission bits as stored (0o777 mask)
    info: zipfile.ZipInfo

    @property
    def name(self) -> str:
        return "/".join(self.path)


def show(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "...")


def _invalid(message: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(message)


def _unsafe_name(raw: str) -> InvalidParameterValueException:
    return _invalid(f"Uploaded zip contains an entry with an unsafe path: {show(raw)}. Paths must be relative, "
                    "use '/' as the separator and must not contain '..'.")


def _escaping_link(name: str) -> InvalidParameterValueException:
    return _invalid(f"Uploaded zip contains a symbolic link that points outside the package: {show(name)}.")


def _bad_link(name: str) -> InvalidParameterValueException:
    return _invalid(f"Uploaded zip contains a symbolic link with an invalid target: {show(name)}.")


def _kind(info: zipfile.ZipInfo) -> Kind:
    if stat.S_ISLNK(info.external_attr >> 16):
        return "link"
    return "dir" if info.is_dir() else "file"


def parse_name(raw: str, kind: Kind) -> tuple[str, ...]:
    """An entry name as path components, or InvalidParameterValueException naming it."""
    if not raw or "\x00" in raw or "\\" in raw or raw.startswith("/") or _DRIVE.match(raw):
        raise _unsafe_name(raw)
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _unsafe_name(raw)
    if not parts and kind != "dir":
        raise _invalid(f"Uploaded zip contains an entry with an invalid name: {show(raw)}.")
    return parts


def read_archive(zf: zipfile.ZipFile) -> list[Entry]:
    """Every entry of an open archive, checked as the module docstring says (link targets are not
    read here: see `check_links`, which needs the decompressed targets)."""
    entries = []
    seen: dict[tuple[str, ...], Entry] = {}
    for info in zf.infolist():
        kind = _kind(info)
        path = parse_name(info.orig_filename, kind)
        entry = Entry(path, kind, (info.external_attr >> 16) & 0o777, info)
        if path:
            folded = tuple(unicodedata.normalize("NFC", p) for p in path)
            if folded in seen:
                raise _invalid(f"Uploaded zip contains duplicate entries: {show(info.orig_filename)}.")
            seen[folded] = entry
        entries.append(entry)
    for folded, entry in seen.items():
        for n in range(1, len(folded)):
            parent = seen.get(folded[:n])
            if parent is not None and parent.kind != "dir":
                raise _invalid(f"Uploaded zip contains a path below a file or symbolic link: {show(entry.name)}.")
    return entries


def check_link_target(name: str, target: str) -> None:
    """A link's own target text: non-empty, no NUL or backslash, relative, at most PATH_MAX."""
    if not target or "\x00" in target or len(target.encode("utf-8", "surrogateescape")) > MAX_LINK_TARGET:
        raise _bad_link(name)
    if "\\" in target or target.startswith("/") or _DRIVE.match(target):
        raise _escaping_link(name)


def check_links(links: dict[tuple[str, ...], str]) -> None:
    """Resolve every link the way the kernel would (through the package's other links) and refuse
    one that is absolute or climbs above the package root at any point, or loops."""
    for key, target in links.items():
        name = "/".join(key)
        check_link_target(name, target)
        stack, queue, hops = list(key[:-1]), deque(target.split("/")), 0
        while queue:
            part = queue.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise _escaping_link(name)
                stack.pop()
                continue
            stack.append(part)
            next_target = links.get(tuple(stack))
            if next_target is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise _invalid(f"Uploaded zip contains a symbolic link loop: {show(name)}.")
                stack.pop()
                check_link_target(name, next_target)
                queue.extendleft(reversed(next_target.split("/")))


def link_target(zf: zipfile.ZipFile, entry: Entry) -> str:
    """A link entry's target (its content), bounded by PATH_MAX."""
    with zf.open(entry.info) as stream:
        raw = stream.read(MAX_LINK_TARGET + 1)
    target = raw.decode("utf-8", "surrogateescape")
    check_link_target(entry.name, target)
    return target


def declared_size(data: bytes) -> int:
    """The unzipped size an archive's headers declare (upload inspection proved them true)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return sum(info.file_size for info in zf.infolist())


def footprint(data: bytes, page: int = 4096) -> int:
    """What an archive takes unpacked on tmpfs: whole pages per file, one per directory and link."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return sum(-(-info.file_size // page) * page or page for info in zf.infolist())


def file_mode(entry: Entry) -> int:
    """The mode an unpacked file gets: Lambda keeps the zip's permission bits, made readable (and,
    if the owner may execute, executable) by every environment's uid; never setuid/setgid/sticky."""
    perm = entry.perm or 0o644
    return perm | 0o444 | (0o111 if perm & 0o100 else 0)
