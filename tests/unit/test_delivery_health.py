"""Subscription health and the attempt log (pure, clock injected)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from tests.support.delivery_specs import health_config_from_spec

from openconnector.delivery.attempts import Attempt, AttemptLog, Destination
from openconnector.delivery.health import HealthConfig, HealthReason, SubscriptionHealth

T0 = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fail_event(health: SubscriptionHealth, status: int | None = 503, message: str = "HTTP 503") -> bool:
    health.record_attempt_failure(status, message)
    return health.record_event_failure()


def test_a_new_subscription_is_unknown_with_empty_counters() -> None:
    health = SubscriptionHealth(clock=Clock())
    assert health.snapshot() == {
        "delivered": 0,
        "failed": 0,
        "retried": 0,
        "deadLettered": 0,
        "dropped": 0,
        "consecutiveFailures": 0,
    }
    condition = health.condition.to_dict()
    assert condition == {
        "type": "Healthy",
        "status": "Unknown",
        "reason": "NoDeliveries",
        "message": "no delivery attempts yet",
        "lastTransitionTime": "2026-11-28T08:00:00Z",
    }


def test_a_retried_then_delivered_event_counts_once_with_one_retry() -> None:
    clock = Clock()
    health = SubscriptionHealth(clock=clock)
    health.record_attempt_failure(500, "HTTP 500 Internal Server Error")
    clock.now += 1.5
    health.record_success(200, 12.345, retry=True)
    snap = health.snapshot()
    assert snap["delivered"] == 1
    assert snap["retried"] == 1
    assert snap["failed"] == 0
    assert snap["consecutiveFailures"] == 0
    assert snap["successRatio"] == 0.5
    assert snap["lastDelivery"] == {"time": "2026-11-28T08:00:01Z", "statusCode": 200, "latencyMs": 12.345}
    assert snap["lastError"] == {
        "time": "2026-11-28T08:00:00Z",
        "statusCode": 500,
        "message": "HTTP 500 Internal Server Error",
    }
    json.dumps(snap)  # the status writer patches this as JSON


def test_network_errors_have_no_status_code_in_last_error() -> None:
    health = SubscriptionHealth(clock=Clock())
    health.record_attempt_failure(None, "timeout after 30s")
    assert health.snapshot()["lastError"] == {"time": "2026-11-28T08:00:00Z", "message": "timeout after 30s"}


def test_ratio_below_threshold_turns_unhealthy_with_a_precise_message() -> None:
    clock = Clock()
    health = SubscriptionHealth(HealthConfig(window=10, healthy_ratio=0.8, min_attempts=5), clock=clock)
    for _ in range(5):
        health.record_success(200, 1.0)
    assert health.condition.status == "True"
    assert health.condition.reason == HealthReason.DELIVERY_SUCCEEDING
    clock.now += 60
    for _ in range(8):
        health.record_attempt_failure(503, "HTTP 503 Service Unavailable")
    condition = health.condition
    assert condition.status == "False"
    assert condition.reason == "DeliveryFailing"
    assert condition.message == (
        "success ratio 0.20 < 0.80 over last 10 attempts; last error: HTTP 503 Service Unavailable"
    )
    assert condition.to_dict()["lastTransitionTime"] == "2026-11-28T08:01:00Z"


def test_below_the_minimum_sample_health_is_unknown() -> None:
    # issue 16: "DeliverySucceeding" at 0 % success over 2 attempts; a sample that small says nothing.
    health = SubscriptionHealth(HealthConfig(min_attempts=5), clock=Clock())
    health.record_attempt_failure(500, "HTTP 500")
    health.record_attempt_failure(500, "HTTP 500")
    assert (health.condition.status, health.condition.reason) == ("Unknown", "NotEnoughAttempts")
    assert health.condition.message == (
        "success ratio 0.00 over last 2 attempts; 5 are needed to judge; last error: HTTP 500"
    )
    health.record_success(200, 1.0, retry=True)
    assert (health.condition.status, health.condition.reason) == ("Unknown", "NotEnoughAttempts")
    for _ in range(7):
        health.record_success(200, 1.0)
    assert (health.condition.status, health.condition.reason) == ("True", "DeliverySucceeding")
    assert health.condition.message == "success ratio 0.80 over last 10 attempts"


def test_the_window_rolls_over_old_attempts() -> None:
    health = SubscriptionHealth(HealthConfig(window=4, min_attempts=1), clock=Clock())
    for _ in range(4):
        health.record_attempt_failure(500, "HTTP 500")
    assert health.success_ratio == 0.0
    for _ in range(4):
        health.record_success(200, 1.0)
    assert health.success_ratio == 1.0
    assert health.condition.status == "True"


def test_new_thresholds_before_any_attempt_apply_to_the_first_window() -> None:
    health = SubscriptionHealth(HealthConfig(window=50, min_attempts=1), clock=Clock())
    health.reconfigure(HealthConfig(window=3, min_attempts=1))
    assert health.success_ratio is None
    health.record_attempt_failure(500, "HTTP 500")
    for _ in range(3):
        health.record_success(200, 1.0)
    assert health.success_ratio == 1.0  # the failure rolled out of a window of 3
    assert health.condition.message == "success ratio 1.00 over last 3 attempts"


def test_a_health_record_takes_no_per_instance_dict() -> None:
    """10k subscriptions each carry one: slots keep it small."""
    health = SubscriptionHealth(clock=Clock())
    with pytest.raises(AttributeError):
        health.unexpected = 1  # type: ignore[attr-defined]
    health.reset()
    assert health.snapshot()["delivered"] == 0


def test_transition_time_only_moves_when_status_or_reason_changes() -> None:
    clock = Clock()
    health = SubscriptionHealth(clock=clock)
    health.record_success(200, 1.0)
    first = health.condition.last_transition_time
    clock.now += 100
    health.record_success(200, 1.0)
    assert health.condition.last_transition_time == first


def test_consecutive_failed_events_turn_unhealthy_even_with_a_good_history() -> None:
    health = SubscriptionHealth(HealthConfig(window=50, min_attempts=3), clock=Clock())
    for _ in range(40):
        health.record_success(200, 1.0)
    for _ in range(3):
        fail_event(health, None, "connection refused")
    assert health.consecutive_failures == 3
    assert health.condition.status == "False"
    assert health.condition.reason == "DeliveryFailing"
    assert health.condition.message.startswith("3 consecutive failed events; success ratio 0.93")
    health.record_success(200, 1.0)
    assert health.consecutive_failures == 0
    assert health.condition.to_dict()["status"] == "True"


def test_auto_pause_is_off_by_default() -> None:
    health = SubscriptionHealth(clock=Clock())
    assert not any(fail_event(health) for _ in range(100))
    assert not health.paused


def test_auto_pause_after_n_consecutive_failed_events() -> None:
    health = SubscriptionHealth(HealthConfig(auto_pause_after=3), clock=Clock())
    assert [fail_event(health) for _ in range(4)] == [False, False, True, False]
    assert health.paused
    assert health.condition.status == "False"
    assert health.condition.reason == "AutoPaused"
    assert health.condition.message == "paused after 3 consecutive failed events; last error: HTTP 503"
    health.resume()
    assert not health.paused
    assert health.consecutive_failures == 0
    assert health.condition.reason != "AutoPaused"


def test_410_pauses_with_endpoint_gone_once() -> None:
    health = SubscriptionHealth(clock=Clock())
    assert health.pause(HealthReason.ENDPOINT_GONE, "http://x/ answered 410 Gone")
    assert not health.pause(HealthReason.AUTO_PAUSED, "again")
    assert health.pause_reason == ("EndpointGone", "http://x/ answered 410 Gone")
    assert health.condition.to_dict()["reason"] == "EndpointGone"


def test_drops_are_counted_with_their_reason_in_last_error() -> None:
    health = SubscriptionHealth(clock=Clock())
    health.record_dropped("noDeadLetterSink", "retries exhausted; no dead-letter sink configured", 503)
    health.record_dropped_many(3, "shutdown", "drain deadline passed")
    health.record_dropped_many(0, "shutdown", "nothing")
    snap = health.snapshot()
    assert snap["dropped"] == 4
    assert snap["lastError"] == {
        "time": "2026-11-28T08:00:00Z",
        "message": "dropped 3 (shutdown): drain deadline passed",
    }


def test_reconfigure_keeps_counters_and_the_newest_attempts() -> None:
    health = SubscriptionHealth(HealthConfig(window=10), clock=Clock())
    for _ in range(5):
        health.record_attempt_failure(500, "HTTP 500")
    for _ in range(2):
        health.record_success(200, 1.0)
    health.reconfigure(HealthConfig(window=2))
    assert health.success_ratio == 1.0
    assert health.delivered == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window: must be a positive integer"),
        ({"healthy_ratio": 1.5}, "healthy_ratio: must be between 0 and 1"),
        ({"min_attempts": 0}, "min_attempts: must be a positive integer"),
        ({"auto_pause_after": -1}, "auto_pause_after: must be a non-negative integer"),
    ],
)
def test_health_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HealthConfig(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- attempt log


def attempt(number: int, event_id: str = "e1", **overrides: object) -> Attempt:
    fields: dict[str, object] = {
        "request_id": f"r{number}",
        "event_id": event_id,
        "attempt": number,
        "time": T0 + number,
        "status_code": 503,
        "latency_ms": 1.23456,
        "error": "HTTP 503 Service Unavailable",
        "outcome": "retryable",
    }
    fields.update(overrides)
    return Attempt(**fields)  # type: ignore[arg-type]


def test_attempt_log_is_a_bounded_ring_oldest_first() -> None:
    log = AttemptLog(maxlen=3)
    for number in range(1, 6):
        log.append(attempt(number))
    assert [entry.attempt for entry in log] == [3, 4, 5]
    assert len(log) == 3
    assert log.total == 5
    assert [entry.attempt for entry in log.latest(2)] == [4, 5]
    assert log.latest(0) == []


def test_attempt_log_json_shape() -> None:
    log = AttemptLog()
    log.append(attempt(1, retry_in=0.4))
    log.append(attempt(2, status_code=200, error=None, outcome="success", destination=Destination.SUBSCRIBER))
    log.append(
        attempt(1, event_id="e2", status_code=None, error="timeout", destination=Destination.DEAD_LETTER)
    )
    rendered = log.to_json()
    assert rendered[0] == {
        "requestId": "r1",
        "eventId": "e1",
        "attempt": 1,
        "time": "2026-11-28T08:00:01Z",
        "statusCode": 503,
        "latencyMs": 1.235,
        "error": "HTTP 503 Service Unavailable",
        "outcome": "retryable",
        "destination": "subscriber",
        "retryInSeconds": 0.4,
    }
    assert "retryInSeconds" not in rendered[1]
    assert rendered[2]["destination"] == "deadLetter"
    assert rendered[2]["statusCode"] is None
    assert [entry.attempt for entry in log.for_event("e1")] == [1, 2]
    json.dumps(rendered)


def test_attempt_log_rejects_a_zero_size() -> None:
    with pytest.raises(ValueError, match="maxlen: must be a positive integer"):
        AttemptLog(maxlen=0)


def test_health_config_from_spec() -> None:
    assert health_config_from_spec({}).auto_pause_after is None
    assert health_config_from_spec({"autoPauseAfter": 0}).auto_pause_after is None
    assert health_config_from_spec({"autoPauseAfter": 5}).auto_pause_after == 5
    with pytest.raises(ValueError, match=re.escape("spec.delivery.autoPauseAfter: must be a non-negative")):
        health_config_from_spec({"autoPauseAfter": "5"})


def test_restore_carries_counters_over_from_a_previous_status() -> None:
    health = SubscriptionHealth(clock=Clock())
    health.record_success(200, 1.0)
    health.record_success(200, 1.0)
    health.restore({"delivered": 1, "failed": 7, "deadLettered": 3, "dropped": True, "retried": "9"})
    assert (health.delivered, health.failed, health.dead_lettered, health.dropped, health.retried) == (
        2,
        7,
        3,
        0,
        0,
    )
    unchanged = health.snapshot()
    health.restore({"delivered": 0})  # counters only move up
    assert health.snapshot() == unchanged
