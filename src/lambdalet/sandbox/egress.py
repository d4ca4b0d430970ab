"""The host's side of environments' outbound networking (policies: egress_policy.py).

Each environment that may reach anything gets a veth pair: the host end `l<tag>h<rand>` holds the gateway
address (the same on every host end) and a /32 route to the environment's address; the other end is
pulled into the environment's network namespace by its set-up (envnet.py). Traffic is routed (per-device
IPv4 forwarding: the host's global setting is not touched) and masqueraded on the way out. One nftables
table of this server's own, `inet lambdalet_<instance>`, decides everything, keyed by the host end's name
(which the tenant cannot choose or change):
  - input: nothing from an environment reaches the host itself (its API port, loopback services, any of
    its addresses, the gateway) — rejected;
  - forward/output into an environment: only replies (conntrack established/related): nothing inbound,
    nothing from another environment, nothing from the host;
  - prerouting: a source address that is not the environment's own is dropped (rp filter);
  - forward out of an environment: never loopback, link-local/metadata, multicast, reserved, IPv6; then
    the function's own chain if it has one (map `fn`), else the server's default base chain.
Slots (slots.py) get their link when they are built, in the background: a cold start from a slot pays
nothing here unless the function has its own policy (one `nft` call). Links die with their namespace;
the table, and any link never moved, are removed on close and by the next server's stale clean-up.

Replies arriving on the uplink need IPv4 forwarding on that device: if it was off, it is turned on and
a marker (/run/lambdalet/forwarding/<dev>) makes every lambdalet table drop any forwarded packet from
it that is not a reply, so the host still routes nothing else; the last server to close turns it off.
"""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import os
import random
import re
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass

from lambdalet.sandbox import egress_policy
from lambdalet.sandbox.egress_policy import Policy

log = logging.getLogger(__name__)
DEFAULT_SUBNET = "10.200.0.0/16"
MARKERS = "/run/lambdalet/forwarding"
OWNERS = "/run/lambdalet/egress-owners"          # <table>: "<pid> <start time> <instance>" of the server making it
REJECT = "reject with icmpx admin-prohibited"


class EgressUnavailable(RuntimeError):
    pass


@dataclass
class Link:
    host: str                 # host end's name (stays on the host)
    peer: str                 # the end the environment pulls in (named eth0 there)
    ifindex: int              # the peer's index on the host, for the move
    address: str
    gateway: str
    own_policy: bool = False  # an element of the `fn` map names it

    def jail(self) -> dict:
        return {"ifindex": self.ifindex, "address": self.address, "gateway": self.gateway}


def _run(argv: list[str], text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=20)


def _nft(text: str) -> None:
    r = _run(["nft", "-f", "-"], text)
    if r.returncode:
        raise EgressUnavailable(f"nft: {r.stderr.strip()}")


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's IPv4 nameservers an environment can use (loopback ones are the host's own: not reachable)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        ip = ipaddress.IPv4Address(parts[1])
                    except ValueError:
                        continue
                    if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                        out.append(str(ip))
    except OSError:
        pass
    return out[:3]


def uplinks() -> list[str]:
    r = _run(["ip", "-4", "route", "show", "default"])
    return sorted({m for m in re.findall(r"\bdev (\S+)", r.stdout)})


def table_name(instance: str) -> str:
    """The nftables table of the server whose cgroup parent (instance) is `instance`."""
    return "lambdalet_" + re.sub(r"[^A-Za-z0-9_]", "_", instance.removeprefix("lambdalet-"))


def link_prefix(instance: str) -> str:
    """How this server's links' names begin (15 characters at most in all: l<5 hex>[hp]<8 hex>)."""
    return "l" + hashlib.sha256(instance.encode()).hexdigest()[:5]


