"""Bounds on what one client may make the gateway do: one place for every ingress limit and its default.

Each field is a flag of ``serve`` and ``run`` and a chart value (docs/operations.md, "Security model").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from openconnector.egress import PRESETS, EgressPolicy

# orjson refuses to write more than 255 levels, and an event adds one (the structured-mode envelope) or
# two (a batch) around its data; the dead-letter copy adds none. 250 keeps every accepted body encodable.
ORJSON_MAX_DEPTH: Final = 255
MAX_ALLOWED_DEPTH: Final = ORJSON_MAX_DEPTH - 5


@dataclass(frozen=True)
class RequestLimits:
    """Per-request and per-connection bounds of the HTTP server."""

    # Nesting of any JSON the gateway accepts (event data, webhook bodies, mapped objects); deeper input
    # is refused before anything is accepted, so the delivery engine can always encode what it queued.
    max_json_depth: int = 64
    # Seconds a connection may take to send a complete request head (request line and headers).
    header_timeout: float = 10.0
    # Seconds a request body may take to arrive once the head is in.
    body_timeout: float = 30.0
    # Seconds an idle keep-alive connection stays open between requests.
    keepalive_timeout: float = 15.0
    # Open client connections at once; one more is answered 503 problem+json and closed.
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.max_json_depth <= MAX_ALLOWED_DEPTH:
            raise ValueError(f"max_json_depth must be between 1 and {MAX_ALLOWED_DEPTH}")
        if min(self.header_timeout, self.body_timeout, self.keepalive_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


def _int_in(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (no upper bound: None), else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be at least {low}, got {value}"
                if high is None
                else f"must be {low}..{high}, got {value}"
            )
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of :class:`RequestLimits` and the egress policy (``serve`` and ``run``)."""
    d = RequestLimits()
    add = parser.add_argument
    add(
        "--max-json-depth",
        type=_int_in(1, MAX_ALLOWED_DEPTH),
        default=d.max_json_depth,
        metavar="N",
        help=f"deepest JSON nesting accepted anywhere (1..{MAX_ALLOWED_DEPTH})",
    )
    add(
        "--header-timeout",
        type=_positive_seconds,
        default=d.header_timeout,
        metavar="SECONDS",
        help="time a connection has to send a complete request head",
    )
    add(
        "--body-timeout",
        type=_positive_seconds,
        default=d.body_timeout,
        metavar="SECONDS",
        help="time a request body has to arrive",
    )
    add(
        "--keepalive-timeout",
        type=_positive_seconds,
        default=d.keepalive_timeout,
        metavar="SECONDS",
        help="idle keep-alive connections are closed after this",
    )
    add(
        "--max-connections",
        type=_int_in(1, None),
        default=d.max_connections,
        metavar="N",
        help="open client connections; more are answered 503 and closed",
    )
    add(
        "--egress-preset",
        choices=PRESETS,
        default="default",
        help="default: deny link-local and cloud metadata; strict: also loopback and private ranges",
    )
    add(
        "--egress-deny", action="append", default=[], metavar="CIDR", help="also deny this range (repeatable)"
    )
    add(
        "--egress-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow this range even if denied (repeatable)",
    )
    add(
        "--egress-deny-host",
        action="append",
        default=[],
        metavar="HOST",
        help="deny a host name and its subdomains",
    )
    add("--egress-allow-host", action="append", default=[], metavar="HOST", help="allow a denied host name")
    add(
        "--egress-allow-service-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="namespace service: references may point into from other namespaces ('*': any)",
    )


def limits_from_args(args: argparse.Namespace) -> RequestLimits:
    d = RequestLimits()
    return RequestLimits(
        max_json_depth=getattr(args, "max_json_depth", d.max_json_depth),
        header_timeout=getattr(args, "header_timeout", d.header_timeout),
        body_timeout=getattr(args, "body_timeout", d.body_timeout),
        keepalive_timeout=getattr(args, "keepalive_timeout", d.keepalive_timeout),
        max_connections=getattr(args, "max_connections", d.max_connections),
    )


def egress_from_args(args: argparse.Namespace) -> EgressPolicy:
    return EgressPolicy.build(
        getattr(args, "egress_preset", "default"),
        deny=getattr(args, "egress_deny", ()),
        allow=getattr(args, "egress_allow", ()),
        deny_hosts=getattr(args, "egress_deny_host", ()),
        allow_hosts=getattr(args, "egress_allow_host", ()),
        allow_service_namespaces=getattr(args, "egress_allow_service_namespace", ()),
    )
