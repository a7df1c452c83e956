"""Retry policy, response classification and Retry-After parsing: pure functions, no I/O.

Decisions where the standards leave room (see docs of each function):

* Defaults follow Knative's delivery spec (10 retries, exponential, 0.2 s) plus ``backoff_max`` = 300 s
  (Knative users ask for it, knative/eventing#9278) and OpenConnector's 30 s request timeout.
* Backoff uses *full jitter*: the wait is uniform in [0, min(backoff_max, base)], where base is
  ``delay * 2**n`` (exponential) or ``delay * n`` (linear) for the n-th retry (n starts at 1), as in
  Knative. Jitter keeps many gateways from retrying a recovering endpoint in lock-step.
* Any 2xx is success. The webhook spec tells *receivers* to answer 200/201/202/204; a receiver that
  answers another 2xx has still accepted the event, and retrying it would deliver it twice.
* 3xx is a failure that is never followed (the webhook spec), and is not retried: a redirect does not
  go away on its own.
* 4xx is not retried, except 408 (timeout) and 429 (rate limited). 410 means the endpoint is gone: stop
  delivering to it (pause the subscription).
* 5xx, timeouts and connection errors are retried.
* 429 and 503 honour ``Retry-After`` (delta-seconds or HTTP-date). The wait is the larger of the backoff
  and Retry-After, and Retry-After is capped by ``retry_after_max`` (default: ``backoff_max``) so a
  receiver cannot park a delivery worker for hours; this is the cap Knative's ``retryAfterMax`` applies.
"""

from __future__ import annotations

import email.utils
import math
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_BACKOFF_DELAY",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "RETRY_AFTER_STATUSES",
    "BackoffPolicy",
    "DeliveryPolicy",
    "Outcome",
    "Rng",
    "backoff_delay",
    "classify",
    "parse_retry_after",
    "validate_http_url",
]

DEFAULT_RETRIES = 10
DEFAULT_BACKOFF_DELAY = 0.2
DEFAULT_BACKOFF_MAX = 300.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_DEAD_LETTER_RETRIES = 3

#: Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
_RETRYABLE_4XX = frozenset({408, 429})
_RETRY_AFTER_MAX_DIGITS = 10
_RETRY_AFTER_HUGE = float(10**_RETRY_AFTER_MAX_DIGITS - 1)
# An IMF-fixdate is 29 characters and the obsolete forms are shorter than 40; longer is garbage.
_HTTP_DATE_MAX_LENGTH = 64


class BackoffPolicy(StrEnum):
    EXPONENTIAL = "exponential"
    LINEAR = "linear"


class Outcome(StrEnum):
    """What one delivery attempt means for the event."""

    SUCCESS = "success"
    RETRYABLE = "retryable"  # transient: try again after a backoff
    PERMANENT = "permanent"  # retrying will not help: dead-letter now
    GONE = "gone"  # 410: dead-letter now and stop delivering to this target


class Rng(Protocol):
    """The part of ``random.Random`` the backoff needs (injectable for tests)."""

    def uniform(self, a: float, b: float, /) -> float: ...


