"""codepkg/: hostile deployment packages."""
from __future__ import annotations

import io
import stat
import struct
import warnings
import zipfile

import pytest

from lambdalet.codepkg import (UNZIP_FAILED, ZIPPED_UPLOAD_LIMIT, PackageInfo, ZipLimits, check_zipped_size,
                               inspect_zip)
from lambdalet.codepkg import zipcheck
from lambdalet.models.errors import InvalidParameterValueException, RequestEntityTooLargeException

CD_SIG, LOCAL_SIG = b"PK\x01\x02", b"PK\x03\x04"


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, bytes) for files, (name, None) for directories, (name, "->target") for symlinks."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about the duplicates we build on purpose
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, content in entries:
                info = zipfile.ZipInfo(name)
                info.create_system = 3
                if content is None:
                    info.external_attr = (stat.S_IFDIR | 0o755) << 16
                    zf.writestr(info, b"")
                elif isinstance(content, str):
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, content.removeprefix("->").encode())
                else:
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    info.compress_type = compression
                    zf.writestr(info, content)
    return buf.getvalue()


def patch_u32(data: bytes, sig: bytes, offset: int, value: int) -> bytes:
    """Overwrite a 32-bit field of the first header with signature `sig`."""
    at = data.index(sig) + offset
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def patch_u16(data: bytes, sig: bytes, offset: int, value: int) -> bytes:
    at = data.index(sig) + offset
    return data[:at] + struct.pack("<H", value) + data[at + 2:]


def rejected(data: bytes, match: str | None = None, limits: ZipLimits = ZipLimits()) -> str:
    with pytest.raises(InvalidParameterValueException) as exc:
        inspect_zip(data, limits)
    if match:
        assert match in exc.value.message, exc.value.message
    return exc.value.message


# --- accepted -----------------------------------------------------------------------------------

def test_valid_package_with_nested_dirs_and_internal_symlinks():
    data = make_zip([
        ("handler.py", b"def handler(e, c):\n    return 1\n"),
        ("pkg/", None), ("pkg/sub/", None),
        ("pkg/sub/mod.py", b"X = 1\n" * 100),
        ("pkg/link.py", "->sub/mod.py"),
        ("lib", "->pkg"),
        ("pkg/sub/up.py", "->../../handler.py"),       # climbs, but stays inside
        ("dangling", "->not/there"),
        ("Handler.py", b"pass"),                        # case-only differences are two files on Linux too
    ])
    info = inspect_zip(data)
    assert isinstance(info, PackageInfo)
    assert info.file_count == 7
    assert info.names[0] == "handler.py" and "pkg/sub/" in info.names and len(info.names) == 9
    assert info.unzipped_size == sum(len(c) if isinstance(c, bytes) else len(c) - 2 for c in (
        b"def handler(e, c):\n    return 1\n", b"X = 1\n" * 100, b"pass", "->sub/mod.py", "->pkg",
        "->../../handler.py", "->not/there"))


def test_backslash_names_are_refused():
    # One tool's separator, another's character: inspection and extraction once read such a name
    # differently (the zip escape of issue 10), so no reading gets a choice.
    for name in ("win\\style.py", "l\\1", "a/b\\c"):
        rejected(make_zip([("fine.py", b"1"), (name, b"x")]), "unsafe path")


def test_unicode_normalisation_collisions_are_refused():
    # "é" precomposed (NFC) and as e + combining acute (NFD): one name to a user, two to the kernel.
    rejected(make_zip([("caf\u00e9.py", b"1"), ("cafe\u0301.py", b"2")]), "duplicate")
    rejected(make_zip([("d\u00e9/", None), ("de\u0301", b"2")]), "duplicate")


def test_archive_level_ratio_bomb_of_small_files():
    # Many entries, each under the per-entry floor, add up to a bomb: 40 x 768 KiB of zeros.
    data = make_zip([(f"f{i}", b"\0" * (768 << 10)) for i in range(40)])
    assert len(data) < 100_000
    rejected(data, "suspicious compression ratio")


