"""Status bodies of every kind and continuing from a stored status (status/bodies.py: pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.delivery.health import HealthReason, SubscriptionHealth
from openconnector.delivery.target import DeliveryTarget
from openconnector.routing.table import ResourceResult, SubscriptionRoute
from openconnector.status.bodies import StatusBook, health_record, restore_health, status_view

T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC).timestamp()
WHEN = "2026-12-01T08:00:00Z"
EARLIER = "2020-01-01T00:00:00Z"
READY_EARLIER = {"type": "Ready", "status": "True", "lastTransitionTime": EARLIER}
SUB = sub_key("shop/notify")
CONSUMER = ResourceKey("Consumer", "shop", "intake")
EVENT = ResourceKey("Event", "shop", "order-paid")
SOURCE = ResourceKey("Source", "shop", "orders-api")


def clock() -> float:
    return T0


def result(key: ResourceKey, *, ready: bool = True, generation: int = 2, **extra: Any) -> ResourceResult:
    reason, message = ("Compiled", "ready") if ready else ("InvalidSpec", "spec.url: not a URL")
    return ResourceResult(key, generation, ready, reason, message, extra=extra)


def route(*, paused: bool = False, generation: int = 2) -> SubscriptionRoute:
    target = DeliveryTarget(key=SUB, url="http://127.0.0.1:9/hook?token=secret")
    return SubscriptionRoute(SUB, generation, "shop.order.paid", None, paused, lambda _a, _d: True, target)


def health() -> SubscriptionHealth:
    return SubscriptionHealth(clock=clock)


def conditions(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in body["conditions"]}


def test_a_routed_subscription_shows_its_lane_health_phase_and_redacted_url() -> None:
    book = StatusBook(clock)
    lane = health()
    lane.record_success(200, 12.0)
    body = book.body(result(SUB), route(), lane)
    assert body["observedGeneration"] == 2
    assert (body["delivered"], body["phase"], body["url"]) == (1, "Active", "http://127.0.0.1:9/hook")
    assert conditions(body) == {"Ready": ("True", "Compiled"), "Healthy": ("Unknown", "NotEnoughAttempts")}
    assert body["conditions"][0]["lastTransitionTime"] == WHEN

    assert book.body(result(SUB), route(paused=True), lane)["phase"] == "Paused"
    lane.pause(HealthReason.ENDPOINT_GONE, "HTTP 410")
    suspended = book.body(result(SUB), route(), lane)
    assert suspended["phase"] == "Suspended"
    assert conditions(suspended)["Healthy"] == ("False", "EndpointGone")


def test_a_subscription_without_a_lane_shows_the_counters_kept_for_it() -> None:
    book = StatusBook(clock)
    stored = {"delivered": 5, "dropped": 1, "phase": "Active", "url": "http://old/", "successRatio": 1.0}
    book.seed(SUB, stored)
    body = book.body(result(SUB, ready=False))
    assert (body["delivered"], body["dropped"]) == (5, 1)
    assert not {"phase", "url", "successRatio"} & body.keys()  # only counters
    assert conditions(body) == {"Ready": ("False", "InvalidSpec")}


def test_kept_counters_continue_in_the_lane_that_appears_and_only_once() -> None:
    book = StatusBook(clock)
    book.seed(SUB, {"delivered": 5, "failed": 2})
    lane = health()
    book.take_kept(route(), lane)
    assert (lane.delivered, lane.failed) == (5, 2)
    assert SUB not in book.kept_subscriptions
    book.take_kept(route(), lane)  # nothing kept any more: nothing counted twice
    assert lane.delivered == 5


def test_a_seed_for_a_routed_subscription_goes_straight_into_its_lane() -> None:
    book = StatusBook(clock)
    lane = health()
    book.seed(SUB, {"delivered": 3, "conditions": [READY_EARLIER]}, route(), lane)
    assert lane.delivered == 3
    assert SUB not in book.kept_subscriptions
    # The stored condition time is kept while the status does not flip.
    assert book.body(result(SUB), route(), lane)["conditions"][0]["lastTransitionTime"] == EARLIER


def test_a_lane_that_goes_away_keeps_its_counters_and_its_suspension() -> None:
    book = StatusBook(clock)
    lane = health()
    lane.record_success(200, 1.0)
    lane.pause(HealthReason.AUTO_PAUSED, "paused after 5 consecutive failed events")
    book.keep(route(), lane)
    kept = book.kept_subscriptions[SUB]
    assert kept == health_record(lane, 2)
    assert (kept["delivered"], kept["phase"], kept["observedGeneration"]) == (1, "Suspended", 2)

    again = health()
    book.take_kept(route(), again)  # same generation: still suspended, for the same reason
    assert again.delivered == 1
    assert again.paused
    assert again.condition.reason == "AutoPaused"


def test_a_suspension_ends_with_a_new_generation_or_an_unknown_reason_reads_as_endpoint_gone() -> None:
    weird = {"type": "Healthy", "status": "False", "reason": "Weird", "message": "x"}
    stored = {"phase": "Suspended", "observedGeneration": 2, "delivered": 4, "conditions": [weird]}
    newer = health()
    restore_health(newer, 3, stored)
    assert newer.delivered == 4
    assert not newer.paused
    same = health()
    restore_health(same, 2, stored)
    assert same.paused
    assert same.condition.reason == "EndpointGone"


def test_consumers_events_and_sources_show_their_counters_and_continue_from_a_seed() -> None:
    book = StatusBook(clock)
    book.seed(CONSUMER, {"received": 4, "forwarded": 3, "rejectedByReason": {"unauthorized": 1}})
    book.seed(EVENT, {"received": 2, "emitted": 9, "refused": 1})
    book.seed(SOURCE, {"requests": 7, "failures": 1})
    book.consumer_stats[CONSUMER].record_received(T0)
    book.event_stats[EVENT].record_published(T0)
    consumer = book.body(result(CONSUMER, url="/webhooks/intake"))
    assert (consumer["received"], consumer["rejected"], consumer["url"]) == (5, 1, "/webhooks/intake")
    assert consumer["lastReceived"] == WHEN
    event = book.body(result(EVENT))
    assert (event["received"], event["emitted"], event["lastEmitted"]) == (2, 10, WHEN)
    assert (book.body(result(SOURCE))["requests"], book.body(result(SOURCE))["failures"]) == (7, 1)


def test_forgetting_a_resource_drops_its_counters_conditions_and_kept_status() -> None:
    book = StatusBook(clock)
    book.seed(EVENT, {"emitted": 9, "conditions": [READY_EARLIER]})
    book.seed(SUB, {"delivered": 5})
    book.forget(EVENT)
    book.forget(SUB)
    assert book.body(result(EVENT))["emitted"] == 0
    assert book.body(result(EVENT))["conditions"][0]["lastTransitionTime"] == WHEN
    assert "delivered" not in book.body(result(SUB, ready=False))


def test_the_status_view_lists_every_resource_sorted_with_its_body() -> None:
    results = [result(SUB), result(CONSUMER), result(EVENT)]
    view = status_view(results, lambda key: {"of": key.name})
    assert [(item["kind"], item["name"], item["status"]) for item in view] == [
        ("Consumer", "intake", {"of": "intake"}),
        ("Event", "order-paid", {"of": "order-paid"}),
        ("EventSubscription", "notify", {"of": "notify"}),
    ]
    assert view[0]["origin"] is None
