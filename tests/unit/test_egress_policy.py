"""The egress policy language (sandbox/egress_policy.py) and the rules it becomes. Unit tests only: what
the policies do to real traffic is tests/security/test_egress.py."""
from __future__ import annotations

import ipaddress

import pytest

from lambdalet.sandbox.egress_policy import Allow, Policy, PolicyError, parse


def test_empty_is_the_servers_default():
    assert parse("", "public") == Policy("public")
    assert parse(None, "none") == Policy("none")
    assert not parse("", "none").needs_link and parse("", "all").needs_link


def test_base_and_allow_list_items_space_separated():
    p = parse("none 10.0.0.0/8:5432 192.0.2.10:443 198.51.100.0/24 203.0.113.7:1000-2000", "public")
    assert p.base == "none" and p.needs_link
    assert [a.nft() for a in p.allow] == [
        "ip daddr 10.0.0.0/8 meta l4proto { tcp, udp } th dport 5432 accept",
        "ip daddr 192.0.2.10/32 meta l4proto { tcp, udp } th dport 443 accept",
        "ip daddr 198.51.100.0/24 accept",
        "ip daddr 203.0.113.7/32 meta l4proto { tcp, udp } th dport 1000-2000 accept"]
    assert parse("10.1.2.0/24:5432", "public") == Policy("public", (Allow(ipaddress.IPv4Network("10.1.2.0/24"),
                                                                         (5432, 5432)),))


@pytest.mark.parametrize("value", ["not-a-network", "10.0.0.0/8:http", "10.0.0.0/8:0", "10.0.0.0/8:70000",
                                   "10.0.0.0/8:9-1", "none all", "169.254.169.254", "169.254.0.0/15",
                                   "127.0.0.1:80", "0.0.0.0/0", "224.0.0.1", "fd00:ec2::254", "10.0.0.0/33"])
def test_what_cannot_be_honoured_is_refused(value):
    with pytest.raises(PolicyError):
        parse(value, "public")


def test_the_same_policy_has_the_same_key():
    assert parse("none 10.0.0.0/8:5432", "public").key() == parse("10.0.0.0/8:5432 none", "all").key()
    assert parse("none 10.0.0.0/8:5432", "public").key() != parse("public 10.0.0.0/8:5432", "public").key()


def test_unknown_default_is_refused():
    with pytest.raises(PolicyError):
        parse("", "everything")