def validate_http_url(url: str, field: str) -> None:
    """Raise ValueError naming ``field`` unless ``url`` is an absolute http(s) URL without credentials."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as error:
        raise ValueError(f"{field}: {url!r} is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{field}: must be an absolute http:// or https:// URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"{field}: URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in URLs end up in logs and status; they belong in a Secret.
        raise ValueError(
            f"{field}: URL must not contain credentials (user:password@); use auth with a Secret"
        )


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try one event against one target. All durations are seconds.

    ``retries`` counts attempts *after* the first one (Knative's ``retry``), so an event is tried at most
    ``retries + 1`` times. ``dead_letter`` is an http(s) URL or None (then exhausted events are dropped,
    counted and logged at ERROR). ``dead_letter_retries`` bounds the retries towards the dead-letter sink.
    ``retry_after_max`` caps Retry-After; None means ``backoff_max``.
    """

    retries: int = DEFAULT_RETRIES
    backoff_policy: BackoffPolicy = BackoffPolicy.EXPONENTIAL
    backoff_delay: float = DEFAULT_BACKOFF_DELAY
    backoff_max: float = DEFAULT_BACKOFF_MAX
    timeout: float = DEFAULT_TIMEOUT
    dead_letter: str | None = None
    dead_letter_retries: int = DEFAULT_DEAD_LETTER_RETRIES
    retry_after_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("retries", "dead_letter_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")
        if not isinstance(self.backoff_policy, BackoffPolicy):
            try:
                object.__setattr__(self, "backoff_policy", BackoffPolicy(self.backoff_policy))
            except ValueError:
                raise ValueError(
                    f"backoff_policy: must be 'exponential' or 'linear', got {self.backoff_policy!r}"
                ) from None
        for name in ("backoff_delay", "backoff_max", "timeout"):
            _require_positive(name, getattr(self, name))
        if self.retry_after_max is not None:
            _require_positive("retry_after_max", self.retry_after_max)
        if self.backoff_max < self.backoff_delay:
            raise ValueError(
                f"backoff_max: {self.backoff_max:g}s is smaller than backoff_delay {self.backoff_delay:g}s"
            )
        if self.dead_letter is not None:
            validate_http_url(self.dead_letter, "dead_letter")

    @property
    def max_retry_after(self) -> float:
        return self.backoff_max if self.retry_after_max is None else self.retry_after_max


def _require_positive(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")


def backoff_delay(policy: DeliveryPolicy, retry: int, rng: Rng) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry), with full jitter."""
    if retry < 1:
        raise ValueError(f"retry: must be >= 1, got {retry}")
    if policy.backoff_policy is BackoffPolicy.EXPONENTIAL:
        # Cap the exponent so 2**n cannot overflow a float for absurd retry counts.
        base = policy.backoff_delay * 2.0 ** min(retry, 1000)
    else:
        base = policy.backoff_delay * retry
    ceiling = min(base, policy.backoff_max)
    return min(max(rng.uniform(0.0, ceiling), 0.0), ceiling)


def classify(status: int | None, error: str | None = None) -> Outcome:
    """Classify one attempt by its HTTP status, or by the transport error when there is no status."""
    if status is None:
        # No response at all: timeout, refused, reset, DNS. All transient from where we stand.
        return Outcome.RETRYABLE if error is not None else Outcome.PERMANENT
    if 200 <= status <= 299:
        return Outcome.SUCCESS
    if status == 410:
        return Outcome.GONE
    if status in _RETRYABLE_4XX or 500 <= status <= 599:
        return Outcome.RETRYABLE
    return Outcome.PERMANENT  # 1xx (should not reach us), 3xx (never followed), other 4xx, garbage


def parse_retry_after(value: str | None, now: float, maximum: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or None when absent or unparseable.

    ``value`` is delta-seconds (``"120"``) or an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``);
    ``now`` is the current Unix time (for HTTP-dates). A date in the past gives 0. The result is capped
    at ``maximum`` when given. Delta-seconds longer than 10 digits (leading zeros aside) are not parsed:
    they count as 9999999999 seconds, i.e. ``maximum`` when given.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        # int() refuses over 4300 digits (CPython's DoS guard) and is quadratic below that; anything
        # over 10 digits (~317 years) means "as long as you allow", so it is the cap, not an error.
        seconds = _RETRY_AFTER_HUGE if len(digits) > _RETRY_AFTER_MAX_DIGITS else float(int(digits))
    else:
        if len(text) > _HTTP_DATE_MAX_LENGTH:
            return None
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # HTTP-dates are GMT by definition
        seconds = max(0.0, moment.timestamp() - now)
    if maximum is not None:
        seconds = min(seconds, maximum)
    return seconds
