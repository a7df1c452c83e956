"""The JetStream bus's pure rules: names, message ids, consumer settings, NAK delays, records."""

from __future__ import annotations

import sys

import pytest
from tests.support.keys import sub_key

from openconnector.delivery import (
    ContentMode,
    DeliveryPolicy,
    DeliveryTarget,
    HealthConfig,
    prepare,
    webhook_message_id,
)
from openconnector.delivery.attempts import Attempt, Destination
from openconnector.delivery.durable import (
    ACK_WAIT_MARGIN,
    ConsumerSettings,
    attempt_from_record,
    attempt_to_record,
    consumer_name,
    consumer_settings,
    decode_meta,
    delivery_subject,
    encode_meta,
    escape_token,
    nak_delay,
    request_msg_id,
    suspension_fingerprint,
)
from openconnector.delivery.retry import retry_delay


class MaxRng:
    def uniform(self, a: float, b: float, /) -> float:
        return b


class MinRng:
    def uniform(self, a: float, b: float, /) -> float:
        return a


def target(**kwargs: object) -> DeliveryTarget:
    fields: dict[str, object] = {"key": sub_key("ns/sub"), "url": "http://127.0.0.1:9000/hook"}
    fields.update(kwargs)
    return DeliveryTarget(**fields)  # type: ignore[arg-type]


def test_tokens_are_escaped_injectively_and_subjects_and_names_follow() -> None:
    assert escape_token("zaken-1") == "zaken-1"
    assert escape_token("a.b") == "a_2eb"
    assert escape_token("a_2eb") == "a_5f2eb"  # the escape character itself is escaped
    assert escape_token("") == "_"
    assert escape_token("é") == "_c3_a9"
    assert delivery_subject("OC", sub_key("gemeente/zaak.created")) == "OC.d.gemeente.zaak_2ecreated"
    assert consumer_name(sub_key("gemeente/zaak")) == "sub_gemeente_2fzaak"
    # "a-b/c" and "a/b-c" must not share a consumer
    assert consumer_name(sub_key("a-b/c")) != consumer_name(sub_key("a/b-c"))
    assert delivery_subject("OC", sub_key("a-b/c")) != delivery_subject("OC", sub_key("a/b-c"))


def test_the_request_msg_id_is_stable_order_free_and_separates_every_part() -> None:
    one = [("ns", "urn:src", "id-1", "ns/a"), ("ns", "urn:src", "id-1", "ns/b")]
    assert request_msg_id(one) == request_msg_id(list(reversed(one)))
    assert request_msg_id(one).startswith("oc-")
    assert len(request_msg_id(one)) <= 64
    # ids are only unique per source, one event reaches several subscriptions and namespaces
    base = ("ns", "urn:src", "id-1", "ns/a")
    variants = [
        ("other", "urn:src", "id-1", "ns/a"),
        ("ns", "urn:other", "id-1", "ns/a"),
        ("ns", "urn:src", "id-2", "ns/a"),
        ("ns", "urn:src", "id-1", "ns/b"),
        ("ns", "urn:sr", "cid-1", "ns/a"),  # moving characters between parts is another request
    ]
    ids = {request_msg_id([base])} | {request_msg_id([variant]) for variant in variants}
    assert len(ids) == 1 + len(variants)


def test_consumer_settings_follow_the_delivery_policy() -> None:
    policy = DeliveryPolicy(retries=4, timeout=10.0)
    assert consumer_settings(target(policy=policy, max_concurrency=7)) == ConsumerSettings(
        ack_wait=10.0 + ACK_WAIT_MARGIN,  # an attempt whose process died comes back after this
        max_deliver=6,  # retries + 1 attempts, + 1 to finish an event whose last attempt was cut off
        max_ack_pending=7,  # maxConcurrency, across every process
    )
    assert consumer_settings(target(policy=DeliveryPolicy(retries=0))).max_deliver == 2


def test_nak_delays_are_the_policy_backoff_with_jitter_cap_and_retry_after() -> None:
    policy = DeliveryPolicy(retries=5, backoff_delay=1.0, backoff_max=5.0, retry_after_max=30.0)
    assert retry_delay(policy, 1, 500, None, 0.0, MaxRng()) == 2.0  # 1 * 2**1
    assert retry_delay(policy, 2, 500, None, 0.0, MaxRng()) == 4.0
    assert retry_delay(policy, 5, 500, None, 0.0, MaxRng()) == 5.0  # capped by backoffMax
    assert retry_delay(policy, 3, 500, None, 0.0, MinRng()) == 0.0  # full jitter
    assert retry_delay(policy, 1, 429, "20", 0.0, MaxRng()) == 20.0  # at least Retry-After
    assert retry_delay(policy, 1, 503, "3600", 0.0, MaxRng()) == 30.0  # Retry-After capped
    assert retry_delay(policy, 1, 500, "20", 0.0, MaxRng()) == 2.0  # only 429/503 carry it
    assert nak_delay(0.0) == 0.001  # a zero NAK delay would mean "at once", not "after the backoff"
    assert nak_delay(2.5) == 2.5


