"""An environment's side of its egress link (runs in the fork server's child, as root, before the
tenant): the host made a veth pair (sandbox/egress.py); the child pulls the peer end into its new
network namespace, names it eth0 and gives it its /32 address and a default route through the
host-side end. Everything else (what it may reach) is decided on the host, where the tenant cannot
touch it; the tenant has no CAP_NET_ADMIN to change any of this afterwards.

Raw rtnetlink messages (four of them), not a library: this runs in every environment's set-up, from
the fork server's pre-imported state, and must cost microseconds. Moving the link needs a netlink
socket of the host's namespace (opened before unshare) and a descriptor of the new one.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct

RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, NLMSG_ERROR = 16, 20, 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_NET_NS_FD = 3, 28
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY, RTA_OIF = 5, 4
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, RTNH_F_ONLINK = 254, 3, 0, 1, 4
INSIDE_NAME = "eth0"


def open_netlink() -> socket.socket:
    """A route-netlink socket of the calling process's current network namespace (bound to it for life)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("HH", n, kind) + data + b"\0" * (-n % 4)


def _request(nl: socket.socket, kind: int, flags: int, body: bytes) -> None:
    nl.send(struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0) + body)
    reply = nl.recv(65536)
    _, rkind, _, _, _ = struct.unpack_from("IHHII", reply)
    if rkind == NLMSG_ERROR:
        err = struct.unpack_from("i", reply, 16)[0]
        if err:
            raise OSError(-err, f"rtnetlink {kind}: {os.strerror(-err)}")


def _link(index: int, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def move_link(host_nl: socket.socket, ifindex: int, ns_fd: int) -> None:
    """Move the host's link `ifindex` into the namespace `ns_fd` (sent on a socket of the host's namespace)."""
    _request(host_nl, RTM_NEWLINK, 0, _link(ifindex) + _attr(IFLA_NET_NS_FD, struct.pack("I", ns_fd)))


def configure_inside(address: str, gateway: str) -> None:
    """In the new namespace: the moved link becomes eth0, up, with address/32 and `default via gateway
    onlink` (the host-side end owns the gateway address and answers its ARP)."""
    with open_netlink() as nl:
        index = _only_moved_link()
        _disable_ipv6(index)
        _request(nl, RTM_NEWLINK, 0, _link(index) + _attr(IFLA_IFNAME, INSIDE_NAME.encode() + b"\0"))
        addr = ipaddress.IPv4Address(address).packed
        _request(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                 struct.pack("BBBBI", socket.AF_INET, 32, 0, RT_SCOPE_UNIVERSE, index)
                 + _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr))
        _request(nl, RTM_NEWLINK, 0, _link(index, IFF_UP, IFF_UP))
        _request(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                 struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                             RTN_UNICAST, RTNH_F_ONLINK)
                 + _attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed) + _attr(RTA_OIF, struct.pack("I", index)))


def _only_moved_link() -> int:
    links = [(i, n) for i, n in socket.if_nameindex() if n != "lo"]
    if len(links) != 1:
        raise OSError(f"expected exactly one link besides lo in the new namespace, found {links}")
    return links[0][0]


def _disable_ipv6(index: int) -> None:
    """IPv4 only: no link-local IPv6 address, so nothing can talk IPv6 to the host-side end."""
    name = socket.if_indextoname(index)
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:   # this namespace's sysctl
            f.write("1")
    except FileNotFoundError:
        pass                                           # no IPv6 in this kernel


def join(net: dict, host_nl: socket.socket) -> None:
    """The whole inside set-up, right after unshare(CLONE_NEWNET): `net` is the host's LinkConfig dict."""
    ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        move_link(host_nl, int(net["ifindex"]), ns_fd)
    finally:
        os.close(ns_fd)
        host_nl.close()                                # never kept: it speaks for the host's namespace
    configure_inside(net["address"], net["gateway"])
