"""The hot path's shortcuts keep what users rely on: every metric series, attempt id and health state."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry
from tests.support.keys import sub_key

from openconnector.delivery.attempts import Attempt
from openconnector.delivery.health import HealthConfig, SubscriptionHealth
from openconnector.delivery.outcomes import FinalOutcome
from openconnector.delivery.retry import new_request_id
from openconnector.gateway.metrics import DeliveryMetricsObserver, GatewayMetrics


def _attempt(number: int, status: int | None, latency_ms: float = 12.0) -> Attempt:
    return Attempt(
        request_id=new_request_id(),
        event_id="e-1",
        attempt=number,
        time=0.0,
        status_code=status,
        latency_ms=latency_ms,
        error=None,
        outcome="success",
    )


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_delivery_series_are_bound_once_and_count_every_attempt_and_outcome() -> None:
    metrics = GatewayMetrics()
    observer = DeliveryMetricsObserver(metrics)
    reg = metrics.registry
    observer.on_attempt(sub_key("ns/sub"), _attempt(1, 503))
    observer.on_attempt(sub_key("ns/sub"), _attempt(2, None))
    observer.on_attempt(sub_key("ns/sub"), _attempt(3, 200))
    observer.on_attempt(sub_key("ns/sub"), _attempt(1, 204))
    observer.on_outcome(sub_key("ns/sub"), "e-1", FinalOutcome.DELIVERED, None)
    observer.on_outcome(sub_key("ns/sub"), "e-2", FinalOutcome.DEAD_LETTERED, None)
    sub = {"namespace": "ns", "subscription": "sub"}
    assert _value(reg, "openconnector_delivery_attempts_total", **sub, code="5xx") == 1
    assert _value(reg, "openconnector_delivery_attempts_total", **sub, code="error") == 1
    assert _value(reg, "openconnector_delivery_attempts_total", **sub, code="2xx") == 2
    assert _value(reg, "openconnector_delivery_retries_total", **sub) == 2
    assert _value(reg, "openconnector_delivery_latency_seconds_count", **sub) == 4
    assert _value(reg, "openconnector_deliveries_total", **sub, outcome="delivered") == 1
    assert _value(reg, "openconnector_deliveries_total", **sub, outcome="dead_lettered") == 1


def test_first_attempts_alone_create_no_retry_series_and_forgetting_starts_over() -> None:
    metrics = GatewayMetrics()
    observer = DeliveryMetricsObserver(metrics)
    reg = metrics.registry
    sub = {"namespace": "ns", "subscription": "sub"}
    observer.on_attempt(sub_key("ns/sub"), _attempt(1, 200))
    assert _value(reg, "openconnector_delivery_retries_total", **sub) is None
    metrics.forget_subscription(sub_key("ns/sub"))
    assert _value(reg, "openconnector_delivery_attempts_total", **sub, code="2xx") is None
    observer.on_attempt(sub_key("ns/sub"), _attempt(1, 200))
    assert _value(reg, "openconnector_delivery_attempts_total", **sub, code="2xx") == 1


def test_request_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_steady_state_shortcut_matches_a_full_derivation() -> None:
    config = HealthConfig(window=5, min_attempts=3)
    fast = SubscriptionHealth(config, clock=lambda: 100.0)
    for _ in range(4):
        fast.record_attempt_failure(503, "HTTP 503")
    for _ in range(20):
        fast.record_success(200, 1.0)
    assert fast.delivered == 20
    assert fast.success_ratio == 1.0
    # A health that reaches the same window without the shortcut says exactly the same.
    slow = SubscriptionHealth(config, clock=lambda: 100.0)
    for _ in range(5):
        slow.record_success(200, 1.0)
    assert (fast.condition.status, fast.condition.reason, fast.condition.message) == (
        slow.condition.status,
        slow.condition.reason,
        slow.condition.message,
    )
    assert fast.condition.status == "True"
    fast.record_attempt_failure(500, "HTTP 500")
    assert fast.success_ratio == 0.8
    assert "0.80" in fast.condition.message
