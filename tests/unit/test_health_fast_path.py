"""SubscriptionHealth.record_success's steady-state shortcut gives what the general path gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.delivery.health import HealthConfig, HealthReason, SubscriptionHealth


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


class _GeneralPath(SubscriptionHealth):
    """record_success without the shortcut: count, then derive the condition every time."""

    def record_success(self, status_code: int, latency_ms: float, *, retry: bool = False) -> None:
        self._note_attempt(True)
        self.retried += retry
        self.delivered += 1
        self.consecutive_failures = 0
        self._delivery_time = self._clock()
        self._delivery_status = status_code
        self._delivery_latency_ms = latency_ms
        self._changed()


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("success"), st.sampled_from([200, 202, 204]), st.booleans()),
        st.tuples(st.just("failure"), st.sampled_from([None, 500, 503]), st.booleans()),
        st.tuples(st.just("event_failure"), st.none(), st.booleans()),
        st.tuples(st.just("pause"), st.none(), st.booleans()),
        st.tuples(st.just("resume"), st.none(), st.booleans()),
        st.tuples(st.just("reconfigure"), st.integers(1, 6), st.booleans()),
    ),
    max_size=60,
)


def _apply(health: SubscriptionHealth, step: tuple[str, int | None, bool]) -> None:
    kind, value, flag = step
    if kind == "success":
        assert value is not None
        health.record_success(value, 1.5, retry=flag)
    elif kind == "failure":
        health.record_attempt_failure(value, f"HTTP {value}", retry=flag)
    elif kind == "event_failure":
        health.record_event_failure()
    elif kind == "pause":
        health.pause(HealthReason.ENDPOINT_GONE, "gone")
    elif kind == "resume":
        health.resume()
    else:
        assert value is not None
        health.reconfigure(HealthConfig(window=value, min_attempts=min(value, 3), auto_pause_after=4))


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 6), steps=_steps)
def test_the_steady_shortcut_equals_the_general_path(
    window: int, steps: list[tuple[str, int | None, bool]]
) -> None:
    config = HealthConfig(window=window, min_attempts=min(window, 3), auto_pause_after=4)
    fast, general = SubscriptionHealth(config, clock=_Clock()), _GeneralPath(config, clock=_Clock())
    for step in steps:
        _apply(fast, step)
        _apply(general, step)
        assert fast.snapshot() == general.snapshot()
        assert fast.condition == general.condition
        assert fast.success_ratio == general.success_ratio
        assert fast.pause_reason == general.pause_reason


def test_last_delivery_is_reported_with_its_time_status_and_latency() -> None:
    health = SubscriptionHealth(clock=lambda: 1_700_000_000.25)
    assert "lastDelivery" not in health.snapshot()
    health.record_success(204, 12.34567, retry=True)
    assert health.snapshot()["lastDelivery"] == {
        "time": "2023-11-14T22:13:20Z",
        "statusCode": 204,
        "latencyMs": 12.346,
    }
    assert health.retried == 1