def test_empty_zip_and_all_methods_accepted():
    assert inspect_zip(make_zip([])) == PackageInfo(0, 0, [])
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        assert inspect_zip(make_zip([("a.txt", b"hello" * 1000)], method)).unzipped_size == 5000


def test_moderately_compressible_large_file_accepted():
    data = make_zip([("big.txt", b"".join(b"line %d\n" % i for i in range(600_000)))])
    assert inspect_zip(data).file_count == 1


# --- not a zip / corrupt --------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"hello world", b"PK\x05\x06" + b"\0" * 10, b"\x1f\x8b\x08" + b"\0" * 100])
def test_not_a_zip(data):
    assert rejected(data) == UNZIP_FAILED


def test_truncated_zip():
    data = make_zip([("a.py", b"x" * 10_000), ("b.py", b"y" * 10_000)])
    for cut in (len(data) // 2, len(data) - 10, 30):
        assert rejected(data[:cut]) == UNZIP_FAILED


def test_corrupt_compressed_data():
    data = bytearray(make_zip([("a.py", bytes(range(256)) * 200)]))
    start = data.index(LOCAL_SIG) + 30 + len("a.py")
    for i in range(start, start + 40):
        data[i] ^= 0xFF
    assert rejected(bytes(data)) == UNZIP_FAILED      # zlib.error or CRC error, never a crash


def test_bad_crc():
    data = make_zip([("a.py", b"x" * 1000)], zipfile.ZIP_STORED)
    assert rejected(patch_u32(data, CD_SIG, 16, 0xDEADBEEF)) == UNZIP_FAILED


def test_unsupported_method_and_encrypted_entry():
    data = make_zip([("a.py", b"x" * 100)], zipfile.ZIP_STORED)
    weird = patch_u16(patch_u16(data, CD_SIG, 10, 99), LOCAL_SIG, 8, 99)
    assert rejected(weird) == UNZIP_FAILED            # NotImplementedError inside zipfile
    encrypted = patch_u16(patch_u16(data, CD_SIG, 8, 1), LOCAL_SIG, 6, 1)
    assert rejected(encrypted) == UNZIP_FAILED        # RuntimeError: password required


def test_local_and_central_names_disagree():
    data = make_zip([("good.py", b"x")])
    at = data.index(LOCAL_SIG) + 30
    assert rejected(data[:at] + b"../x.py" + data[at + 7:]) == UNZIP_FAILED


# --- paths ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/..", "/etc/x", "//server/x", "C:/x", "c:x",
                                  "..\\x", "a\\..\\..\\x", "\\abs", "ok/../ok.py"])
def test_unsafe_entry_names(name):
    rejected(make_zip([("fine.py", b"1"), (name, b"evil")]), "unsafe path")


def test_duplicate_names():
    rejected(make_zip([("a.py", b"1"), ("a.py", b"2")]), "duplicate")
    rejected(make_zip([("a/b.py", b"1"), ("a//./b.py", b"2")]), "duplicate")
    rejected(make_zip([("a", b"1"), ("a/", None)]), "duplicate")


def test_path_below_file_or_symlink():
    rejected(make_zip([("a", b"file"), ("a/b.py", b"x")]), "below a file")
    rejected(make_zip([("d", "->sub"), ("sub/", None), ("d/x.py", b"x")]), "below a file or symbolic link")


# --- symlinks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["../../etc/passwd", "./../../x", "/etc/passwd", "a/../../..", "C:/Windows",
                                    "..\\..\\etc", "sub/../../../x", ".."  + "/.." * 20])
def test_escaping_symlinks(target):
    rejected(make_zip([("pkg/", None), ("pkg/link", "->" + target)]), "symbolic link")


def test_symlink_escape_through_another_symlink():
    # "q" -> root is fine alone, but "q/.." is the package's parent: resolution must follow links.
    rejected(make_zip([("q", "->."), ("p", "->q/../etc")]), "outside the package")
    rejected(make_zip([("a/", None), ("a/up", "->.."), ("x", "->a/up/a/up/..")]), "outside the package")


