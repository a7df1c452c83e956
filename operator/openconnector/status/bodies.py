"""The status body of every kind, and continuing from a stored status (pure: no aiohttp, no kube I/O).

:class:`StatusBook` holds what this process knows about the status of each resource apart from the
delivery lanes: the condition book and the counters of Consumers, Events and Sources, and the counters
of a subscription kept aside while it is not routed (it stopped compiling, or it was seeded before its
first table). It builds the body of one resource from its compile result and, for a routed
subscription, its route and its lane's health (``delivery/health.py``: counted inline by the delivery
engine, so they stay there). The gateway hands those in; the status writer (``kube/status_writer.py``)
cuts the body into this replica's shard, standalone mode serves it at ``GET /api/v1alpha1/status``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import CONSUMER, EVENT, EVENT_SUBSCRIPTION, SOURCE
from openconnector.delivery.health import HealthReason, SubscriptionHealth
from openconnector.routing.table import ResourceResult, SubscriptionRoute
from openconnector.status.conditions import ConditionBook, ready_condition
from openconnector.status.counters import ConsumerStats, EventStats, SourceStats

__all__ = [
    "SUBSCRIPTION_COUNTERS",
    "SUBSCRIPTION_COUNTER_FIELDS",
    "StatusBook",
    "health_record",
    "restore_health",
    "status_view",
]

#: The delivery counters of a subscription's status.
SUBSCRIPTION_COUNTERS = ("delivered", "failed", "retried", "deadLettered", "dropped", "consecutiveFailures")
#: What of a subscription's status survives a restart or a not-ready spell: its counters and last outcomes.
SUBSCRIPTION_COUNTER_FIELDS = frozenset({*SUBSCRIPTION_COUNTERS, "lastDelivery", "lastError"})


def health_record(health: SubscriptionHealth, generation: int) -> dict[str, Any]:
    """What a lane's health must carry over while its subscription is not routed: its counters and,
    while suspended, why (as a status body says it, so :func:`restore_health` reads it back)."""
    record: dict[str, Any] = dict(health.snapshot())
    if health.paused:
        cond = health.condition
        record["phase"] = "Suspended"
        record["conditions"] = [{"type": "Healthy", "status": "False", "reason": cond.reason,
                                 "message": cond.message}]  # fmt: skip
        record["observedGeneration"] = generation
    return record


def restore_health(health: SubscriptionHealth, generation: int, status: Mapping[str, Any]) -> None:
    """Continue ``health`` from a status body (a previous process's, or a :func:`health_record`)."""
    health.restore(status)
    # Suspended (410, auto-pause) lasts until the spec changes, also across restarts and not-ready spells.
    if status.get("phase") == "Suspended" and status.get("observedGeneration") == generation:
        conditions: list[Mapping[str, Any]] = list(status.get("conditions") or [])
        healthy: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Healthy"), {})
        try:
            reason = HealthReason(healthy.get("reason", HealthReason.ENDPOINT_GONE.value))
        except ValueError:
            reason = HealthReason.ENDPOINT_GONE
        health.pause(reason, str(healthy.get("message") or "suspended before a restart"))


class StatusBook:
    """Conditions and counters of every resource, and the status bodies built from them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.conditions = ConditionBook(clock)
        self.consumer_stats: defaultdict[ResourceKey, ConsumerStats] = defaultdict(ConsumerStats)
        self.event_stats: defaultdict[ResourceKey, EventStats] = defaultdict(EventStats)
        self.source_stats: defaultdict[ResourceKey, SourceStats] = defaultdict(SourceStats)
        # Status of subscriptions that have no lane now, applied to their lane when it appears.
        self.kept_subscriptions: dict[ResourceKey, Mapping[str, Any]] = {}

    def body(
        self,
        result: ResourceResult,
        route: SubscriptionRoute | None = None,
        health: SubscriptionHealth | None = None,
    ) -> dict[str, Any]:
        """The status subresource body of ``result``'s resource. A subscription passes its ``route``
        and its lane's ``health`` while it is routed; without them its kept counters are shown."""
        key = result.key
        conditions = [ready_condition(self.conditions, result)]
        body: dict[str, Any] = {"observedGeneration": result.generation}
        if key.kind == EVENT_SUBSCRIPTION.kind:
            if route is not None and health is not None:
                body.update(health.snapshot())
                cond = health.condition
                conditions.append(
                    self.conditions.condition(
                        key, "Healthy", cond.status, cond.reason, cond.message, result.generation
                    )
                )
                body["phase"] = "Paused" if route.paused else ("Suspended" if health.paused else "Active")
                body["url"] = route.target.redacted_url
            else:
                # Not routed while it does not compile: its counters are kept aside, and still shown.
                kept = self.kept_subscriptions.get(key) or {}
                body.update({k: v for k, v in kept.items() if k in SUBSCRIPTION_COUNTER_FIELDS})
        elif key.kind == CONSUMER.kind:
            body.update(self.consumer_stats[key].snapshot())
            if "url" in result.extra:
                body["url"] = result.extra["url"]
        elif key.kind == EVENT.kind:
            body.update(self.event_stats[key].snapshot())
        elif key.kind == SOURCE.kind:
            body.update(self.source_stats[key].snapshot())
        body["conditions"] = conditions
        return body

    def seed(
        self,
        key: ResourceKey,
        status: Mapping[str, Any],
        route: SubscriptionRoute | None = None,
        health: SubscriptionHealth | None = None,
    ) -> None:
        """Continue from the status a previous process wrote, so a restart does not reset counters. A
        routed subscription (``route`` and ``health`` given) continues in its lane; one without a lane
        yet keeps the status until :meth:`take_kept` hands it to its lane."""
        self.conditions.seed(key, list(status.get("conditions") or []))
        if key.kind == EVENT_SUBSCRIPTION.kind:
            if route is not None and health is not None:
                restore_health(health, route.generation, status)
            else:
                self.kept_subscriptions[key] = status
        elif key.kind == CONSUMER.kind:
            self.consumer_stats[key].seed(status)
        elif key.kind == EVENT.kind:
            self.event_stats[key].seed(status)
        elif key.kind == SOURCE.kind:
            self.source_stats[key].seed(status)

    def keep(self, route: SubscriptionRoute, health: SubscriptionHealth) -> None:
        """A subscription loses its lane but stays known (it stopped compiling): keep its counters."""
        self.kept_subscriptions[route.key] = health_record(health, route.generation)

    def take_kept(self, route: SubscriptionRoute, health: SubscriptionHealth) -> None:
        """A subscription got a lane: what was kept for it continues there."""
        kept = self.kept_subscriptions.pop(route.key, None)
        if kept is not None:
            restore_health(health, route.generation, kept)

    def forget(self, key: ResourceKey) -> None:
        """A deleted resource takes its counters and conditions along: one re-created under the same
        name (a new object in Kubernetes) starts from zero."""
        self.conditions.forget(key)
        for stats in (self.consumer_stats, self.event_stats, self.source_stats):
            stats.pop(key, None)
        self.kept_subscriptions.pop(key, None)


def status_view(
    results: Iterable[ResourceResult], body_of: Callable[[ResourceKey], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """Every resource with its status, sorted by kind, namespace and name: ``GET /api/v1alpha1/status``
    (standalone mode's ``kubectl get``)."""
    return [
        {
            "kind": result.key.kind,
            "namespace": result.key.namespace,
            "name": result.key.name,
            "origin": result.origin or None,
            "status": body_of(result.key),
        }
        for result in sorted(results, key=lambda r: (r.key.kind, r.key.namespace, r.key.name))
    ]
