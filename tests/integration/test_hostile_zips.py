"""Hostile archives are refused with InvalidParameterValueException before anything is stored:
no function appears, no blob is written, an existing function keeps its code."""
from __future__ import annotations

import os
import stat
import zipfile

import pytest

from .e2e_support import (
    HANDLER_CODE,
    ROLE,
    RawEntry,
    build_raw_zip,
    code_sha256,
    create_function,
    default_zip,
    deflate_zeros,
    delete_quietly,
    describe,
    expect_error,
    files_under,
    list_all_function_names,
    make_zip,
    stored_entry,
    unique,
)

SYMLINK_ATTR = (stat.S_IFLNK | 0o777) << 16
ZIP_API_LIMIT = 52_428_800          # 50 MB: AWS's limit for a zip uploaded through the API
AWS_REQUEST_LIMIT = 70_167_211      # AWS's request size limit for CreateFunction/UpdateFunctionCode


def _app():
    return stored_entry("app.py", HANDLER_CODE.encode())


def not_a_zip():
    return b"this is certainly not a zip archive\n" * 10


def truncated_zip():
    z = make_zip({"app.py": HANDLER_CODE * 50})
    return z[: len(z) // 2]


def zip_slip():
    return build_raw_zip([_app(), stored_entry("../evil.py", b"print('escaped')\n")])


def zip_slip_nested():
    return build_raw_zip([_app(), stored_entry("lib/../../../tmp/evil.py", b"x")])


def absolute_path():
    return build_raw_zip([_app(), stored_entry("/etc/cron.d/evil", b"* * * * * root id\n")])


def symlink_escape():
    return build_raw_zip([_app(), stored_entry("passwd", b"../../etc/passwd", SYMLINK_ATTR)])


def symlink_absolute():
    return build_raw_zip([_app(), stored_entry("shadow", b"/etc/shadow", SYMLINK_ATTR)])


def lying_size_bomb():
    """Headers say 1 KB; the deflate stream inflates to 64 MB."""
    data, crc = deflate_zeros(64 * 1024 * 1024)
    return build_raw_zip([_app(), RawEntry(b"data.bin", data, 8, crc, 1024)])


def honest_oversize_bomb():
    """Honestly declared 300 MB of zeros in ~300 KB: over AWS's 262,144,000-byte unzipped limit."""
    data, crc = deflate_zeros(300 * 1024 * 1024)
    return build_raw_zip([_app(), RawEntry(b"zeros.bin", data, 8, crc, 300 * 1024 * 1024)])


def many_small_oversize():
    """Many entries that each look harmless but sum past the unzipped limit."""
    size = 10 * 1024 * 1024
    data, crc = deflate_zeros(size)
    return build_raw_zip([_app()] + [RawEntry(f"part{i:02d}.bin".encode(), data, 8, crc, size) for i in range(30)])


def thirty_thousand_entries():
    return build_raw_zip([_app()] + [stored_entry(f"f/{i}.txt", b"") for i in range(30_000)])


HOSTILE = {
    "not-a-zip": not_a_zip,
    "truncated": truncated_zip,
    "zip-slip": zip_slip,
    "zip-slip-nested": zip_slip_nested,
    "absolute-path": absolute_path,
    "symlink-escape": symlink_escape,
    "symlink-absolute": symlink_absolute,
    "lying-size-bomb": lying_size_bomb,
    "oversize-bomb": honest_oversize_bomb,
    "sum-oversize": many_small_oversize,
    "30000-entries": thirty_thousand_entries,
}


@pytest.fixture(scope="module")
def hostile_cache():
    return {}


def _hostile(cache, kind):
    if kind not in cache:
        cache[kind] = HOSTILE[kind]()
    return cache[kind]


def test_builders_make_what_they_claim():
    """Sanity of the test's own archives (so a refusal really is about the hostile property)."""
    import io
    with zipfile.ZipFile(io.BytesIO(zip_slip())) as z:
        assert "../evil.py" in z.namelist()
    with zipfile.ZipFile(io.BytesIO(absolute_path())) as z:
        assert "/etc/cron.d/evil" in z.namelist()
    with zipfile.ZipFile(io.BytesIO(symlink_escape())) as z:
        info = z.getinfo("passwd")
        assert stat.S_ISLNK(info.external_attr >> 16) and z.read("passwd") == b"../../etc/passwd"
    with zipfile.ZipFile(io.BytesIO(lying_size_bomb())) as z:
        assert z.getinfo("data.bin").file_size == 1024


@pytest.fixture
def lam(server):
    return server.client()


def _snapshot(server, lam):
    return set(list_all_function_names(lam)), files_under(server.data_dir / "blobs")


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in (
    "oversize-bomb", "sum-oversize", "lying-size-bomb", "30000-entries") else k for k in HOSTILE])
