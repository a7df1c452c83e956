"""Session 5: /events counts into series bound once per gateway; scrapes read as with inc_of/child."""

from __future__ import annotations

from prometheus_client import generate_latest

from openconnector.gateway import events
from openconnector.gateway.metrics import GatewayMetrics


def _count_bound(metrics: GatewayMetrics, mode: str) -> None:
    series = events._series_of(metrics)
    # As the handler counts: added to the bound plain series' value.
    (series.ingress_bytes or series.bind_ingress_bytes()).value += 100
    (series.parse_seconds.get(mode) or series.bind_parse_seconds(mode)).observe(0.00003)
    (series.received.get(mode) or series.bind_received(mode)).value += 2


def _count_looked_up(metrics: GatewayMetrics, mode: str) -> None:
    metrics.inc_of(metrics.ingress_bytes, "/events")(100)
    metrics.child(metrics.parse_seconds, mode).observe(0.00003)
    metrics.inc_of(metrics.events_received, mode)(2)


def _samples(metrics: GatewayMetrics) -> list[str]:
    # _created stamps differ between two registries; everything else must match
    lines = generate_latest(metrics.registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_bound_series_count_what_the_looked_up_ones_count() -> None:
    bound, looked_up = GatewayMetrics(), GatewayMetrics()
    for mode in ["binary", "structured", "binary", "batch", "binary"]:
        _count_bound(bound, mode)
        _count_looked_up(looked_up, mode)
    assert _samples(bound) == _samples(looked_up)
    assert events._series_of(bound).received["binary"] is bound.child(bound.events_received, "binary")


def test_a_series_appears_only_once_counted() -> None:
    metrics = GatewayMetrics()
    events._series_of(metrics)
    text = generate_latest(metrics.registry).decode()
    assert 'openconnector_events_received_total{mode="binary"}' not in text
    assert 'endpoint="/events"' not in text
    _count_bound(metrics, "binary")
    text = generate_latest(metrics.registry).decode()
    assert 'openconnector_events_received_total{mode="binary"} 2.0' in text
    assert 'openconnector_events_received_total{mode="structured"}' not in text


def test_alternating_gateways_each_count_their_own() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    _count_bound(first, "binary")
    _count_bound(second, "binary")
    _count_bound(first, "binary")
    assert (
        'openconnector_events_received_total{mode="binary"} 4.0' in generate_latest(first.registry).decode()
    )
    assert (
        'openconnector_events_received_total{mode="binary"} 2.0' in generate_latest(second.registry).decode()
    )