class HostNetwork:
    def __init__(self, instance: str, default: str = egress_policy.DEFAULT, subnet: str = DEFAULT_SUBNET):
        if default not in egress_policy.BASES:
            raise ValueError(f"unknown egress policy {default!r}")
        self.default = default
        self.table = table_name(instance)
        self.prefix = link_prefix(instance)
        self.subnet = ipaddress.IPv4Network(subnet)
        self.gateway = str(self.subnet.network_address + 1)
        self.nameservers = host_nameservers()
        self._lock = threading.Lock()
        self._addresses: set[str] = set()
        self._chains: set[str] = set()
        self._uplinks = uplinks()
        self.remove_leftover_links()
        with _marker_lock():
            sweep_dead_owners(keep=self.table)
            self._forward_uplinks()
            _nft(self._ruleset())
            os.makedirs(OWNERS, mode=0o755, exist_ok=True)
            with open(os.path.join(OWNERS, self.table), "w") as f:
                f.write(f"{os.getpid()} {_start_time(os.getpid())} {instance}\n")

    # --- the table ------------------------------------------------------------------------------
    def _ruleset(self) -> str:
        h = f'"{self.prefix}h*"'
        sets = [f"set never {{ type ipv4_addr; flags interval; elements = {{ {', '.join(egress_policy.NEVER)} }} }}",
                f"set private {{ type ipv4_addr; flags interval; elements = {{ "
                f"{', '.join(self._private())} }} }}",
                "map fn { type ifname : verdict; }"]
        dns = (f"ip daddr {{ {', '.join(self.nameservers)} }} meta l4proto {{ tcp, udp }} th dport 53 accept"
               if self.nameservers else "")
        guarded = [d for d in self._uplinks if os.path.exists(os.path.join(MARKERS, d))]
        names = ", ".join(f'"{d}"' for d in guarded)
        guard = f"iifname {{ {names} }} ct state != {{ established, related }} drop" if guarded else ""
        sets_text = "\n  ".join(sets)
        return f"""add table inet {self.table}
delete table inet {self.table}
table inet {self.table} {{
  {sets_text}
  chain spoof {{ type filter hook prerouting priority raw; policy accept;
    iifname {h} fib saddr . iif oif missing drop
  }}
  chain input {{ type filter hook input priority filter; policy accept;
    iifname {h} {REJECT}
  }}
  chain output {{ type filter hook output priority filter; policy accept;
    oifname {h} ct state established,related accept
    oifname {h} {REJECT}
  }}
  chain forward {{ type filter hook forward priority filter; policy accept;
    oifname {h} ct state established,related accept
    oifname {h} {REJECT}
    iifname {h} jump egress
    {guard}
  }}
  chain egress {{
    ct state established,related accept
    meta nfproto ipv6 {REJECT}
    ip daddr @never {REJECT}
    iifname vmap @fn
    jump base_{self.default}
  }}
  chain base_none {{ {REJECT}; }}
  chain base_public {{
    {dns}
    ip daddr @private {REJECT}
    accept
  }}
  chain base_all {{ accept; }}
  chain nat {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr {self.subnet} oifname != {h} masquerade
  }}
}}
"""

    def _private(self) -> list[str]:
        """'public' excludes the private ranges and the environments' own subnet."""
        nets = list(egress_policy.PRIVATE)
        if not any(self.subnet.subnet_of(ipaddress.IPv4Network(n)) for n in nets):
            nets.append(str(self.subnet))
        return nets

    def _forward_uplinks(self) -> None:
        """Replies come back in through the uplink: it must forward (see the module's doc)."""
        os.makedirs(MARKERS, mode=0o755, exist_ok=True)
        for dev in self._uplinks:
            path = f"/proc/sys/net/ipv4/conf/{dev}/forwarding"
            try:
                with open(path) as f:
                    if f.read().strip() == "1":
                        continue
                with open(path, "w") as f:
                    f.write("1")
                open(os.path.join(MARKERS, dev), "w").close()
                log.warning("egress: IPv4 forwarding turned on for %s (lambdalet's tables forward only replies "
                            "to its environments from it)", dev)
            except OSError as e:
                log.error("egress: cannot turn on IPv4 forwarding for %s: %s", dev, e)

    def close(self) -> None:
        with _marker_lock():
            r = _run(["nft", "delete", "table", "inet", self.table])
            if r.returncode and "No such file" not in r.stderr:
                log.error("egress: table %s could not be removed: %s", self.table, r.stderr.strip())
            try:
                os.unlink(os.path.join(OWNERS, self.table))
            except FileNotFoundError:
                pass
            others = _run(["nft", "list", "tables", "inet"]).stdout
            if "lambdalet_" not in others:      # the last server: forwarding back off where we turned it on
                for dev in os.listdir(MARKERS) if os.path.isdir(MARKERS) else ():
                    try:
                        with open(f"/proc/sys/net/ipv4/conf/{dev}/forwarding", "w") as f:
                            f.write("0")
                    except OSError:
                        pass
                    os.unlink(os.path.join(MARKERS, dev))
        self.remove_leftover_links()

    def remove_leftover_links(self) -> list[str]:
        """Host ends (and unmoved peers) of this instance still on the host: links of a dead server's
        environments that were never moved, or of failed set-ups."""
        return _remove_links(self.prefix)

    # --- links ----------------------------------------------------------------------------------
    def make_link(self) -> Link:
        """A veth pair for one environment; its peer goes into the environment (envnet.join)."""
        last = ""
        for _ in range(8):
            rnd = secrets.token_hex(4)
            host, peer = f"{self.prefix}h{rnd}", f"{self.prefix}p{rnd}"
            address = self._pick_address()
            r = _run(["ip", "-batch", "-"], f"link add {host} type veth peer name {peer}\n"
                                            f"link set {host} up\naddr add {self.gateway}/32 dev {host}\n"
                                            f"route add {address}/32 dev {host}\n")
            if r.returncode == 0:
                try:
                    for knob, value in (("ipv4/conf/{}/forwarding", "1"), ("ipv6/conf/{}/disable_ipv6", "1")):
                        p = "/proc/sys/net/" + knob.format(host)
                        if os.path.exists(p):
                            with open(p, "w") as f:
                                f.write(value)
                    return Link(host, peer, socket.if_nametoindex(peer), address, self.gateway)
                except OSError as e:
                    last = str(e)
            else:
                last = r.stderr.strip()
            _run(["ip", "link", "del", host])
            self._free(address)
        raise EgressUnavailable(f"no veth pair could be made: {last}")

    def _pick_address(self) -> str:
        with self._lock:
            while True:       # another server's environment may hold one: the route add then fails; retried
                a = str(self.subnet.network_address + random.randrange(2, self.subnet.num_addresses - 1))
                if a not in self._addresses:
                    self._addresses.add(a)
                    return a

    def _free(self, address: str) -> None:
        with self._lock:
            self._addresses.discard(address)

    def bind(self, link: Link, policy: Policy) -> None:
        """The function's own policy for this link (the server's default needs nothing)."""
        chain = "fn_" + hashlib.sha256(policy.key().encode()).hexdigest()[:16]
        text = ""
        with self._lock:
            if chain not in self._chains:
                rules = [a.nft() for a in policy.allow] + [f"jump base_{policy.base}"]
                text += f"add chain inet {self.table} {chain}\n" + "".join(
                    f"add rule inet {self.table} {chain} {r}\n" for r in rules)
            text += f'add element inet {self.table} fn {{ "{link.host}" : jump {chain} }}\n'
            _nft(text)
            self._chains.add(chain)
        link.own_policy = True

    def release(self, link: Link) -> None:
        """After the environment is gone: its link dies with its namespace; a never-moved one is removed."""
        try:
            if link.own_policy:
                _run(["nft", "delete", "element", "inet", self.table, "fn", f'{{ "{link.host}" }}'])
            if link.peer in {n for _, n in socket.if_nameindex()}:
                _run(["ip", "link", "del", link.host])
        finally:
            self._free(link.address)


