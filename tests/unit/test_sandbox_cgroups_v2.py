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
