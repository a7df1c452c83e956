"""The hot path's bound counters add to the same series ``child.inc`` does, as /metrics shows them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION
from openconnector.gateway.metrics import GatewayMetrics, counter_inc


def _sample(registry: CollectorRegistry, line_start: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_a_bound_counter_adds_to_its_series() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "things", ["kind"], registry=registry)
    inc = counter_inc(counter.labels("a"))
    inc(1)
    inc(2.5)
    counter.labels("a").inc()
    assert _sample(registry, 'things_total{kind="a"}') == 4.5


def test_without_the_library_internals_it_falls_back_to_inc() -> None:
    class Plain:
        def __init__(self) -> None:
            self.total = 0.0

        def inc(self, amount: float = 1) -> None:
            self.total += amount

    child = Plain()
    counter_inc(child)(3)  # type: ignore[arg-type]
    assert child.total == 3


def test_inc_of_is_cached_and_forgotten_with_its_subscription() -> None:
    metrics = GatewayMetrics()
    inc = metrics.inc_of(metrics.webhooks_forwarded, "ns", "sub")
    assert metrics.inc_of(metrics.webhooks_forwarded, "ns", "sub") is inc
    inc(2)
    assert _sample(metrics.registry, 'openconnector_webhooks_forwarded_total{consumer="sub"') == 2
    series = metrics.subscription(ResourceKey(EVENT_SUBSCRIPTION.kind, "ns", "sub"))
    series.outcome("delivered")
    assert _sample(metrics.registry, 'openconnector_deliveries_total{namespace="ns"') == 1
    metrics.forget_subscription(ResourceKey(EVENT_SUBSCRIPTION.kind, "ns", "sub"))
    assert metrics.inc_of(metrics.webhooks_forwarded, "ns", "sub") is not inc
    assert metrics.subscription(ResourceKey(EVENT_SUBSCRIPTION.kind, "ns", "sub")) is not series
    assert "openconnector_deliveries_total{" not in generate_latest(metrics.registry).decode()
