"""The routing table: an immutable snapshot of everything the gateway routes by.

A new table is compiled whenever a resource or Secret changes and swapped in atomically (one attribute
assignment). Requests and deliveries that started on the old table keep their reference to it, so they
finish on the snapshot they began with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from openconnector.consumers.allow_list import IpAllowList
from openconnector.consumers.verifiers import InboundVerifier
from openconnector.delivery.target import DeliveryTarget
from openconnector.filters.dialects import Predicate
from openconnector.resources import FieldProblem, ResourceKey

DataValidator = Callable[[Any], list[str]]


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where a Source is: its location, the headers (auth included) and timeout of every request to it."""

    url: str
    headers: Mapping[str, str]
    timeout: float


@dataclass(frozen=True, slots=True)
class SourceRoute:
    key: ResourceKey
    type: Literal["api", "register"]
    target: SourceLocation
    register: str


@dataclass(frozen=True, slots=True)
class EventRoute:
    key: ResourceKey
    type: str
    source: str
    profile: Literal["nl-gov", "cloudevents"]
    enabled: bool
    dataschema: str | None
    # Validates data against the Event's JSON Schema; None when the Event declares none.
    validate_data: DataValidator | None


@dataclass(frozen=True, slots=True)
class SubscriptionRoute:
    key: ResourceKey
    generation: int
    event_type: str
    source: str | None
    paused: bool
    matches: Predicate
    # Everything the delivery engine needs, secrets included (hidden from repr, never logged).
    target: DeliveryTarget
    style: str = "push"  # "pull": stored for GET …/pull, never delivered
    # No filters (``matches`` is true for every event): RoutingTable.match need not call it.
    unfiltered: bool = False

    @property
    def target_key(self) -> ResourceKey:
        """The subscription's key on the delivery bus: its own resource key."""
        return self.target.key


@dataclass(frozen=True, slots=True)
class ConsumerRoute:
    key: ResourceKey
    endpoint: str  # normalised: no leading or trailing slash
    verifier: InboundVerifier  # the auth block, credentials resolved from Secrets and compiled once
    allow_list: IpAllowList  # allowedIPs
    max_body_bytes: int
    mapping: Any | None  # a compiled mapping (openconnector.mapping.CompiledMapping)
    mapping_key: ResourceKey | None
    target_type: Literal["source", "register/schema"] | None
    target: SourceRoute | None
    schema: str | None  # register/schema: the schema part of targetId
    event: EventRoute | None


# Distinct (namespace, type, source) triples whose candidates one table remembers.
_MATCH_CACHE_ENTRIES = 4096


def normalise_endpoint(endpoint: str) -> str:
    return endpoint.strip("/")


