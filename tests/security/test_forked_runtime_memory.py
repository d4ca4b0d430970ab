"""Python runtimes are forked from init, itself a fork of the fork server (runtime/pyfork.py): the
function can read its whole address space, so nothing of another tenant may be in it, not even in
freed heap. Tenant configuration therefore never passes through the fork server (sandbox/jail.py)."""
from __future__ import annotations

import json
import uuid

import pytest

from lambdalet.sandbox import open_backend
from lambdalet.sandbox.testing import make_request, make_spec, namespace_unavailable_reason, write_code

pytestmark = pytest.mark.root

# Reads every readable private mapping of its own process and looks for the marker.
SCAN = r'''
import ctypes, re, sys
def handler(event, context):
    # The secret comes in two halves and is never put together here (the scan would find its own
    # copy): a hit is the first half followed in memory by the second. /proc/self/mem is closed to
    # the function (not dumpable); ctypes reads the same bytes in place.
    first, second = event["first"].encode(), event["second"].encode()
    pat, found, scanned = re.compile(re.escape(first)), [], 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            path = fields[5] if len(fields) > 5 else ""
            if not fields[1].startswith("r") or path not in ("", "[heap]", "[stack]"):
                continue                                  # anonymous memory only: heap, arenas, stacks
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            mem = (ctypes.c_char * (hi - lo)).from_address(lo)
            scanned += hi - lo
            for m in pat.finditer(mem):
                if mem[m.end():m.end() + len(second)] == second:
                    found.append(f"{lo + m.start():x} in {line.strip()}")
    return {"found": found, "scanned": scanned, "exe": sys.executable,
            "lambdalet": sorted(m for m in sys.modules if m.startswith("lambdalet")), "path0": sys.path[0]}
'''


@pytest.fixture(scope="module", params=[0, 2], ids=["fresh", "slot"])
def backend(request):
    """Also from pre-isolated slots: tenant B's runtime was then forked before tenant A ever ran."""
    reason = namespace_unavailable_reason()
    if reason:
        pytest.skip(reason)
    b = open_backend("namespace", uid_base=310_000, uid_count=100, slots=request.param)
    if b.slots is not None:
        assert b.slots.wait_full(10)
    yield b
    b.close()


def test_a_runtime_holds_nothing_of_an_earlier_tenant(backend, tmp_path):
    secret = "tenant-a-secret-" + uuid.uuid4().hex
    code = write_code(str(tmp_path / "code"), {"app.py": SCAN})
    # padded, so that tenant B's own (smaller) set-up could not simply overwrite a freed copy
    a = backend.create(make_spec(code, name="tenant-a", env={"SECRET": "x" * 20000 + secret + "y" * 20000}))
    a.start()
    try:
        res = a.invoke(make_request(a.spec, json.dumps({"first": secret[:20], "second": secret[20:]}).encode()))
        own = json.loads(res.payload)
        assert "found" in own, (own, res.log_tail)
        assert own["found"], "the scan must find the tenant's own variable (else it proves nothing)"
    finally:
        a.destroy()
    b = backend.create(make_spec(code, name="tenant-b"))
    b.start()
    try:
        other = json.loads(b.invoke(make_request(b.spec, json.dumps({"first": secret[:20], "second": secret[20:]}).encode())).payload)
    finally:
        b.destroy()
    assert other["scanned"] > 4 * 1024 * 1024
    assert other["found"] == [], other["found"]
    assert other["lambdalet"] == [] and other["exe"] == "/var/lang/bin/python3.11" and other["path0"] == "/var/task"
