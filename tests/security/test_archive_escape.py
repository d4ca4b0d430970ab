"""Issue 10, finding 1: the zip escape, kept as named regression tests.

The archive: a symlink named `l\\1` -> `.`, a symlink `x` -> `l/1/1/.../../../<host dir>` and a file
`x\\pwned.txt`. Inspection split names on `/` only, extraction turned `\\` into `/` first and then
followed links as root, so `pwned.txt` landed in any host directory (another tenant's unpacked code,
for one). Now there is one reading of an archive (codepkg/archive.py) and the writer
(codepkg/unpack.py) is an unprivileged child that never writes through a link.
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from lambdalet.codepkg import archive, inspect_zip
from lambdalet.codepkg.unpack import UnpackError, unpack, write_archive
from lambdalet.models.errors import InvalidParameterValueException

LINK = stat.S_IFLNK | 0o777


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, content)
    return buf.getvalue()


def escape_zip(host_dir: Path, depth: int = 12) -> bytes:
    """The attacker's archive of issue 10, aimed at `host_dir`."""
    climb = "l/" + "1/" * depth + "../" * (depth + 8)
    return _zip([
        ("app.py", b"def handler(e, c):\n    return 1\n", stat.S_IFREG | 0o644),
        ("l\\1", b".", LINK),
        ("x", (climb + str(host_dir).lstrip("/")).encode(), LINK),
        ("x\\pwned.txt", b"owned", stat.S_IFREG | 0o644),
    ])


def test_the_escape_archive_is_refused_by_inspection(tmp_path):
    with pytest.raises(InvalidParameterValueException, match=r"unsafe path: 'l\\\\1'"):
        inspect_zip(escape_zip(tmp_path / "victim"))


def test_the_escape_archive_is_refused_by_the_unpacker_too(tmp_path):
    """A package stored before this fix (or by any path that skipped inspection) meets the same reading."""
    victim = tmp_path / "victim"
    victim.mkdir()
    with pytest.raises(UnpackError, match="unsafe path"):
        unpack([escape_zip(victim)], tmp_path / "dest")
    assert list(victim.iterdir()) == []


def test_the_writer_never_follows_a_link_even_if_a_reading_went_wrong(tmp_path):
    """Defence in depth: feed the writer what the old extractor believed (backslashes as separators)
    and check that nothing lands outside the destination."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.py").write_text("mine")
    data = escape_zip(victim)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = []
        for info in zf.infolist():      # the old reading: "\" -> "/"
            path = tuple(p for p in info.filename.replace("\\", "/").split("/") if p)
            kind = "link" if stat.S_ISLNK(info.external_attr >> 16) else "file"
            entries.append(archive.Entry(path, kind, 0o644, info))
        dest = tmp_path / "dest"
        dest.mkdir()
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            write_archive(zf, entries, fd)
        except (InvalidParameterValueException, OSError):
            pass                        # refusing is fine too; writing outside is not
        finally:
            os.close(fd)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.py"]
    assert (victim / "keep.py").read_text() == "mine"
    found = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("pwned.txt")]
    assert all(f.startswith("dest/") for f in found), found


def test_unpacking_does_not_chmod_through_links(tmp_path):
    """The old extractor's final walk chmod'ed directories to 0755 through links."""
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    os.chmod(secret, 0o700)
    data = _zip([("app.py", b"1", stat.S_IFREG | 0o644), ("d/", b"", stat.S_IFDIR | 0o700)])
    unpack([data], tmp_path / "dest")
    assert secret.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "dest" / "d").stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_the_unpacking_child_holds_no_privilege(tmp_path):
    """Written as the unpack uid (no write access anywhere else), then given back to the server's user."""
    data = _zip([("app.py", b"1", stat.S_IFREG | 0o755), ("link", b"app.py", LINK), ("sub/m.py", b"2", 0o644)])
    dest = tmp_path / "dest"
    unpack([data], dest)
    for p in [dest, *dest.rglob("*")]:
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (0, 0), p
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert (dest / "app.py").stat().st_mode & 0o777 == 0o755
    assert os.readlink(dest / "link") == "app.py"
    # The child really ran as the unpack uid: a root-only directory is not writable to it, so a
    # package writing there (were it ever to reach a host path) would fail rather than succeed.
    import subprocess
    import sys
    src = str(Path(__file__).resolve().parents[2] / "src")
    probe = subprocess.run([sys.executable, "-I", "-S", "-c",
                            f"import os,sys; sys.path.insert(0, {src!r}); import ctypes;"
                            " from lambdalet.codepkg.unpack import _drop_privileges as d, UNPACK_UID as u;"
                            " d(u); print(os.getuid(), len(os.getgroups()), os.access('/etc', os.W_OK))"],
                           capture_output=True, text=True, env={})
    assert probe.stdout.split() == ["199999", "0", "False"], probe.stderr


def test_the_escape_is_refused_through_the_api(server):
    lam = server.client()
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.create_function(FunctionName="escape-regression", Runtime="python3.11", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/lambda-role",
                            Code={"ZipFile": escape_zip(Path("/etc"))})
    assert "unsafe path" in exc.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="escape-regression")
