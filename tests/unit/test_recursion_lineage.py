"""services/recursion.py's trace header arithmetic and services/tenancy.py's invocation check (pure
functions; the behaviour is proven through a real server in tests/integration/test_recursion.py and
test_tenancy_isolation.py)."""
from __future__ import annotations

import pytest

from lambdalet.models.errors import InvalidParameterValueException
from lambdalet.services import recursion, tenancy

F = "arn:aws:lambda:us-east-1:123456789012:function:f"
G = "arn:aws:lambda:us-east-1:123456789012:function:g"


def _chain(header: str, arn: str, n: int) -> str:
    for _ in range(n):
        header = recursion.next_trace(header, arn)
    return header


def test_each_invocation_adds_one_for_its_function_only():
    h = _chain("", F, 3)
    assert recursion.invocations_so_far(h, F) == 3 and recursion.invocations_so_far(h, G) == 0
    h = _chain(h, G, 2)
    assert recursion.invocations_so_far(h, F) == 3 and recursion.invocations_so_far(h, G) == 2


def test_the_root_is_kept_and_a_new_parent_made():
    first = recursion.next_trace("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", F)
    fields = dict(p.split("=", 1) for p in first.split(";"))
    assert fields["Root"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert fields["Parent"] != "53995c3f42cd8ad8" and fields["Sampled"] == "0"
    assert recursion.next_trace("Root=garbage", F).startswith("Root=1-")


def test_stopped_past_16_unless_allowed():
    sixteen = _chain("", F, 16)
    assert not recursion.is_loop(_chain("", F, 15), F, None)
    assert recursion.is_loop(sixteen, F, None) and recursion.is_loop(sixteen, F, "Terminate")
    assert not recursion.is_loop(sixteen, F, "Allow")
    assert not recursion.is_loop(sixteen, G, None)


def test_malformed_lineage_counts_nothing_and_the_header_stays_small():
    assert recursion.invocations_so_far("Lineage=zz:9;Root=x", F) == 0
    assert recursion.invocations_so_far("Lineage=abcdefgh:notanumber", F) == 0
    h = ""
    for i in range(40):
        h = recursion.next_trace(h, f"{F}{i}")
    lineage = dict(p.split("=", 1) for p in h.split(";"))["Lineage"]
    assert len(lineage.split(",")) == recursion.MAX_LINEAGE_ENTRIES
    assert recursion.invocations_so_far(h, f"{F}39") == 1       # the function being invoked is always kept


def test_tenant_id_must_match_the_isolation_mode():
    assert tenancy.check_invoke(True, "blue") == "blue"
    assert tenancy.check_invoke(False, None) == ""
    for isolated, tenant in ((True, None), (True, ""), (False, "blue")):
        with pytest.raises(InvalidParameterValueException) as info:
            tenancy.check_invoke(isolated, tenant)
        assert info.value.message == tenancy.TENANT_ID_MISMATCH
    assert tenancy.environment_cap(1000) == 2500 and tenancy.environment_cap(1) == 2
    assert tenancy.environment_cap(0) == 1