def test_a_held_request_round_trips_through_the_message_meta() -> None:
    class Event:
        id = "e-1"
        type = "nl.example.created"
        source = "urn:example:src"

    def encode(event: Event, mode: ContentMode) -> tuple[dict[str, str], bytes]:
        return {"ce-id": event.id, "Content-Type": "application/json"}, b'{"caf\xc3\xa9": 1}'

    prepared = prepare(Event(), ContentMode.BINARY, encode)
    meta = encode_meta(prepared)
    assert meta.isascii()  # NATS headers
    back = decode_meta(meta, prepared.body)
    assert (back.id, back.type, back.source, back.content_mode) == (
        "e-1",
        "nl.example.created",
        "urn:example:src",
        ContentMode.BINARY,
    )
    assert dict(back.headers) == dict(prepared.headers)
    assert back.body == prepared.body
    assert back.webhook_id == webhook_message_id("urn:example:src", "e-1")
    with pytest.raises(ValueError, match="not a delivery message"):
        decode_meta('{"id": 1}', b"")
    with pytest.raises(ValueError, match="not a delivery message"):
        decode_meta("garbage", b"")


def test_attempt_records_round_trip_and_garbage_is_ignored() -> None:
    attempt = Attempt(
        request_id="r",
        event_id="e",
        attempt=2,
        time=1_800_000_000.5,
        status_code=None,
        latency_ms=12.5,
        error="timeout after 1s",
        outcome="retryable",
        destination=Destination.DEAD_LETTER,
        retry_in=0.4,
    )
    assert attempt_from_record(attempt_to_record(attempt)) == attempt
    assert attempt_from_record(b"{}") is None
    assert attempt_from_record(b"\xff") is None


def test_a_suspension_is_tied_to_the_delivery_configuration_without_secrets() -> None:
    base = target(auth_headers={"Authorization": "Bearer s3cr3t"})
    assert suspension_fingerprint(base) == suspension_fingerprint(
        target(auth_headers={"Authorization": "Bearer rotated"})
    )
    assert suspension_fingerprint(base) != suspension_fingerprint(target(url="http://127.0.0.1:9001/"))
    assert suspension_fingerprint(base) != suspension_fingerprint(
        target(health=HealthConfig(auto_pause_after=3))
    )
    assert "s3cr3t" not in suspension_fingerprint(base)


def test_routing_imports_no_aiohttp_engine() -> None:
    """``routing/`` builds targets from the pure modules only (the bus is chosen at start-up)."""
    import subprocess

    code = (
        "import sys, openconnector.routing.compiler, openconnector.routing.table; "
        "print(sorted(m for m in sys.modules if m.startswith('aiohttp') or m.startswith('nats') "
        "or m in ('openconnector.delivery.memory', 'openconnector.delivery.jetstream')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["serve", "run"])
def test_the_bus_flags_reach_the_gateway_settings(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from openconnector.cli import build_parser
    from openconnector.runtime import settings_from_args

    monkeypatch.setenv("OPENCONNECTOR_NATS_TOKEN", "t0ken")
    extra = ["--manifests", "examples"] if command == "serve" else []
    flags = (
        "--bus jetstream --nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4223 --jetstream-stream EVENTS "
        "--jetstream-replicas 3 --jetstream-storage memory --jetstream-max-bytes 1048576 "
        "--jetstream-max-age 7d --jetstream-duplicate-window 5m"
    )
    args = build_parser().parse_args([command, *extra, *flags.split()])
    settings = settings_from_args(args)
    assert settings.bus == "jetstream"
    jetstream = settings.jetstream
    assert jetstream is not None
    assert jetstream.servers == ("nats://127.0.0.1:4222", "nats://127.0.0.1:4223")
    assert (jetstream.stream, jetstream.replicas, jetstream.storage) == ("EVENTS", 3, "memory")
    assert (jetstream.max_bytes, jetstream.max_age, jetstream.duplicate_window) == (1048576, 7 * 86400, 300)
    assert jetstream.token == "t0ken"
    assert "t0ken" not in repr(jetstream)
    defaults = settings_from_args(build_parser().parse_args([command, *extra]))
    assert (defaults.bus, defaults.jetstream) == ("memory", None)
