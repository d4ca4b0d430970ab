"""Mounts of pre-isolated slots (sandbox/slots.py), made in the fork server's own mount namespace
(zygote.py: its mounter child), never in the host's.

A slot's /var/task, /opt and /tmp are slave copies of its directory <slots_dir>/<name>/{task,opt,tmp},
a shared mount in that namespace (jail.py binds them when it builds the slot). Whatever is later
mounted below that directory propagates into the slot's namespace, and nothing mounted inside ever
propagates out (a slave sends nothing). Documentation/filesystems/sharedsubtree.rst.

Read-only binds go through the new mount API (open_tree + mount_setattr + move_mount): the clone is
made read-only BEFORE it is attached, so the copies propagation makes carry the flags. The classic
bind-then-remount would not do: a remount does not propagate, the slot's copy would stay writable.
"""
from __future__ import annotations

import ctypes
import os
import re
import struct
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_SHARED = 1, 2, 4, 4096, 1 << 20
MNT_DETACH = 2
MS_REC, MS_SLAVE, CLONE_NEWNS = 1 << 14, 1 << 19, 0x20000
SYS_open_tree, SYS_move_mount, SYS_mount_setattr = 428, 429, 442     # the same number on every arch
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4


class MountError(OSError):
    pass


def _chk(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise MountError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s: str) -> bytes:
    return s.encode()


def supported() -> bool:
    """The new mount API exists here (Linux >= 5.12 for mount_setattr)."""
    fd = libc.syscall(SYS_open_tree, AT_FDCWD, b"/", OPEN_TREE_CLOEXEC)   # an O_PATH fd, no clone
    if fd < 0:
        return False
    os.close(fd)
    # mount_setattr on a bogus fd: EBADF when the call exists, ENOSYS when not
    if libc.syscall(SYS_mount_setattr, -1, b"", AT_EMPTY_PATH, None, 0) == 0:
        return True
    return ctypes.get_errno() != 38


def make_shared_dir(path: str) -> None:
    """Turn `path` into a mount of its own, in a peer group of its own (the slot's copies become its slaves)."""
    _chk(libc.mount(_b(path), _b(path), None, MS_BIND, None), f"bind {path}")
    _chk(libc.mount(None, _b(path), None, MS_SHARED, None), f"make-shared {path}")


def make_shared_tmpfs(path: str, subdirs: list[str]) -> None:
    """Like make_shared_dir, but `path` becomes a tiny tmpfs of its own holding `subdirs`: binds of those
    then show "/<sub>" as their root in an environment's /proc/self/mountinfo, not the host path (which
    names the server's instance)."""
    _chk(libc.mount(b"slot", _b(path), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=16k,mode=755"), f"mount {path}")
    for sub in subdirs:
        os.mkdir(os.path.join(path, sub), 0o755)
    _chk(libc.mount(None, _b(path), None, MS_SHARED, None), f"make-shared {path}")


def bind_readonly(src: str, dst: str) -> None:
    """Attach a read-only, nosuid, nodev clone of `src` (and its submounts) at `dst`, flags set before
    attaching so propagated copies carry them."""
    fd = _chk(libc.syscall(SYS_open_tree, AT_FDCWD, _b(src), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
              f"open_tree {src}")
    try:
        attr = ctypes.create_string_buffer(struct.pack("=QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                                                       0, 0, 0))
        _chk(libc.syscall(SYS_mount_setattr, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, 32), f"mount_setattr {src}")
        _chk(libc.syscall(SYS_move_mount, fd, b"", AT_FDCWD, _b(dst), MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {dst}")
    finally:
        os.close(fd)


def mount_tmpfs(dst: str, size_mb: int) -> None:
    """A sized /tmp, flags given at creation (one mount call: nothing to remount, so the copy matches)."""
    _chk(libc.mount(b"tmp", _b(dst), b"tmpfs", MS_NOSUID | MS_NODEV, _b(f"size={int(size_mb)}m,mode=1777")),
         f"mount tmpfs {dst}")


def private_mount_namespace() -> str | None:
    """Move this process into a mount namespace of its own whose mounts are slaves of the host's (host
    mounts still reach it; nothing it mounts reaches the host). Must run while the process has one
    thread. -> None, or why it could not be done (the caller says so and goes on in the host's)."""
    if threading.active_count() != 1:
        return f"{threading.active_count()} threads are running"
    if libc.unshare(CLONE_NEWNS) != 0:
        return os.strerror(ctypes.get_errno())
    if libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def neutral_view(src: str, where: str) -> str:
    """A read-only overlay of `src` at `<where>/view` whose entry in a mount table names no host path.
    A bind always shows its source's path within its filesystem (an environment's /var/lang showed the
    interpreter's install prefix); an overlay's root is "/" and its options name its layers as given,
    so they are given relative to `where`: "lowerdir=./lower:./empty" (an overlay without an upper
    layer needs two lower ones). -> the view's path."""
    lower, empty, view = (os.path.join(where, n) for n in ("lower", "empty", "view"))
    for d in (lower, empty, view):
        os.makedirs(d, mode=0o755, exist_ok=True)
        while os.path.ismount(d):
            unmount(d)
    _chk(libc.mount(_b(src), _b(lower), None, MS_BIND, None), f"bind {src}")
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(where)           # the layers are resolved, and shown, relative to this
        _chk(libc.mount(b"overlay", _b(view), b"overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
                        b"lowerdir=./lower:./empty"), f"overlay {view}")
    finally:
        os.fchdir(here)
        os.close(here)
    unmount(lower)                # the overlay keeps its own reference to the layer
    return view


def mount_private_tmpfs(dst: str, size_bytes: int, name: str = "unpacked") -> None:
    """A root-only (0700) tmpfs of `size_bytes` at `dst`: trees bound from it into environments show
    "/<tree>" as their root in /proc/self/mountinfo, not the host path naming this server's instance,
    and the kernel holds it to its size whatever the accounting above it believes."""
    _chk(libc.mount(_b(name), _b(dst), b"tmpfs", MS_NOSUID | MS_NODEV, _b(f"size={int(size_bytes)},mode=700")),
         f"mount tmpfs {dst}")


def unmount(dst: str) -> None:
    """Detach the mount at `dst` (lazily: a tree still bound somewhere stays until that ends)."""
    _chk(libc.umount2(_b(dst), MNT_DETACH), f"umount {dst}")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(root: str, include_root: bool = True) -> list[str]:
    """Mount points in this mount namespace at (optionally) or below `root`, deepest first."""
    root = root.rstrip("/")
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape(line.split()[4])
            if mp.startswith(root + "/") or (include_root and mp == root):
                found.add(mp)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def unmount_tree(root: str) -> list[str]:
    """Detach every mount at or below `root` (stacked ones too); returns what was unmounted.
    Raises MountError if something stays mounted (callers must then not delete files below)."""
    done: list[str] = []
    for _ in range(16):                       # stacked mounts need one pass each
        mps = mount_points(root)
        if not mps:
            return done
        progress = False
        for mp in mps:
            if libc.umount2(_b(mp), MNT_DETACH) == 0:
                done.append(mp)
                progress = True
        if not progress:
            break
    left = mount_points(root)
    if left:
        raise MountError(16, f"still mounted: {left}")
    return done


def remove_empty_tree(root: str) -> None:
    """rmdir `root` and the empty directories below it; never deletes a file (and never crosses a mount:
    callers unmount first)."""
    for dirpath, _, _ in os.walk(root, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
