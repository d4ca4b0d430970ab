"""What an environment may reach outside itself: the server's default and a function's own allow-list.

The server's default (`lambdalet serve --egress`):
  none    no path out at all (the environment has only `lo`);
  public  everything but private, shared, loopback, link-local, multicast and reserved addresses and the
          host itself: what a Lambda function outside a VPC has (AWS: "functions have access to the public
          internet"); the default, so functions written for AWS run unchanged;
  all     public plus private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, ...).
Whatever the policy, an environment never reaches the host's own addresses (its API port and loopback
services included), link-local / metadata addresses, loopback, multicast, another environment, and
nothing ever connects into one. The host's configured nameservers are reachable on port 53 whenever
the policy is not `none` (the resolver the environment's /etc/resolv.conf names).

A function's own policy is its tag `lambdalet:egress`, a space-separated list of items (AWS's tag values
allow letters, digits, spaces and `_.:/=+-@`, no comma):
  none | public | all          replaces the server's default as the base;
  CIDR[:PORT[-PORT]]           additionally allowed (TCP and UDP), e.g. "10.0.0.0/8:5432 192.0.2.10:443".
"public 10.1.2.0/24:5432" = public plus one private database. A value that does not parse gives the
function no egress at all (fail closed) and the server logs why. Tags are read when an environment is
made: a change applies to new environments ($LATEST's RevisionId changes with its tags, so its warm
environments are not reused).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

TAG = "lambdalet:egress"
BASES = ("none", "public", "all")
DEFAULT = "public"

NEVER = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")   # any policy
PRIVATE = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "192.0.0.0/24")  # not 'public'


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Allow:
    network: ipaddress.IPv4Network
    ports: tuple[int, int] | None = None       # inclusive range; None: every port

    def nft(self) -> str:
        """This item as an nftables rule body."""
        rule = f"ip daddr {self.network}"
        if self.ports is not None:
            lo, hi = self.ports
            rule += f" meta l4proto {{ tcp, udp }} th dport {lo if lo == hi else f'{lo}-{hi}'}"
        return rule + " accept"


@dataclass(frozen=True)
class Policy:
    base: str                                  # none | public | all
    allow: tuple[Allow, ...] = ()

    @property
    def needs_link(self) -> bool:
        return self.base != "none" or bool(self.allow)

    def key(self) -> str:
        """Stable text naming this policy (chains are shared by functions with the same one)."""
        return " ".join([self.base] + [f"{a.network}:{a.ports}" for a in self.allow])


def parse(value: str | None, default: str = DEFAULT) -> Policy:
    """The policy for a tag value (None or "": the server's default). PolicyError if it does not parse."""
    if default not in BASES:
        raise PolicyError(f"unknown egress default {default!r} (one of {', '.join(BASES)})")
    base, allow = None, []
    for item in (value or "").replace(",", " ").split():
        if item in BASES:
            if base is not None and base != item:
                raise PolicyError(f"{TAG}: more than one base policy ({base}, {item})")
            base = item
            continue
        allow.append(_allow(item))
    return Policy(base or default, tuple(allow))


def _allow(item: str) -> Allow:
    net, _, ports = item.partition(":")
    try:
        network = ipaddress.IPv4Network(net, strict=False)
    except ValueError:
        raise PolicyError(f"{TAG}: {item!r} is not an IPv4 address or CIDR[:PORT[-PORT]]") from None
    for never in NEVER:
        if network.overlaps(ipaddress.IPv4Network(never)):
            raise PolicyError(f"{TAG}: {network} overlaps {never}, which no environment may reach")
    if not ports:
        return Allow(network)
    lo, _, hi = ports.partition("-")
    try:
        rng = (int(lo), int(hi or lo))
    except ValueError:
        raise PolicyError(f"{TAG}: bad port in {item!r}") from None
    if not (1 <= rng[0] <= rng[1] <= 65535):
        raise PolicyError(f"{TAG}: bad port range in {item!r}")
    return Allow(network, rng)
