"""Delivery specs (camelCase, as in a CR) to the delivery engine's types, for tests that drive the engine
directly. The operator translates specs in one place only, the routing compiler; these helpers stand in
for it where a test needs a policy or health thresholds without compiling a whole table."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from openconnector.delivery.durations import parse_duration
from openconnector.delivery.health import HealthConfig
from openconnector.delivery.policy import (
    DEFAULT_BACKOFF_DELAY,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    BackoffPolicy,
    DeliveryPolicy,
    validate_http_url,
)


def delivery_policy_from_spec(
    spec: Mapping[str, object],
    *,
    path: str = "spec.delivery",
    resolve_endpoint: Callable[[str], str] | None = None,
) -> DeliveryPolicy:
    """Build a policy from a CR's camelCase delivery spec; errors name the field by its full path.

    Keys: ``retries`` (or Knative's ``retry``), ``backoffPolicy``, ``backoffDelay``, ``backoffMax``,
    ``timeout``, ``retryAfterMax`` (durations as in :mod:`durations`), and ``deadLetter`` as a URL
    string, ``{"endpoint": url}`` or ``{"uri": url}``. Unknown keys are ignored (the CRD schema owns
    them). ``resolve_endpoint`` turns a dead-letter endpoint reference (``service:…``) into a URL
    before validation; a ValueError it raises is reported under ``deadLetter``.
    """
    retries = spec.get("retries", spec.get("retry", DEFAULT_RETRIES))
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{path}.retries: must be a non-negative integer, got {retries!r}")
    policy = spec.get("backoffPolicy", BackoffPolicy.EXPONENTIAL.value)
    if policy not in ("exponential", "linear"):
        raise ValueError(f"{path}.backoffPolicy: must be 'exponential' or 'linear', got {policy!r}")

    def seconds(key: str, default: float | None) -> float | None:
        raw = spec.get(key)
        if raw is None:
            return default
        value = parse_duration(raw, field=f"{path}.{key}")
        if value <= 0:
            raise ValueError(f"{path}.{key}: must be longer than zero, got {raw!r}")
        return value

    delay = seconds("backoffDelay", DEFAULT_BACKOFF_DELAY)
    ceiling = seconds("backoffMax", DEFAULT_BACKOFF_MAX)
    timeout = seconds("timeout", DEFAULT_TIMEOUT)
    # The defaults are set, so these are never None; the asserts narrow the types.
    assert delay is not None
    assert ceiling is not None
    assert timeout is not None
    if ceiling < delay:
        raise ValueError(f"{path}.backoffMax: {ceiling:g}s is smaller than backoffDelay {delay:g}s")
    dead_letter = spec.get("deadLetter", spec.get("deadLetterSink"))
    url: object = dead_letter
    if isinstance(dead_letter, Mapping):
        url = dead_letter.get("endpoint", dead_letter.get("uri"))
    if url is not None:
        if not isinstance(url, str):
            raise ValueError(f"{path}.deadLetter: expected a URL or {{endpoint: URL}}, got {dead_letter!r}")
        if resolve_endpoint is not None:
            try:
                url = resolve_endpoint(url)
            except ValueError as error:
                raise ValueError(f"{path}.deadLetter.endpoint: {error}") from None
        validate_http_url(url, f"{path}.deadLetter")
    return DeliveryPolicy(
        retries=retries,
        backoff_policy=BackoffPolicy(str(policy)),
        backoff_delay=delay,
        backoff_max=ceiling,
        timeout=timeout,
        dead_letter=url,
        retry_after_max=seconds("retryAfterMax", None),
    )


def health_config_from_spec(spec: Mapping[str, object], *, path: str = "spec.delivery") -> HealthConfig:
    """Thresholds from a CR's delivery spec: ``autoPauseAfter`` (0 or absent = never)."""
    pause = spec.get("autoPauseAfter", 0)
    if isinstance(pause, bool) or not isinstance(pause, int) or pause < 0:
        raise ValueError(f"{path}.autoPauseAfter: must be a non-negative integer, got {pause!r}")
    return HealthConfig(auto_pause_after=pause or None)
