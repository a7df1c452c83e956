"""Retry policy, classification, Retry-After and Standard Webhooks signing (pure, no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from tests.support.delivery_specs import delivery_policy_from_spec

from openconnector.delivery.policy import (
    BackoffPolicy,
    DeliveryPolicy,
    Outcome,
    backoff_delay,
    classify,
    parse_retry_after,
)
from openconnector.delivery.signing import (
    decode_signing_secret,
    sign,
    signature_headers,
    webhook_message_id,
)


class MaxRng:
    """Jitter that always picks the upper bound, so the un-jittered schedule is visible."""

    def uniform(self, a: float, b: float, /) -> float:
        return b


class RecordingRng:
    def __init__(self) -> None:
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float, /) -> float:
        self.bounds.append((a, b))
        return (a + b) / 2


# --------------------------------------------------------------------------------------- policy


def test_defaults_follow_knative_plus_backoff_max_and_openconnector_timeout() -> None:
    policy = DeliveryPolicy()
    assert policy.retries == 10
    assert policy.backoff_policy is BackoffPolicy.EXPONENTIAL
    assert policy.backoff_delay == 0.2
    assert policy.backoff_max == 300.0
    assert policy.timeout == 30.0
    assert policy.dead_letter is None
    assert policy.max_retry_after == 300.0


def test_exponential_backoff_doubles_per_retry_and_is_capped() -> None:
    policy = DeliveryPolicy(backoff_delay=0.5, backoff_max=10.0)
    delays = [backoff_delay(policy, n, MaxRng()) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_linear_backoff_grows_by_the_delay_per_retry() -> None:
    policy = DeliveryPolicy(backoff_policy=BackoffPolicy.LINEAR, backoff_delay=2.0, backoff_max=7.0)
    assert [backoff_delay(policy, n, MaxRng()) for n in range(1, 6)] == [2.0, 4.0, 6.0, 7.0, 7.0]


def test_backoff_uses_full_jitter_between_zero_and_the_capped_delay() -> None:
    rng = RecordingRng()
    policy = DeliveryPolicy(backoff_delay=1.0, backoff_max=3.0)
    assert backoff_delay(policy, 1, rng) == 1.0
    assert backoff_delay(policy, 5, rng) == 1.5
    assert rng.bounds == [(0.0, 2.0), (0.0, 3.0)]


def test_backoff_with_a_real_rng_stays_within_bounds_and_survives_huge_retry_numbers() -> None:
    policy = DeliveryPolicy(backoff_delay=0.2, backoff_max=300.0)
    rng = random.Random(7)
    for retry in (1, 2, 10, 100, 10_000):
        delay = backoff_delay(policy, retry, rng)
        assert 0.0 <= delay <= min(0.2 * 2.0 ** min(retry, 1000), 300.0)


def test_backoff_rejects_retry_zero() -> None:
    with pytest.raises(ValueError, match="retry: must be >= 1"):
        backoff_delay(DeliveryPolicy(), 0, MaxRng())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "retries: must be a non-negative integer"),
        ({"retries": True}, "retries: must be a non-negative integer"),
        ({"backoff_delay": 0}, "backoff_delay: must be a positive number"),
        ({"timeout": float("nan")}, "timeout: must be a positive number"),
        ({"backoff_max": 0.1, "backoff_delay": 1.0}, "backoff_max: 0.1s is smaller than backoff_delay 1s"),
        ({"backoff_policy": "fibonacci"}, "backoff_policy: must be 'exponential' or 'linear'"),
        ({"dead_letter": "ftp://dlq"}, "dead_letter: must be an absolute http:// or https:// URL"),
        ({"dead_letter": "http://user:pw@dlq/"}, "dead_letter: URL must not contain credentials"),
        ({"retry_after_max": -1}, "retry_after_max: must be a positive number"),
    ],
)
def test_policy_rejects_bad_values_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DeliveryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_from_crd_spec() -> None:
    policy = delivery_policy_from_spec(
        {
            "retries": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "backoffMax": "1m",
            "timeout": "PT10S",
            "retryAfterMax": "PT2M",
            "deadLetter": {"endpoint": "http://dlq.example/events"},
            "maxConcurrency": 8,  # belongs to the target, ignored here
        }
    )
    assert policy == DeliveryPolicy(
        retries=3,
        backoff_policy=BackoffPolicy.LINEAR,
        backoff_delay=0.5,
        backoff_max=60.0,
        timeout=10.0,
        dead_letter="http://dlq.example/events",
        retry_after_max=120.0,
    )
    assert delivery_policy_from_spec({}) == DeliveryPolicy()
    assert delivery_policy_from_spec({"retry": 2, "deadLetterSink": {"uri": "https://d/"}}).retries == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"retries": "3"}, "spec.delivery.retries: must be a non-negative integer"),
        ({"backoffPolicy": "random"}, "spec.delivery.backoffPolicy: must be 'exponential' or 'linear'"),
        ({"backoffDelay": "soon"}, "spec.delivery.backoffDelay: 'soon' is not a duration"),
        ({"timeout": "PT0S"}, "spec.delivery.timeout: must be longer than zero"),
        ({"backoffDelay": "PT1M", "backoffMax": "PT10S"}, "spec.delivery.backoffMax: 10s is smaller than"),
        ({"deadLetter": {"endpoint": 5}}, "spec.delivery.deadLetter: expected a URL"),
        ({"deadLetter": "dlq"}, "spec.delivery.deadLetter: must be an absolute http"),
    ],
)
def test_policy_from_spec_errors_name_the_full_field_path(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        delivery_policy_from_spec(spec)


# ---------------------------------------------------------------------------------- classify


@pytest.mark.parametrize("status", [200, 201, 202, 204, 203, 299])
def test_any_2xx_is_success(status: int) -> None:
    assert classify(status) is Outcome.SUCCESS


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_permanent_failures(status: int) -> None:
    assert classify(status) is Outcome.PERMANENT


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 415, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    assert classify(status) is Outcome.PERMANENT


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_timeouts_rate_limits_and_server_errors_are_retried(status: int) -> None:
    assert classify(status) is Outcome.RETRYABLE


def test_410_means_the_endpoint_is_gone() -> None:
    assert classify(410) is Outcome.GONE


def test_transport_errors_are_retried_and_nonsense_is_permanent() -> None:
    assert classify(None, "timeout after 30s") is Outcome.RETRYABLE
    assert classify(None, "connection refused") is Outcome.RETRYABLE
    assert classify(None, None) is Outcome.PERMANENT
    assert classify(100) is Outcome.PERMANENT
    assert classify(600) is Outcome.PERMANENT


# ------------------------------------------------------------------------------- Retry-After

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC).timestamp()


def test_retry_after_delta_seconds() -> None:
    assert parse_retry_after("2", NOW) == 2.0
    assert parse_retry_after(" 120 ", NOW) == 120.0
    assert parse_retry_after("0", NOW) == 0.0


def test_retry_after_http_date() -> None:
    later = format_datetime(datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert later == "Sat, 28 Nov 2026 12:00:30 GMT"
    assert parse_retry_after(later, NOW) == 30.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:59:00 GMT", NOW) == 0.0  # in the past: now


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("3600", NOW, maximum=300.0) == 300.0
    assert parse_retry_after("Sun, 29 Nov 2026 12:00:00 GMT", NOW, maximum=60.0) == 60.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Fri, 99 Foo 2026 12:00:00 GMT", "٣"])
def test_unparseable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@pytest.mark.parametrize("value", ["9" * 5000, "1" * 11, "12345678901", " " + "7" * 4301 + " "])
def test_retry_after_with_more_than_ten_digits_is_the_cap(value: str) -> None:
    """int() refuses over 4300 digits; the event must not be dropped as an internal error for it."""
    assert parse_retry_after(value, NOW, maximum=300.0) == 300.0
    assert parse_retry_after(value, NOW) == 9_999_999_999.0


def test_retry_after_leading_zeros_do_not_count_as_digits() -> None:
    assert parse_retry_after("0" * 5000 + "5", NOW, maximum=300.0) == 5.0
    assert parse_retry_after("9999999999", NOW) == 9_999_999_999.0  # ten digits: parsed as such


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 99999999999 07:28:00 GMT",  # OverflowError inside the date parser
        "Wed, 21 Oct 2015 07:28:00 +99999999999999999999",
        "Sat, 28 Nov 2026 12:00:30 GMT" + " " * 10 + "x" * 100,  # far longer than any HTTP-date
    ],
)
def test_absurd_retry_after_dates_are_ignored(value: str) -> None:
    assert parse_retry_after(value, NOW, maximum=300.0) is None


# ----------------------------------------------------------------------------------- signing

# The published Standard Webhooks test vector (standard-webhooks reference libraries and Svix).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_reproduces_the_standard_webhooks_test_vector() -> None:
    key = decode_signing_secret(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signature_headers(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": VECTOR_SIGNATURE,
    }


def test_webhook_id_hashes_source_and_id() -> None:
    """CloudEvents ids are unique per source only, so webhook-id must cover both (pinned value)."""
    source, event_id = "urn:nld:oin:00000001823288444000:systeem:zaken", "zaak-42"
    message_id = webhook_message_id(source, event_id)
    assert message_id == "msg_54-a4zh-fdpWQSKABh4PdrEK3Ej5b8RxCOOPsJpuBn4"
    digest = hashlib.sha256(f"{source}\0{event_id}".encode()).digest()
    assert message_id == "msg_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert re.fullmatch(r"msg_[A-Za-z0-9_-]{43}", message_id)  # url-safe, no padding
    assert webhook_message_id(source, event_id) == message_id  # stable: the same for every retry
    assert webhook_message_id("urn:other", event_id) != message_id
    assert webhook_message_id(source, "zaak-43") != message_id
    # the separator keeps ("a", "bc") and ("ab", "c") apart
    assert webhook_message_id("a", "bc") != webhook_message_id("ab", "c")


def test_the_whsec_prefix_is_optional() -> None:
    assert decode_signing_secret(VECTOR_SECRET) == decode_signing_secret(VECTOR_SECRET.removeprefix("whsec_"))


def test_signature_covers_id_timestamp_and_body() -> None:
    key = decode_signing_secret(VECTOR_SECRET)
    reference = sign(key, "a", 1, b"body")
    assert sign(key, "b", 1, b"body") != reference
    assert sign(key, "a", 2, b"body") != reference
    assert sign(key, "a", 1, b"bodY") != reference
    expected = base64.b64encode(hmac.new(key, b"a.1.body", hashlib.sha256).digest()).decode()
    assert reference == "v1," + expected


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_", "empty"),
        ("whsec_not base64!!", "not base64"),
        ("whsec_c2hvcnQ=", "decodes to 5 bytes"),
    ],
)
def test_bad_signing_secrets_are_refused_without_echoing_them(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^auth\.signingSecretRef: ") as caught:
        decode_signing_secret(secret, field="auth.signingSecretRef")
    assert message in str(caught.value)
    assert secret.removeprefix("whsec_") not in str(caught.value) or not secret.removeprefix("whsec_")


def test_policy_from_spec_resolves_dead_letter_references() -> None:
    def resolve(endpoint: str) -> str:
        if endpoint.startswith("service:"):
            return f"http://{endpoint.removeprefix('service:')}.default.svc:80/"
        raise ValueError(f"unknown reference {endpoint!r}")

    policy = delivery_policy_from_spec({"deadLetter": {"endpoint": "service:dlq"}}, resolve_endpoint=resolve)
    assert policy.dead_letter == "http://dlq.default.svc:80/"
    with pytest.raises(ValueError, match=re.escape("spec.delivery.deadLetter.endpoint: unknown reference")):
        delivery_policy_from_spec({"deadLetter": {"endpoint": "source:x"}}, resolve_endpoint=resolve)
