"""Delivery health of one subscription: counters, last delivery/error, success ratio, condition.

Pure and clock-injected: the engine calls ``record_*``; a status writer calls :meth:`snapshot` and
:attr:`condition` (and compares bodies to skip writes that change nothing).

Counting model (every submitted event ends in exactly one of delivered / deadLettered / dropped):

* ``delivered``: events the subscriber accepted.
* ``failed``: events whose delivery to the subscriber ended unsuccessfully (retries exhausted, a
  non-retryable answer, 410, or the target was paused). Each then goes to the dead-letter sink.
* ``retried``: retry attempts made (attempts after an event's first).
* ``deadLettered``: failed events the dead-letter sink accepted.
* ``dropped``: events lost, each with a reason: no dead-letter sink, dead-lettering failed, queue
  full, shutdown or target removed.
* ``consecutiveFailures``: failed events in a row (reset by a delivered one).
* ``successRatio``: share of successful *attempts* among the last ``window`` attempts.

``Healthy`` condition: ``Unknown``/``NoDeliveries`` before any attempt; ``False`` with reason
``EndpointGone`` (410) or ``AutoPaused`` (``auto_pause_after`` consecutive failed events) while paused;
``False``/``DeliveryFailing`` when the ratio is below ``healthy_ratio`` over at least ``min_attempts``
attempts, or ``consecutiveFailures`` reached ``min_attempts`` (a quiet endpoint that is down);
``Unknown``/``NotEnoughAttempts`` while the window holds fewer than ``min_attempts`` attempts (a ratio
over two attempts says nothing, either way); otherwise ``True``/``DeliverySucceeding``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

from openconnector.status.timefmt import rfc3339

__all__ = [
    "ConditionStatus",
    "HealthCondition",
    "HealthConfig",
    "HealthReason",
    "SubscriptionHealth",
    "rfc3339",
]

ConditionStatus = Literal["True", "False", "Unknown"]


class HealthReason(StrEnum):
    NO_DELIVERIES = "NoDeliveries"
    NOT_ENOUGH_ATTEMPTS = "NotEnoughAttempts"
    DELIVERY_SUCCEEDING = "DeliverySucceeding"
    DELIVERY_FAILING = "DeliveryFailing"
    ENDPOINT_GONE = "EndpointGone"
    AUTO_PAUSED = "AutoPaused"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Thresholds; ``auto_pause_after`` = None (or 0) never pauses on failures alone."""

    window: int = 50
    healthy_ratio: float = 0.8
    min_attempts: int = 5
    auto_pause_after: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window: must be a positive integer, got {self.window!r}")
        if not 0.0 <= self.healthy_ratio <= 1.0:
            raise ValueError(f"healthy_ratio: must be between 0 and 1, got {self.healthy_ratio!r}")
        if (
            isinstance(self.min_attempts, bool)
            or not isinstance(self.min_attempts, int)
            or self.min_attempts < 1
        ):
            raise ValueError(f"min_attempts: must be a positive integer, got {self.min_attempts!r}")
        pause = self.auto_pause_after
        if pause is not None and (isinstance(pause, bool) or not isinstance(pause, int) or pause < 0):
            raise ValueError(f"auto_pause_after: must be a non-negative integer or None, got {pause!r}")


@dataclass(frozen=True, slots=True)
class HealthCondition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: float

    def to_dict(self) -> dict[str, str]:
        """The Kubernetes condition shape (camelCase)."""
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": rfc3339(self.last_transition_time),
        }


_COUNTER_KEYS = (
    ("delivered", "delivered"),
    ("failed", "failed"),
    ("retried", "retried"),
    ("dead_lettered", "deadLettered"),
    ("dropped", "dropped"),
    ("consecutive_failures", "consecutiveFailures"),
)


# A named tuple: immutable like a frozen dataclass, and built in a third of the time. (The last
# delivery, written once per delivered event, is three plain slots: cheaper still.)
class _LastError(NamedTuple):
    time: float
    status_code: int | None
    message: str


