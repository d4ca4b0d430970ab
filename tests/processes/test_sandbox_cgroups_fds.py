"""sandbox/cgroups.py on this host's real hierarchy (root only): a `Cgroup` owns the control-file
descriptors it keeps open for freeze/thaw, closes them exactly once in destroy(), and nothing opens
one again afterwards (issue 19.1: kill_all reopened freezer.state after destroy closed it, one
leaked descriptor per discarded environment)."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from lambdalet.sandbox.cgroups import Cgroup, Limits, remove_parent
from lambdalet.sandbox.testing import namespace_unavailable_reason

pytestmark = pytest.mark.skipif(namespace_unavailable_reason() is not None, reason=str(namespace_unavailable_reason()))


def own_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_destroy_closes_every_descriptor_and_nothing_reopens_one():
    before = own_fds()
    try:
        churn()
    finally:
        remove_parent("lambdalet-unit-fds")
    assert own_fds() - before == set()


def churn() -> None:
    for _ in range(3):
        cg = Cgroup.create(f"fdtest-{uuid.uuid4().hex[:8]}", Limits(128), parent="lambdalet-unit-fds")
        child = subprocess.Popen(["sleep", "30"])
        try:
            cg.attach(child.pid)
            cg.freeze()
            cg.max_memory_mb()
            cg.thaw()
            cg.freeze(wait=False)            # destroyed while frozen, as an idle environment is
            cg.destroy()
        finally:
            child.kill()
            child.wait()
        assert not cg.exists()
        with pytest.raises(OSError):
            cg.thaw()                        # refused, not reopened
        cg.destroy()                         # idempotent
