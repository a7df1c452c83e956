"""Client address allow-lists (a Consumer's `allowedIPs`) and trusted proxies (`--trusted-proxy`).

Both are parsed once: the allow-list when the Consumer compiles, the trusted proxies when the gateway
starts. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["IpAddress", "IpAllowList", "IpNetwork", "TrustedProxies", "parse_address"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> IpAddress | None:
    """A peer or X-Forwarded-For address (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `fe80::1%eth0`)."""
    host = text.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        host = host[1:end]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
    return address


def _parse_networks(cidrs: Sequence[str], field_name: str) -> tuple[IpNetwork, ...]:
    networks: list[IpNetwork] = []
    for index, cidr in enumerate(cidrs):
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{field_name}[{index}]: {cidr!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _in_any(address: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(address in network for network in networks)


class TrustedProxies:
    """The peers whose `X-Forwarded-For` is believed."""

    __slots__ = ("networks",)

    def __init__(self, cidrs: Sequence[str] = ()) -> None:
        """ValueError names the first entry that is not an address or CIDR range."""
        self.networks = _parse_networks(cidrs, "trustedProxies")

    def client_address(self, remote: str, forwarded_for: str | None) -> IpAddress | None:
        """The client: the peer, or — only when the peer is a trusted proxy — the right-most X-Forwarded-For
        entry that is not itself a trusted proxy (walking right to left). None when unparseable."""
        current = parse_address(remote)
        if current is None or not _in_any(current, self.networks) or not forwarded_for:
            return current
        for entry in reversed(forwarded_for.split(",")):
            hop = parse_address(entry)
            if hop is None:
                return current  # garbage left of a trusted hop: trust stops at that hop
            current = hop
            if not _in_any(hop, self.networks):
                return hop
        return current  # every hop is a trusted proxy: the left-most one is the client


class IpAllowList:
    """Allowed client ranges, parsed once. An empty allow-list allows everyone."""

    __slots__ = ("networks",)

    def __init__(self, allowed_cidrs: Sequence[str] = ()) -> None:
        """ValueError names the first entry that is not an address or CIDR range (`ips[<index>]: …`)."""
        self.networks = _parse_networks(allowed_cidrs, "ips")

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, address: IpAddress | None) -> bool:
        """True for an address in one of the ranges, or for anyone when the list is empty."""
        if not self.networks:
            return True
        return address is not None and _in_any(address, self.networks)