class SubscriptionHealth:
    """Mutable health record of one subscription (one delivery target).

    One exists per installed subscription, most of which may never deliver: slots, and the attempt
    window is only allocated on the first attempt.
    """

    __slots__ = (
        "_clock",
        "_condition",
        "_config",
        "_delivery_latency_ms",
        "_delivery_status",
        "_delivery_time",
        "_last_error",
        "_paused",
        "_successes",
        "_window",
        "consecutive_failures",
        "dead_lettered",
        "delivered",
        "dropped",
        "failed",
        "retried",
    )

    CONDITION_TYPE = "Healthy"

    def __init__(self, config: HealthConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config or HealthConfig()
        self._clock = clock
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.consecutive_failures = 0
        self._window: deque[bool] | None = None  # outcomes of the last attempts, from the first one
        self._successes = 0  # True entries in the window, so the ratio needs no sum per attempt
        # The last delivery (None: none yet): its time, status code and latency.
        self._delivery_time: float | None = None
        self._delivery_status = 0
        self._delivery_latency_ms = 0.0
        self._last_error: _LastError | None = None
        self._paused: tuple[HealthReason, str] | None = None
        self._condition = HealthCondition(
            self.CONDITION_TYPE, "Unknown", HealthReason.NO_DELIVERIES, "no delivery attempts yet", clock()
        )

    # ----------------------------------------------------------------------------------- queries

    @property
    def config(self) -> HealthConfig:
        return self._config

    @property
    def paused(self) -> bool:
        return self._paused is not None

    @property
    def pause_reason(self) -> tuple[str, str] | None:
        """(reason, message) while paused."""
        return None if self._paused is None else (self._paused[0].value, self._paused[1])

    @property
    def success_ratio(self) -> float | None:
        window = self._window
        if not window:
            return None
        return self._successes / len(window)

    @property
    def condition(self) -> HealthCondition:
        return self._condition

    def snapshot(self) -> dict[str, object]:
        """The CR status fields (camelCase). Keys with no value yet are left out."""
        result: dict[str, object] = {
            "delivered": self.delivered,
            "failed": self.failed,
            "retried": self.retried,
            "deadLettered": self.dead_lettered,
            "dropped": self.dropped,
            "consecutiveFailures": self.consecutive_failures,
        }
        ratio = self.success_ratio
        if ratio is not None:
            result["successRatio"] = round(ratio, 4)
        if self._delivery_time is not None:
            result["lastDelivery"] = {
                "time": rfc3339(self._delivery_time),
                "statusCode": self._delivery_status,
                "latencyMs": round(self._delivery_latency_ms, 3),
            }
        if self._last_error is not None:
            error: dict[str, object] = {
                "time": rfc3339(self._last_error.time),
                "message": self._last_error.message,
            }
            if self._last_error.status_code is not None:
                error["statusCode"] = self._last_error.status_code
            result["lastError"] = error
        return result

    # ------------------------------------------------------------------------------------ events

    def record_success(self, status_code: int, latency_ms: float, *, retry: bool = False) -> None:
        """An attempt the subscriber accepted: the event is delivered."""
        window = self._window
        # Healthy with a full window whose oldest entry is a success too: ratio, condition and its
        # message stay exactly as they are, so there is nothing to derive (the steady state).
        if (
            window is not None
            and len(window) == window.maxlen
            and window[0]
            and self._condition.status == "True"
            and self._paused is None
        ):
            # _note_attempt inlined: a success replaces a success, so the success count stays.
            window.append(True)
            steady = True
        else:
            self._note_attempt(True)
            steady = False
        if retry:
            self.retried += 1
        self.delivered += 1
        self.consecutive_failures = 0
        self._delivery_time = self._clock()
        self._delivery_status = status_code
        self._delivery_latency_ms = latency_ms
        if not steady:
            self._changed()

    def record_attempt_failure(self, status_code: int | None, message: str, *, retry: bool = False) -> None:
        """A failed attempt (it may be retried); ``retry`` says whether it was itself a retry."""
        self._note_attempt(False)
        self.retried += retry
        self._last_error = _LastError(self._clock(), status_code, message)
        self._changed()

    def record_event_failure(self) -> bool:
        """An event's delivery to the subscriber ended unsuccessfully; True if this just auto-paused it."""
        self.failed += 1
        self.consecutive_failures += 1
        limit = self._config.auto_pause_after
        paused_now = False
        if limit and self.consecutive_failures >= limit and self._paused is None:
            last = f"; last error: {self._last_error.message}" if self._last_error else ""
            self._paused = (
                HealthReason.AUTO_PAUSED,
                f"paused after {self.consecutive_failures} consecutive failed events{last}",
            )
            paused_now = True
        self._changed()
        return paused_now

    def record_dead_lettered(self) -> None:
        self.dead_lettered += 1
        self._changed()

    def record_dropped(self, reason: str, message: str, status_code: int | None = None) -> None:
        """An event lost; ``reason`` is a short code, ``message`` says why (no secrets)."""
        self.dropped += 1
        self._last_error = _LastError(self._clock(), status_code, f"dropped ({reason}): {message}")
        self._changed()

    def record_dropped_many(self, count: int, reason: str, message: str) -> None:
        """``count`` events lost at once (shutdown, removal): one lastError."""
        if count <= 0:
            return
        self.dropped += count
        self._last_error = _LastError(self._clock(), None, f"dropped {count} ({reason}): {message}")
        self._changed()

    def pause(self, reason: HealthReason, message: str) -> bool:
        """Stop delivering (410 → EndpointGone); True if this paused it (False if already paused)."""
        if self._paused is not None:
            return False
        self._paused = (reason, message)
        self._changed()
        return True

    def restore(self, status: Mapping[str, object]) -> None:
        """Carry counters over from a previous process's CR status (camelCase, as :meth:`snapshot`).

        Counters only move up (a stale status never lowers them); unknown or non-integer fields are
        ignored.
        """
        changed = False
        for attribute, key in _COUNTER_KEYS:
            value = status.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > getattr(self, attribute):
                setattr(self, attribute, value)
                changed = True
        if changed:
            self._changed()

    def reset(self) -> None:
        """Start over (the subscription was deleted and re-created under the same name)."""
        self.__init__(self._config, clock=self._clock)  # type: ignore[misc]  # one place sets the fields
        self._changed()

    def reconfigure(self, config: HealthConfig) -> None:
        """Apply new thresholds, keeping counters and the newest attempts that fit the new window."""
        self._config = config
        if self._window is not None:
            self._window = deque(self._window, maxlen=config.window)
            self._successes = sum(self._window)
        self._changed()

    def resume(self) -> None:
        """Deliver again (the subscription's spec changed): clears the pause and the failure streak."""
        if self._paused is None and self.consecutive_failures == 0:
            return
        self._paused = None
        self.consecutive_failures = 0
        self._changed()

    # ---------------------------------------------------------------------------------- internal

    def _note_attempt(self, succeeded: bool) -> None:
        window = self._window
        if window is None:
            window = self._window = deque(maxlen=self._config.window)
        if len(window) == window.maxlen:
            self._successes -= window[0]
        window.append(succeeded)
        self._successes += succeeded

    def _changed(self) -> None:
        status, reason, message = self._derive()
        if (status, reason) != (self._condition.status, self._condition.reason):
            self._condition = HealthCondition(self.CONDITION_TYPE, status, reason, message, self._clock())
        elif message != self._condition.message:
            self._condition = HealthCondition(
                self.CONDITION_TYPE, status, reason, message, self._condition.last_transition_time
            )

    def _derive(self) -> tuple[ConditionStatus, str, str]:
        if self._paused is not None:
            return "False", self._paused[0].value, self._paused[1]
        ratio = self.success_ratio
        attempts = len(self._window) if self._window else 0
        if ratio is None:
            if self.consecutive_failures == 0 and self._last_error is None:
                return "Unknown", HealthReason.NO_DELIVERIES.value, "no delivery attempts yet"
            ratio_text = "no attempts"
        else:
            ratio_text = f"success ratio {ratio:.2f} over last {attempts} attempts"
        cfg = self._config
        last_error = f"; last error: {self._last_error.message}" if self._last_error else ""
        if ratio is not None and attempts >= cfg.min_attempts and ratio < cfg.healthy_ratio:
            return (
                "False",
                HealthReason.DELIVERY_FAILING.value,
                f"success ratio {ratio:.2f} < {cfg.healthy_ratio:.2f} over last {attempts} "
                f"attempts{last_error}",
            )
        if self.consecutive_failures >= cfg.min_attempts:
            return (
                "False",
                HealthReason.DELIVERY_FAILING.value,
                f"{self.consecutive_failures} consecutive failed events; {ratio_text}{last_error}",
            )
        if ratio is None:
            return "Unknown", HealthReason.NO_DELIVERIES.value, f"no delivery attempts yet{last_error}"
        if attempts < cfg.min_attempts:
            return (
                "Unknown",
                HealthReason.NOT_ENOUGH_ATTEMPTS.value,
                f"{ratio_text}; {cfg.min_attempts} are needed to judge{last_error}",
            )
        return "True", HealthReason.DELIVERY_SUCCEEDING.value, ratio_text
