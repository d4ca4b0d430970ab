"""A differential test of archive handling (issue 10): hypothesis builds hostile archives (link
chains, backslashes, `..`, duplicates, Unicode normalisation twins, file/directory conflicts) and
checks the invariant that matters, not a list of cases:

- every archive that upload inspection accepts unpacks to exactly the tree inspection described
  (each entry, its parent directories, its kind, content and link target), all inside the
  destination;
- whatever inspection says, unpacking never changes anything outside the destination;
- for layers, a sequence of accepted archives unpacks to their merge in order (a later entry
  replaces whatever is at its path, a path component that is not a directory gives way to one).
"""
from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdalet.codepkg import archive, inspect_zip
from lambdalet.codepkg.unpack import UnpackError, unpack
from lambdalet.models.errors import AwsError

SAFE = ["a", "b", "A", "caf\u00e9", "1", "x y"]
HOSTILE = ["cafe\u0301", "..", ".", "", "l\\1", "c:"]
COMPONENTS = SAFE * 6 + HOSTILE                      # mostly well-formed, so many archives are accepted
TARGET_PARTS = ["..", "..", ".", "a", "a", "b", "1", "", "world", "victim"]

_name = st.builds(lambda parts, seps, lead: lead + "".join(p + s for p, s in zip(parts, seps))[:-1] or "a",
                  st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4),
                  st.lists(st.sampled_from(["/"] * 12 + ["\\"]), min_size=4, max_size=4),
                  st.sampled_from([""] * 8 + ["/", "./"]))
_target = st.one_of(st.lists(st.sampled_from(TARGET_PARTS), min_size=1, max_size=6).map("/".join),
                    st.lists(st.sampled_from(TARGET_PARTS), min_size=1, max_size=6).map("/".join),
                    st.just("/etc"), st.just("a\\..\\.."))
_entry = st.one_of(
    st.tuples(_name, st.just("file"), st.binary(max_size=16)),
    st.tuples(_name, st.just("dir"), st.just(b"")),
    st.tuples(_name, st.just("link"), _target.map(str.encode)),
)
_archive = st.lists(_entry, min_size=1, max_size=8)


def build(entries) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")          # duplicate names are built on purpose
        for name, kind, content in entries:
            if kind == "dir" and not name.endswith("/"):
                name += "/"
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = {"file": stat.S_IFREG | 0o644, "dir": stat.S_IFDIR | 0o755,
                                  "link": stat.S_IFLNK | 0o777}[kind] << 16
            zf.writestr(info, content)
    return buf.getvalue()


def expected_tree(archives: list[bytes]) -> dict[str, tuple[str, bytes]]:
    """What inspection's reading says the archives unpack to, merged in order."""
    tree: dict[tuple[str, ...], tuple[str, bytes]] = {}

    def clear(path):
        for key in [k for k in tree if k[:len(path)] == path]:
            del tree[key]

    for data in archives:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for entry in archive.read_archive(zf):
                if not entry.path:
                    continue
                for n in range(1, len(entry.path)):
                    parent = entry.path[:n]
                    if tree.get(parent, ("dir", b""))[0] != "dir":
                        clear(parent)
                    tree[parent] = ("dir", b"")
                if entry.kind == "dir":
                    if tree.get(entry.path, ("dir", b""))[0] != "dir":
                        clear(entry.path)
                    tree[entry.path] = ("dir", b"")
                else:
                    clear(entry.path)
                    tree[entry.path] = (entry.kind, zf.read(entry.info))
    return {"/".join(k): v for k, v in tree.items()}


def on_disk(root: Path) -> dict[str, tuple[str, bytes]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):     # does not follow links
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st_ = os.lstat(path)
            if stat.S_ISLNK(st_.st_mode):
                found[rel] = ("link", os.readlink(path).encode("utf-8", "surrogateescape"))
            elif stat.S_ISDIR(st_.st_mode):
                found[rel] = ("dir", b"")
            else:
                found[rel] = ("file", path.read_bytes())
    return found


def snapshot(world: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for path in sorted(world.rglob("*")):
        st_ = os.lstat(path)
        out[str(path)] = (st_.st_mode, st_.st_uid, path.read_bytes() if stat.S_ISREG(st_.st_mode) else b"")
    return out


def make_world(tmp: Path) -> Path:
    world = tmp / "world"
    (world / "victim").mkdir(parents=True)
    (world / "victim" / "code.py").write_text("victim's code")
    os.chmod(world / "victim", 0o700)
    return world


def accepted(data: bytes) -> bool:
    try:
        inspect_zip(data)
        return True
    except AwsError:
        return False


def unpack_into(archives: list[bytes], dest: Path) -> bool:
    try:
        unpack(archives, dest)
        return True
    except UnpackError:
        return False


_settings = settings(max_examples=120, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_settings
@given(_archive)
def test_one_package_unpacks_to_exactly_what_inspection_accepted(tmp_path_factory, entries):
    tmp = tmp_path_factory.mktemp("pkg")
    world = make_world(tmp)
    before = snapshot(world)
    data = build(entries)
    ok = accepted(data)
    dest = tmp / "dest"
    unpacked = unpack_into([data], dest)
    assert snapshot(world) == before
    assert sorted(p.name for p in tmp.iterdir()) == (["dest", "world"])
    if ok:
        assert unpacked, "inspection accepted what unpacking refused"
        assert on_disk(dest) == expected_tree([data])


@_settings
@given(st.lists(_archive, min_size=2, max_size=3))
def test_layers_merge_in_order_and_stay_inside(tmp_path_factory, layers):
    tmp = tmp_path_factory.mktemp("layers")
    world = make_world(tmp)
    before = snapshot(world)
    archives = [build(entries) for entries in layers]
    archives = [a for a in archives if accepted(a)] or [build([("a", "file", b"x")])]
    dest = tmp / "dest"
    assert unpack_into(archives, dest)
    assert snapshot(world) == before
    assert on_disk(dest) == expected_tree(archives)
