"""The routing table: an immutable snapshot of everything the gateway routes by.

A new table is compiled whenever a resource or Secret changes and swapped in atomically (one attribute
assignment). Requests and deliveries that started on the old table keep their reference to it, so they
finish on the snapshot they began with.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from openconnector.resources import FieldProblem, ResourceKey

Predicate = Callable[[Mapping[str, Any], Any], bool]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DataValidator = Callable[[Any], list[str]]


@dataclass(frozen=True)
class ResourceResult:
    """The outcome of compiling one resource: becomes its Ready condition."""

    key: ResourceKey
    generation: int
    ready: bool
    reason: str
    message: str
    origin: str = ""
    # Extra status fields derived at compile time (e.g. a subscription's resolved url, a consumer's path).
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Every problem found, each naming its field; the message joins them.
    problems: tuple[FieldProblem, ...] = ()


@dataclass(frozen=True)
class HttpTarget:
    """Somewhere the gateway sends HTTP requests: a Source, a subscriber or a dead-letter sink."""

    url: str
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True)
class SourceRoute:
    key: ResourceKey
    type: Literal["api", "register"]
    target: HttpTarget
    register: str


@dataclass(frozen=True)
class EventRoute:
    key: ResourceKey
    type: str
    source: str
    profile: Literal["nl-gov", "cloudevents"]
    enabled: bool
    dataschema: str | None
    # Validates data against the Event's JSON Schema; None when the Event declares none.
    validate_data: DataValidator | None


@dataclass(frozen=True)
class DeliverySettings:
    retries: int
    backoff_policy: Literal["exponential", "linear"]
    backoff_delay: float
    backoff_max: float
    timeout: float
    max_concurrency: int
    auto_pause_after: int
    dead_letter: HttpTarget | None


@dataclass(frozen=True)
class SubscriptionRoute:
    key: ResourceKey
    generation: int
    event_type: str
    source: str | None
    paused: bool
    matches: Predicate
    target: HttpTarget
    method: Literal["POST", "PUT", "PATCH"]
    content_mode: Literal["structured", "binary"]
    # Secret material resolved from Secrets: never logged, never written to status.
    auth_header: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    delivery: DeliverySettings | None = None

    def fingerprint(self) -> tuple[Any, ...]:
        """What the delivery side depends on: a change means the dispatcher must update the target."""
        return (
            self.target, self.method, self.content_mode, self.auth_header, self.signing_secret,
            self.delivery, self.paused, self.generation,
        )  # fmt: skip


@dataclass(frozen=True)
class InboundAuthSettings:
    type: str
    credentials: tuple[str, ...] = field(repr=False)
    header: str
    algorithms: tuple[str, ...]
    tolerance_seconds: int
    issuer: str


@dataclass(frozen=True)
class ConsumerRoute:
    key: ResourceKey
    endpoint: str  # normalised: no leading or trailing slash
    auth: InboundAuthSettings
    allowed_networks: tuple[IPNetwork, ...]
    max_body_bytes: int
    mapping: Any | None  # a compiled mapping (openconnector.mapping.CompiledMapping)
    mapping_key: ResourceKey | None
    target_type: Literal["source", "register/schema"] | None
    target: SourceRoute | None
    schema: str | None  # register/schema: the schema part of targetId
    event: EventRoute | None


def normalise_endpoint(endpoint: str) -> str:
    return endpoint.strip("/")


@dataclass(frozen=True)
class RoutingTable:
    version: int
    events_by_type: Mapping[str, EventRoute]
    subscriptions_by_type: Mapping[str, tuple[SubscriptionRoute, ...]]
    wildcard_subscriptions: tuple[SubscriptionRoute, ...]
    consumers_by_endpoint: Mapping[str, ConsumerRoute]
    sources: Mapping[ResourceKey, SourceRoute]
    results: Mapping[ResourceKey, ResourceResult]

    @classmethod
    def empty(cls) -> RoutingTable:
        return cls(0, {}, {}, (), {}, {}, {})

    def match(self, attributes: Mapping[str, Any], data: Any) -> list[SubscriptionRoute]:
        """Subscriptions an event goes to: O(1) by type, then source and filters of the few candidates."""
        candidates: Sequence[SubscriptionRoute] = self.subscriptions_by_type.get(attributes["type"], ())
        if self.wildcard_subscriptions:
            candidates = (*candidates, *self.wildcard_subscriptions)
        source = attributes.get("source")
        return [
            sub
            for sub in candidates
            if not sub.paused and (sub.source is None or sub.source == source) and sub.matches(attributes, data)
        ]

    def subscriptions(self) -> list[SubscriptionRoute]:
        seen = [s for subs in self.subscriptions_by_type.values() for s in subs]
        return seen + list(self.wildcard_subscriptions)

    def consumer(self, endpoint: str) -> ConsumerRoute | None:
        return self.consumers_by_endpoint.get(normalise_endpoint(endpoint))