def _remove_links(prefix: str) -> list[str]:
    gone = []
    for _, name in socket.if_nameindex():
        if name.startswith(prefix) and name[len(prefix):len(prefix) + 1] in ("h", "p"):
            if _run(["ip", "link", "del", name]).returncode == 0:
                gone.append(name)
    return gone


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def sweep_dead_owners(keep: str = "") -> list[str]:
    """Tables (and leftover links) of servers that are gone (killed -9, crashed), whatever their data dir:
    each table's owner file names the process that made it. Call with the marker lock held."""
    cleaned = []
    try:
        tables = os.listdir(OWNERS)
    except FileNotFoundError:
        return cleaned
    for table in tables:
        path = os.path.join(OWNERS, table)
        try:
            with open(path) as f:
                pid, start, instance = f.read().split()
        except (OSError, ValueError):
            continue
        if table == keep or (start and _start_time(int(pid)) == start):
            continue                                   # ours, or its server is alive
        _run(["nft", "delete", "table", "inet", table])
        cleaned += [f"table {table}"] + [f"link {n}" for n in _remove_links(link_prefix(instance))]
        os.unlink(path)
    for line in cleaned:
        log.warning("egress: cleaned up after a server that is gone: %s", line)
    return cleaned


class _marker_lock:
    """Serializes forwarding changes and table clean-up between lambdalet servers on one host."""
    def __enter__(self):
        os.makedirs(os.path.dirname(MARKERS), mode=0o755, exist_ok=True)
        self._fh = open(os.path.join(os.path.dirname(MARKERS), "egress.lock"), "a+")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self._fh.close()
