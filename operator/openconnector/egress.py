"""The egress policy: which addresses the gateway may send to (subscribers, dead-letter sinks, Sources).

Pure; the connect-time check is :mod:`openconnector.egress_resolver`. A URL is checked when a resource
compiles (the status names the refused field and why) and again when a connection is made, after DNS
resolution, so a name that later resolves to a refused address (DNS rebinding) is refused too.

In-cluster subscribers live at private ClusterIPs, so the default policy cannot refuse private ranges as a
SaaS gateway would. The default denies what no subscriber legitimately is: link-local ranges and the
cloud metadata services, in every spelling (IPv4-mapped and NAT64 IPv6, integer, hex and octal IPv4).
The ``strict`` preset, for multi-tenant clusters, also denies loopback and the private ranges; the admin
then allows what subscribers really use (``--egress-allow CIDR``). ``allowed`` wins over ``denied``.
A ``service:<name>.<namespace>`` reference outside the resource's own namespace is refused unless that
namespace is allowed (``--egress-allow-service-namespace``, ``*`` for all).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_DENIED_HOSTS",
    "DEFAULT_DENIED_NETWORKS",
    "PRESETS",
    "STRICT_DENIED_NETWORKS",
    "EgressDenied",
    "EgressPolicy",
    "parse_host_address",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


DEFAULT_DENIED_NETWORKS: Final = _networks(
    [
        "169.254.0.0/16",  # IPv4 link-local: cloud metadata 169.254.169.254, ECS 169.254.170.2
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS instance metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure WireServer
    ]
)
DEFAULT_DENIED_HOSTS: Final = frozenset({"metadata.google.internal", "metadata.goog"})
STRICT_DENIED_NETWORKS: Final = (
    *DEFAULT_DENIED_NETWORKS,
    *_networks(
        [
            "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",  # loopback and "this host"
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",  # private
            "100.64.0.0/10", "198.18.0.0/15",  # carrier-grade NAT, benchmarking
        ]
    ),
)  # fmt: skip
STRICT_DENIED_HOSTS: Final = DEFAULT_DENIED_HOSTS | {"localhost"}
PRESETS: Final = ("default", "strict")

# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64 well-known and local-use).
_NAT64: Final = _networks(["64:ff9b::/96", "64:ff9b:1::/48"])


class EgressDenied(Exception):
    """The policy refuses a destination; the message says which and why."""


def _legacy_ipv4_part(text: str) -> int | None:
    if not text:
        return None
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16) if text[2:] else 0
        if len(text) > 1 and text[0] == "0":
            return int(text[1:], 8)
        return int(text, 10) if text.isdigit() else None
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in the forms inet_aton (and so getaddrinfo and browsers) accept: ``2852039166``,
    ``0xa9fea9fe``, ``0251.0376.0251.0376``, ``169.254.43518``."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isascii() and p.isalnum() for p in parts):
        return None
    numbers = [_legacy_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for position, value in enumerate(head):
        number |= value << (8 * (3 - position))
    return ipaddress.IPv4Address(number)


def parse_host_address(host: str) -> Address | None:
    """The IP address a URL host denotes, in any spelling, or None for a DNS name."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.partition("%")[0]  # an IPv6 zone id does not change the address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    return _legacy_ipv4(text)


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches: IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if (int(address) >> 32 == 0 and int(address) > 1) or any(address in net for net in _NAT64):
        found.append(low32)  # ::a.b.c.d (deprecated IPv4-compatible) and NAT64
    return found


@dataclass(frozen=True)
class EgressPolicy:
    denied: tuple[Network, ...] = DEFAULT_DENIED_NETWORKS
    allowed: tuple[Network, ...] = ()
    denied_hosts: frozenset[str] = DEFAULT_DENIED_HOSTS
    allowed_hosts: frozenset[str] = frozenset()
    # Namespaces `service:` references may point into besides the resource's own; "*" allows every one.
    allowed_service_namespaces: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        preset: str = "default",
        *,
        deny: Sequence[str] = (),
        allow: Sequence[str] = (),
        deny_hosts: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        allow_service_namespaces: Sequence[str] = (),
    ) -> EgressPolicy:
        """A preset plus extra CIDRs/hosts (the flags); raises ValueError for a bad CIDR or preset."""
        if preset not in PRESETS:
            raise ValueError(f"unknown egress preset {preset!r}; use one of {', '.join(PRESETS)}")
        base_networks = STRICT_DENIED_NETWORKS if preset == "strict" else DEFAULT_DENIED_NETWORKS
        base_hosts = STRICT_DENIED_HOSTS if preset == "strict" else DEFAULT_DENIED_HOSTS
        return cls(
            denied=(*base_networks, *_networks(deny)),
            allowed=_networks(allow),
            denied_hosts=base_hosts | {_host_key(h) for h in deny_hosts},
            allowed_hosts=frozenset(_host_key(h) for h in allow_hosts),
            allowed_service_namespaces=frozenset(allow_service_namespaces),
        )

    def address_refusal(self, address: Address) -> str | None:
        """Why the policy refuses ``address`` (or an IPv4 address embedded in it), or None."""
        for candidate in (address, *_embedded_ipv4(address)):
            if any(candidate in network for network in self.allowed):
                continue
            for network in self.denied:
                if candidate.version == network.version and candidate in network:
                    shown = f"{address} ({candidate})" if candidate != address else str(address)
                    return f"the address {shown} is in the denied egress range {network}"
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why the policy refuses a URL host (a name or an address in any spelling), or None."""
        key = _host_key(host)
        if key in self.allowed_hosts:
            return None
        for denied in self.denied_hosts:
            if key == denied or key.endswith("." + denied):
                return f"the host {key!r} is denied by the egress policy"
        address = parse_host_address(key)
        return None if address is None else self.address_refusal(address)

    def url_refusal(self, url: str) -> str | None:
        """Why the policy refuses a URL (checked at compile time), or None."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return "the URL cannot be parsed"
        if not host:
            return "the URL has no host"
        return self.host_refusal(host)

    def service_refusal(self, own_namespace: str, target_namespace: str) -> str | None:
        if target_namespace == own_namespace or {"*", target_namespace} & self.allowed_service_namespaces:
            return None
        return (
            f"service references into namespace {target_namespace!r} are not allowed from "
            f"{own_namespace!r} (allow with --egress-allow-service-namespace)"
        )


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".")