def test_hostile_zip_refused_on_create(server, lam, hostile_cache, kind):
    payload = _hostile(hostile_cache, kind)
    assert len(payload) < ZIP_API_LIMIT
    names_before, blobs_before = _snapshot(server, lam)
    name = unique(f"hostile-{kind}")
    try:
        with expect_error("InvalidParameterValueException", 400):
            lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role=ROLE,
                                Code={"ZipFile": payload})
    finally:
        names_after, blobs_after = _snapshot(server, lam)
        delete_quietly(lam, name)
    assert names_after == names_before, f"new functions: {names_after - names_before}"
    assert blobs_after == blobs_before, f"new blob files: {blobs_after - blobs_before}"


@pytest.mark.parametrize("kind", ["zip-slip", "symlink-escape", "lying-size-bomb", "not-a-zip"])
def test_hostile_zip_refused_on_update(server, lam, hostile_cache, kind):
    name = unique("hostile-upd")
    good = default_zip("good")
    create_function(lam, name, zip_bytes=good)
    try:
        before = lam.get_function_configuration(FunctionName=name)
        blobs_before = files_under(server.data_dir / "blobs")
        with expect_error("InvalidParameterValueException", 400):
            lam.update_function_code(FunctionName=name, ZipFile=_hostile(hostile_cache, kind), Publish=True)
        after = lam.get_function_configuration(FunctionName=name)
        assert after["CodeSha256"] == code_sha256(good)
        assert after["RevisionId"] == before["RevisionId"]
        assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST"]
        assert files_under(server.data_dir / "blobs") == blobs_before
    finally:
        delete_quietly(lam, name)


def _big_zip(zip_size: int) -> bytes:
    payload = os.urandom(zip_size - 200)  # incompressible: the zip is as big as its content
    z = build_raw_zip([_app(), stored_entry("blob.bin", payload)])
    assert abs(len(z) - zip_size) < 400
    return z


def _expect_413(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - report exactly what the client saw
        from botocore.exceptions import ClientError
        if not isinstance(e, ClientError):
            pytest.fail(f"expected an HTTP 413 answer, the client got {type(e).__name__}: {e}")
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        code = e.response["Error"].get("Code")
        assert status == 413, describe(e)
        assert code in ("RequestEntityTooLargeException", "RequestTooLargeException"), describe(e)
        return
    pytest.fail("an oversized upload was accepted")


@pytest.mark.slow
def test_upload_over_request_limit_is_413(server, lam):
    z = _big_zip(53 * 1024 * 1024)            # base64 in JSON: > 70,167,211 bytes on the wire
    assert len(z) * 4 // 3 > AWS_REQUEST_LIMIT
    names_before, blobs_before = _snapshot(server, lam)
    name = unique("huge")
    _expect_413(lambda: lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                            Role=ROLE, Code={"ZipFile": z}))
    assert _snapshot(server, lam) == (names_before, blobs_before)


@pytest.mark.slow
def test_zip_over_50mb_within_request_limit_is_413(server, lam):
    z = _big_zip(ZIP_API_LIMIT + 64 * 1024)   # > 50 MB zipped, but the request still fits in 70,167,211
    assert len(z) * 4 // 3 + 1024 < AWS_REQUEST_LIMIT
    names_before, blobs_before = _snapshot(server, lam)
    name = unique("big")
    _expect_413(lambda: lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                            Role=ROLE, Code={"ZipFile": z}))
    assert _snapshot(server, lam) == (names_before, blobs_before)


def test_server_survives_hostile_uploads(lam):
    """After all of the above the server still serves."""
    assert "Functions" in lam.list_functions()
