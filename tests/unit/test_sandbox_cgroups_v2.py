"""sandbox/cgroups.py on cgroup v2, against a fake cgroupfs in a temp dir.

This host's v2 hierarchy has no controllers (v1 owns them), so the v2 path cannot run for real
here: these tests pin down what it writes — limits, delegation of controllers, the server moving
itself out of its own group when v2's "no internal processes" rule refuses delegation — and the
files it reads (freezer state, peak memory, OOM kills).
"""
from __future__ import annotations

import errno
import os

import pytest

from lambdalet.sandbox import cgroups
from lambdalet.sandbox.cgroups import Cgroup, Limits


@pytest.fixture
def fakefs(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    svc = root / "system.slice" / "lambdalet.service"
    svc.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (svc / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroups, "ROOT", str(root))
    monkeypatch.setattr(cgroups, "_own_path", lambda controller: "/system.slice/lambdalet.service")
    monkeypatch.setattr(cgroups, "_v2_parents", {})
    real_makedirs = os.makedirs

    def makedirs(path, *a, **kw):                  # the kernel gives every new group its control files
        real_makedirs(path, *a, **kw)
        for f in ("cgroup.subtree_control", "cgroup.procs"):
            p = os.path.join(path, f)
            if not os.path.exists(p):
                open(p, "w").close()

    monkeypatch.setattr(cgroups.os, "makedirs", makedirs)
    return root, svc


def test_detects_v2_when_the_unified_tree_has_memory(fakefs):
    assert cgroups.detect_version() == 2


def test_create_delegates_controllers_and_applies_limits(fakefs):
    root, svc = fakefs
    cg = Cgroup.create("env1", Limits(memory_mb=512, pids_max=64), parent="lambdalet-x", version=2)
    d = svc / "lambdalet-x" / "env1"
    assert cg.dirs == {"unified": str(d)}
    # controllers handed down at both levels: the server's group and the per-server parent
    assert (svc / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (svc / "lambdalet-x" / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (d / "memory.max").read_text() == str(512 * 1024 * 1024)
    assert (d / "cpu.max").read_text() == f"{Limits(512).cpu_quota_us} 100000"   # 512/1769 of a vCPU
    assert (d / "pids.max").read_text() == "64"
    assert cg.procs_files() == [str(d / "cgroup.procs")]
    assert cgroups.parent_dirs("lambdalet-x", version=2) == {"unified": str(svc / "lambdalet-x")}


def test_no_swap_when_the_kernel_offers_swap_accounting(fakefs, monkeypatch):
    root, svc = fakefs
    d = svc / "p" / "env"
    d.mkdir(parents=True)
    (d / "memory.swap.max").write_text("max")
    Cgroup(2, {"unified": str(d)})._apply(Limits(128))
    assert (d / "memory.swap.max").read_text() == "0"


def test_only_missing_controllers_are_enabled(fakefs):
    root, svc = fakefs
    (svc / "cgroup.subtree_control").write_text("cpu memory\n")
    cgroups.v2_parent("lambdalet-y")
    assert (svc / "cgroup.subtree_control").read_text() == "+pids"


def test_server_moves_itself_out_when_its_group_has_members(fakefs, monkeypatch):
    """v2 refuses subtree_control (EBUSY) while the group has processes: the server leaves for a leaf."""
    root, svc = fakefs
    real_write = cgroups._write
    state = {"moved": False}

    def write(path, value):
        if path == str(svc / "cgroup.subtree_control") and not state["moved"]:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if path == str(svc / "lambdalet-z-server" / "cgroup.procs"):
            state["moved"] = True
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", write)
    base = cgroups.v2_parent("lambdalet-z")
    assert base == str(svc / "lambdalet-z")
    assert (svc / "lambdalet-z-server" / "cgroup.procs").read_text() == str(os.getpid())
    assert (svc / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    # computed once: later calls don't re-read /proc/self/cgroup (which now names the leaf)
    monkeypatch.setattr(cgroups, "_own_path", lambda controller: "/system.slice/lambdalet.service/lambdalet-z-server")
    assert cgroups.v2_parent("lambdalet-z") == base


def test_shared_group_fails_with_advice(fakefs, monkeypatch):
    root, svc = fakefs
    real_write = cgroups._write

    def write(path, value):
        if path == str(svc / "cgroup.subtree_control"):
            raise OSError(errno.EBUSY, "Device or resource busy")      # other processes stay behind
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", write)
    with pytest.raises(RuntimeError, match="Delegate=yes"):
        cgroups.v2_parent("lambdalet-w")


def test_freeze_thaw_peak_memory_and_oom_kills_read_v2_files(fakefs):
    root, svc = fakefs
    d = svc / "p" / "env"
    d.mkdir(parents=True)
    (d / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    (d / "memory.peak").write_text(str(3 * 1024 * 1024 + 1))
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n")
    (d / "cpu.max").write_text("")
    cg = Cgroup(2, {"unified": str(d)})
    cg.freeze(timeout_s=0.1)
    assert (d / "cgroup.freeze").read_text() == "1"
    cg.thaw()
    assert (d / "cgroup.freeze").read_text() == "0"
    assert cg.max_memory_mb() == 4                     # rounded up, as REPORT's Max Memory Used
    assert cg.oom_kills() == 1
    cg.set_cpu_quota(100_000)
    assert (d / "cpu.max").read_text() == "100000 100000"


# ---- per-account and platform pids (issue 21.4)

def test_account_groups_nest_environments_and_carry_the_accounts_pids_limit(fakefs):
    root, svc = fakefs
    cgroups.set_parent_pids("lambdalet-x", 16384, version=2)
    acct = cgroups.account_group("lambdalet-x", "111111111111", 4096, version=2)
    base = svc / "lambdalet-x"
    assert acct == "acct-111111111111"
    assert (base / "pids.max").read_text() == "16384"
    assert (base / acct / "pids.max").read_text() == "4096"
    assert (base / acct / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"   # delegated again
    cg = Cgroup.create("env1", Limits(memory_mb=256), parent="lambdalet-x", version=2, account=acct)
    assert cg.dirs == {"unified": str(base / acct / "env1")}
    assert (base / acct / "env1" / "pids.max").read_text() == "1024"
    # A stale clean-up sees the environment inside its account's group, by its own name.
    assert cgroups.stale_children("lambdalet-x") == {"env1": {"unified": str(base / acct / "env1")}}


def test_pids_room_is_the_smaller_of_the_account_and_the_platform(fakefs):
    root, svc = fakefs
    cgroups.set_parent_pids("lambdalet-x", 1000, version=2)
    acct = cgroups.account_group("lambdalet-x", "111111111111", 300, version=2)
    base = svc / "lambdalet-x"
    (base / "pids.current").write_text("900\n")
    (base / acct / "pids.current").write_text("250\n")
    assert cgroups.pids_room("lambdalet-x", acct, version=2) == 50
    (base / "pids.current").write_text("990\n")
    assert cgroups.pids_room("lambdalet-x", acct, version=2) == 10
    assert cgroups.pids_room("lambdalet-x", None, version=2) == 10
    (base / "pids.max").write_text("max\n")
    assert cgroups.pids_room("lambdalet-x", None, version=2) == 1 << 30


def test_a_claimed_slot_moves_into_its_accounts_group(fakefs, monkeypatch):
    """A slot is built for no account; claiming it moves its tasks (the kernel moves one per write)."""
    root, svc = fakefs
    base = svc / "lambdalet-x"
    slot = Cgroup.create("slot-1", Limits(memory_mb=128), parent="lambdalet-x", version=2)
    (base / "slot-1" / "cgroup.procs").write_text("41\n42\n")
    acct = cgroups.account_group("lambdalet-x", "222222222222", 4096, version=2)
    real_write = cgroups._write

    def write(path, value):
        real_write(path, value)
        if path.endswith("/cgroup.procs"):          # what the kernel does: the task leaves its old group
            old = base / "slot-1" / "cgroup.procs"
            if old.exists():
                old.write_text("".join(f"{p}\n" for p in old.read_text().split() if p != value))

    monkeypatch.setattr(cgroups, "_write", write)
    monkeypatch.setattr(cgroups.os, "rmdir", lambda d: None)     # a fake dir is never empty of files
    slot.move_to_account("lambdalet-x", acct, Limits(memory_mb=512))
    new = base / acct / "slot-1"
    assert slot.dirs == {"unified": str(new)}
    assert (base / "slot-1" / "cgroup.procs").read_text() == ""
    assert (new / "memory.max").read_text() == str(512 << 20) and (new / "pids.max").read_text() == "1024"