def test_symlink_loop_and_bad_targets():
    rejected(make_zip([("a", "->b"), ("b", "->a"), ("c", "->a/x")]), "loop")
    rejected(make_zip([("a", "->")]), "invalid target")
    rejected(make_zip([("a", "->" + "x/" * 3000)]), "invalid target")


def test_symlink_on_non_unix_system_still_treated_as_link():
    data = make_zip([("l", "->../../etc/passwd")])
    at = data.index(CD_SIG) + 5
    rejected(data[:at] + b"\x00" + data[at + 1:], "symbolic link")     # create_system = MS-DOS


# --- sizes and bombs ------------------------------------------------------------------------------

def test_declared_size_over_limit():
    data = make_zip([("a.bin", b"\0" * 1000)], zipfile.ZIP_STORED)
    lying = patch_u32(data, CD_SIG, 24, 300_000_000)
    assert rejected(lying) == "Unzipped size must be smaller than 262144000 bytes"
    small = ZipLimits(max_unzipped=1500)
    assert rejected(make_zip([("a", b"1" * 1000), ("b", b"2" * 1000)]), limits=small) == \
        "Unzipped size must be smaller than 1500 bytes"


def test_bomb_with_lying_small_declared_size():
    # 64 MB of zeros compressed to ~64 KB, central and local headers claim 1 000 bytes.
    data = make_zip([("bomb.bin", b"\0" * (64 << 20))])
    data = patch_u32(patch_u32(data, CD_SIG, 24, 1000), LOCAL_SIG, 22, 1000)
    assert rejected(data) == UNZIP_FAILED


def test_bomb_with_lying_large_declared_size():
    data = make_zip([("a.bin", b"\0" * 1000)])
    data = patch_u32(patch_u32(data, CD_SIG, 24, 2000), LOCAL_SIG, 22, 2000)   # real data runs out
    assert rejected(data) == UNZIP_FAILED


def test_high_ratio_entry():
    bomb = make_zip([("zeros.bin", b"\0" * (32 << 20))], zipfile.ZIP_BZIP2)   # ratio > 100 000:1
    rejected(bomb, "compression ratio")
    rejected(make_zip([("z", b"\0" * (8 << 20))]), "compression ratio", ZipLimits(max_ratio=100))


class _FakeZip:
    """Stands in for a zipfile whose decompressor yields more than the header says."""

    def __init__(self, produce: int):
        self.produce = produce

    def open(self, info):
        return io.BytesIO(b"\0" * self.produce)


def test_streaming_aborts_when_real_bytes_exceed_declared():
    info = zipfile.ZipInfo("x")
    info.file_size, info.compress_size = 1000, 1000
    with pytest.raises(InvalidParameterValueException, match="Could not unzip"):
        zipcheck._read_entry(_FakeZip(10_000_000), info, 10**9, ZipLimits())
    info.file_size = 10_000_000
    with pytest.raises(InvalidParameterValueException, match="Unzipped size"):
        zipcheck._read_entry(_FakeZip(10_000_000), info, 500_000, ZipLimits())
    info.compress_size = 10
    with pytest.raises(InvalidParameterValueException, match="compression ratio"):
        zipcheck._read_entry(_FakeZip(10_000_000), info, 10**9, ZipLimits())


def test_too_many_entries():
    rejected(make_zip([(f"f{i}", b"") for i in range(11)]), "too many entries", ZipLimits(max_entries=10))
    many = make_zip([(f"f{i}", b"") for i in range(20_001)], zipfile.ZIP_STORED)
    rejected(many, "too many entries (20001)")


def test_zipped_upload_limit():
    check_zipped_size(ZIPPED_UPLOAD_LIMIT)
    with pytest.raises(RequestEntityTooLargeException) as exc:
        check_zipped_size(ZIPPED_UPLOAD_LIMIT + 1, "UpdateFunctionCode")
    assert exc.value.message == "Zipped size must be smaller than 52428800 bytes"      # AWS's words (recorded)
    with pytest.raises(RequestEntityTooLargeException):
        inspect_zip(b"\0" * 101, ZipLimits(max_zipped=100))