@dataclass(frozen=True)
class RoutingTable:
    """Events are published in a namespace and reach only that namespace's subscriptions (a namespace is
    a broker, as in Knative): a tenant cannot subscribe to another namespace's events."""

    version: int
    # Per type, the oldest enabled Event defining it in any namespace (governs the shared /events).
    events_by_type: Mapping[str, EventRoute]
    # Per (namespace, type): the enabled Event defining the type in that namespace.
    events_by_namespace_type: Mapping[tuple[str, str], EventRoute]
    subscriptions_by_namespace_type: Mapping[tuple[str, str], tuple[SubscriptionRoute, ...]]
    wildcard_subscriptions: Mapping[str, tuple[SubscriptionRoute, ...]]  # per namespace: eventType "*"
    consumers_by_endpoint: Mapping[str, ConsumerRoute]
    sources: Mapping[ResourceKey, SourceRoute]
    results: Mapping[ResourceKey, ResourceResult]
    # Secrets and ConfigMaps some resource refers to (found or not): a change to one means a recompile.
    referenced: frozenset[ResourceKey] = frozenset()

    @classmethod
    def empty(cls) -> RoutingTable:
        return cls(0, {}, {}, {}, {}, {}, {}, {})

    def match(self, namespace: str, attributes: Mapping[str, Any], data: Any) -> list[SubscriptionRoute]:
        """Subscriptions an event published in ``namespace`` goes to: O(1) by (namespace, type), then
        source and filters of the few candidates."""
        type_ = attributes["type"]
        source = attributes.get("source")
        if type(type_) is not str or type(source) is not str:
            return self._match_all_of(self._candidates(namespace, type_, source), attributes, data)
        key = (namespace, type_, source)
        candidates = self._match_cache.get(key)
        if candidates is None:
            # What does not depend on the event beyond (namespace, type, source), worked out once per
            # table; the table is immutable, so a new table starts with an empty cache. Bounded: senders
            # choose sources freely.
            candidates = self._candidates(namespace, type_, source)
            if len(self._match_cache) < _MATCH_CACHE_ENTRIES:
                self._match_cache[key] = candidates
        if type(candidates) is list:  # every one unfiltered
            return candidates.copy()
        return self._match_all_of(candidates, attributes, data)

    @staticmethod
    def _match_all_of(
        candidates: Sequence[SubscriptionRoute], attributes: Mapping[str, Any], data: Any
    ) -> list[SubscriptionRoute]:
        return [sub for sub in candidates if sub.unfiltered or sub.matches(attributes, data)]

    def _candidates(self, namespace: str, type_: Any, source: Any) -> Sequence[SubscriptionRoute]:
        """The unpaused subscriptions of (namespace, type) and of any type whose source matches: a list
        when none has filters (they all match), else a tuple whose filters are still to be run."""
        candidates: Sequence[SubscriptionRoute] = self.subscriptions_by_namespace_type.get(
            (namespace, type_), ()
        )
        wildcard = self.wildcard_subscriptions.get(namespace)
        if wildcard:
            candidates = (*candidates, *wildcard)
        found = [sub for sub in candidates if not sub.paused and (sub.source is None or sub.source == source)]
        return found if all(sub.unfiltered for sub in found) else tuple(found)

    @functools.cached_property
    def _match_cache(self) -> dict[tuple[str, str, str], Sequence[SubscriptionRoute]]:
        return {}

    def namespaces_defining(self, event_type: str) -> tuple[str, ...]:
        """Namespaces with an enabled Event of this type: where the shared /events publishes it."""
        return self.namespaces_defining_by_type.get(event_type, ())

    @functools.cached_property
    def namespaces_defining_by_type(self) -> Mapping[str, tuple[str, ...]]:
        """:meth:`namespaces_defining` of every defined type (the publish path reads it without a call)."""
        return self._namespaces_by_type[0]

    def namespaces_subscribing(self, event_type: str) -> tuple[str, ...]:
        """Namespaces with a subscription to this type (for undefined types, with --allow-unknown-types)."""
        subscribing = self._namespaces_by_type[1].get(event_type, ())
        return tuple(sorted({*subscribing, *self.wildcard_subscriptions}))

    @functools.cached_property
    def _namespaces_by_type(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        # Built once per table, on first use, so the per-event lookups are O(1).
        defining: dict[str, list[str]] = {}
        for namespace, type_ in self.events_by_namespace_type:
            defining.setdefault(type_, []).append(namespace)
        subscribing: dict[str, list[str]] = {}
        for namespace, type_ in self.subscriptions_by_namespace_type:
            subscribing.setdefault(type_, []).append(namespace)
        return (
            {t: tuple(sorted(n)) for t, n in defining.items()},
            {t: tuple(sorted(n)) for t, n in subscribing.items()},
        )

    def subscriptions(self) -> list[SubscriptionRoute]:
        seen = [s for subs in self.subscriptions_by_namespace_type.values() for s in subs]
        return seen + [s for subs in self.wildcard_subscriptions.values() for s in subs]

    def consumer(self, endpoint: str) -> ConsumerRoute | None:
        consumers = self.consumers_by_endpoint
        # The keys are normalised, so a key equal to ``endpoint`` is its normal form already: most requests
        # name it so, and are found without normalising.
        found = consumers.get(endpoint)
        return found if found is not None else consumers.get(normalise_endpoint(endpoint))
