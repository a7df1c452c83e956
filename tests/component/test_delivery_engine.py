"""The delivery buses against real loopback sinks that misbehave on cue.

Every delivery semantic (retries, backoff, Retry-After, dead letters, 410, auto-pause, paused, removal)
runs against both buses through the ``bus`` fixture: the in-memory :class:`Dispatcher` and the
:class:`JetStreamBus` on a real single nats-server with JetStream (127.0.0.1, a free port, a temp
store, started once per module). Tests of in-memory internals (lanes, waiters, byte budgets) use the
``dispatcher`` fixture. In memory, backoff waits run on a fake clock (``FakeTime``) so retries cost no
real time and Retry-After can be asserted in that clock; on JetStream the waits are NAK delays kept by
the server, so the requested waits are asserted from the attempt log (``retryInSeconds``), which both
buses write, and the test policies keep them short. The HTTP traffic is real everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent, to_binary, to_structured
from openconnector.delivery import (
    Attempt,
    ContentMode,
    DeliveryClosedError,
    DeliveryPolicy,
    DeliveryTarget,
    Dispatcher,
    EventTooLargeError,
    FinalOutcome,
    HealthConfig,
    prepare,
    webhook_message_id,
)
from openconnector.delivery.bus import DeliveryBus
from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings
from tests.component.natsserver import NatsServer
from tests.component.sinks import RecordedRequest, RefusingEndpoint, Reply, Sink
from tests.support.keys import sub_key

T0 = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC).timestamp()
TOKEN = "s3cr3t-b34rer-t0ken"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# ------------------------------------------------------------------------------ test doubles


@dataclass(frozen=True)
class Event:
    """Stands in for the CloudEvents codec's outbound event."""

    id: str
    type: str = "nl.vng.zgw.zaken.zaak.created"
    source: str = "urn:nld:oin:00000001823288444000:systeem:test"
    data: Mapping[str, object] = field(default_factory=lambda: {"zaak": "abc123"})
    extensions: Mapping[str, object] = field(default_factory=dict)

    def with_extensions(self, **extensions: object) -> Event:
        return replace(self, extensions={**self.extensions, **extensions})


def encode(event: Event, mode: ContentMode) -> tuple[dict[str, str], bytes]:
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": event.id,
        "type": event.type,
        "source": event.source,
        **event.extensions,
    }
    if mode is ContentMode.STRUCTURED:
        document = {**attributes, "datacontenttype": "application/json", "data": dict(event.data)}
        return {"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode()
    headers = {f"ce-{name}": str(value) for name, value in attributes.items()}
    headers["Content-Type"] = "application/json"
    return headers, json.dumps(dict(event.data)).encode()


class FakeTime:
    """Unix clock that only moves when the engine sleeps; every requested sleep is recorded."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class MaxRng:
    def uniform(self, a: float, b: float, /) -> float:
        return b


@dataclass
class Recorder:
    """DeliveryObserver plus on_paused callback, recording every call."""

    attempts: list[tuple[ResourceKey, Attempt]] = field(default_factory=list)
    outcomes: list[tuple[ResourceKey, str, FinalOutcome, str | None]] = field(default_factory=list)
    paused: list[tuple[ResourceKey, str, str]] = field(default_factory=list)

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        self.attempts.append((target_key, attempt))

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        self.outcomes.append((target_key, event_id, outcome, reason))

    async def on_paused(self, target_key: ResourceKey, reason: str, message: str) -> None:
        self.paused.append((target_key, reason, message))


FAST = DeliveryPolicy(retries=3, backoff_delay=0.01, backoff_max=30.0, timeout=5.0)
DEFAULT_SUB = sub_key("default/sub")


def target(
    url: str, key: ResourceKey = DEFAULT_SUB, policy: DeliveryPolicy = FAST, **kwargs: Any
) -> DeliveryTarget:
    return DeliveryTarget(key=key, url=url, policy=policy, **kwargs)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def dispatcher(fake_time: FakeTime, recorder: Recorder) -> AsyncIterator[Dispatcher[Event]]:
    engine: Dispatcher[Event] = Dispatcher(
        encode,
        observer=recorder,
        on_paused=recorder.on_paused,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        rng=MaxRng(),
    )
    async with engine:
        yield engine


Bus = DeliveryBus[Event]
BUSES = ["memory", "jetstream"]
_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


def jetstream_bus(server: NatsServer, recorder: Recorder, fake_time: FakeTime) -> JetStreamBus[Event]:
    """A JetStream bus on its own stream (tests share the server, never a stream)."""
    settings = JetStreamSettings(servers=(server.url,), stream=f"T{next(_streams)}", storage="memory")
    return JetStreamBus(
        encode,
        settings,
        observer=recorder,
        on_paused=recorder.on_paused,
        clock=fake_time.clock,  # Retry-After dates and signatures in the test's clock
        sleep=fake_time.sleep,  # dead-letter retries (subscriber retries wait in JetStream)
        rng=MaxRng(),
    )


@pytest.fixture(params=BUSES)
def bus_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def bus(
    bus_kind: str, request: pytest.FixtureRequest, fake_time: FakeTime, recorder: Recorder
) -> AsyncIterator[Bus]:
    if bus_kind == "memory":
        engine: Dispatcher[Event] = Dispatcher(
            encode,
            observer=recorder,
            on_paused=recorder.on_paused,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            rng=MaxRng(),
        )
        async with engine:
            yield engine
        return
    durable = jetstream_bus(request.getfixturevalue("nats_server"), recorder, fake_time)
    await durable.start()
    try:
        await durable.wait_ready()
        yield durable
    finally:
        await durable.close(drain_deadline=0.5)


@pytest.fixture
def sink_clock(bus_kind: str, fake_time: FakeTime) -> Callable[[], float]:
    """The clock in which waits between requests show: fake in memory, real on JetStream."""
    return fake_time.clock if bus_kind == "memory" else time.monotonic


def retry_waits(bus: Bus, key: ResourceKey) -> list[float]:
    """The waits the bus scheduled before retries (subscriber and dead letter), from its attempt log."""
    return [a.retry_in for a in bus.attempts(key) if a.retry_in is not None]


async def settle(dispatcher: DeliveryBus[Any], key: ResourceKey | None = None) -> None:
    """Wait (bounded, real time) until the bus has nothing queued, stored or in flight."""
    async with asyncio.timeout(20):
        await dispatcher.join(key)


def sent_event(request: RecordedRequest) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(request.body)
    return document


# ------------------------------------------------------------------------------------ retries


async def test_500_then_200_is_retried_and_delivered_once(bus: Bus, recorder: Recorder) -> None:
    async with Sink(Reply(500, body=b"boom")) as sink:
        sub = target(sink.url)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-1"))
        await settle(bus)

        assert [r.reply.status for r in sink.requests] == [500, 200]
        assert {sent_event(r)["id"] for r in sink.requests} == {"e-1"}
        assert sink.requests[0].body == sink.requests[1].body
        assert sink.requests[0].headers["Content-Type"] == "application/cloudevents+json"

        snapshot = bus.health(sub.key).snapshot()
        assert {k: snapshot[k] for k in ("delivered", "failed", "retried", "deadLettered", "dropped")} == {
            "delivered": 1,
            "failed": 0,
            "retried": 1,
            "deadLettered": 0,
            "dropped": 0,
        }
        assert snapshot["consecutiveFailures"] == 0
        assert snapshot["successRatio"] == 0.5
        log = bus.attempts(sub.key).to_json()
        assert [(a["attempt"], a["statusCode"], a["outcome"]) for a in log] == [
            (1, 500, "retryable"),
            (2, 200, "success"),
        ]
        assert log[0]["error"] == "HTTP 500 Internal Server Error"
        assert log[0]["retryInSeconds"] == 0.02  # exponential: 0.01 * 2**1, jitter at its maximum
        assert [(k, a.attempt) for k, a in recorder.attempts] == [(sub.key, 1), (sub.key, 2)]
        assert recorder.outcomes == [(sub.key, "e-1", FinalOutcome.DELIVERED, None)]


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (429, "2"),
        (503, format_datetime(datetime.fromtimestamp(T0 + 2, UTC), usegmt=True)),
    ],
)
async def test_retry_after_is_honoured_no_attempt_before_it(
    bus: Bus, sink_clock: Callable[[], float], status: int, retry_after: str
) -> None:
    async with Sink(Reply(status, headers={"Retry-After": retry_after}), clock=sink_clock) as sink:
        sub = target(sink.url)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-ra"))
        await settle(bus)

        first, second = sink.requests
        assert second.arrived_at - first.arrived_at >= 2.0
        assert retry_waits(bus, sub.key) == [pytest.approx(2.0)]  # backoff alone would be 0.02 s
        assert bus.health(sub.key).delivered == 1


async def test_retry_after_is_capped_by_retry_after_max(bus: Bus) -> None:
    policy = replace(FAST, retry_after_max=1.0)
    async with Sink(Reply(429, headers={"Retry-After": "3600"})) as sink:
        sub = target(sink.url, policy=policy)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-cap"))
        await settle(bus)
        assert len(sink.requests) == 2
        assert retry_waits(bus, sub.key) == [1.0]


@pytest.mark.looptime
async def test_retry_after_under_looptime_with_the_default_sleep() -> None:
    """The same guarantee with the engine's real asyncio.sleep, fast-forwarded by looptime."""
    loop = asyncio.get_running_loop()
    engine: Dispatcher[Event] = Dispatcher(encode, rng=MaxRng())
    async with engine, Sink(Reply(429, headers={"Retry-After": "2"}), clock=loop.time) as sink:
        sub = target(sink.url)
        engine.set_target(sub)
        await engine.submit(sub, Event("e-lt"))
        await engine.join()
        first, second = sink.requests
        assert second.arrived_at - first.arrived_at >= 2.0
        assert engine.health(sub.key).delivered == 1


async def test_a_redirect_is_a_failure_and_is_not_followed(bus: Bus) -> None:
    async with Sink() as elsewhere, Sink(default=Reply(302, headers={"Location": elsewhere.url})) as sink:
        sub = target(sink.url)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-302"))
        await settle(bus)

        assert len(sink.requests) == 1  # not retried: a redirect does not go away by waiting
        assert elsewhere.requests == []  # and never followed
        health = bus.health(sub.key)
        assert (health.failed, health.dropped, health.delivered) == (1, 1, 0)
        last_error = health.snapshot()["lastError"]
        assert isinstance(last_error, dict)
        assert last_error["statusCode"] == 302
        assert "not followed" in last_error["message"]
        assert "no dead-letter sink configured" in last_error["message"]


async def test_a_client_error_is_not_retried(bus: Bus) -> None:
    async with Sink(default=Reply(400)) as sink:
        sub = target(sink.url)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-400"))
        await settle(bus)
        assert len(sink.requests) == 1


async def test_a_timeout_is_retried(bus: Bus) -> None:
    policy = replace(FAST, timeout=0.2)
    async with Sink(Reply(hang=True)) as sink:
        sub = target(sink.url, policy=policy)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-slow"))
        await settle(bus)

        assert len(sink.requests) == 2
        first, second = bus.attempts(sub.key)
        assert (first.status_code, first.error, first.outcome) == (None, "timeout after 0.2s", "retryable")
        assert (second.status_code, second.outcome) == (200, "success")
        assert bus.health(sub.key).delivered == 1


# ------------------------------------------------------------------------- 410 and auto-pause


async def test_410_pauses_the_target_and_dead_letters_what_was_queued(bus: Bus, recorder: Recorder) -> None:
    async with Sink() as dead_letters, Sink(Reply(410)) as sink:
        policy = replace(FAST, dead_letter=dead_letters.url)
        sub = target(sink.url, policy=policy, max_concurrency=1)
        bus.set_target(sub)
        for n in range(3):
            await bus.submit(sub, Event(f"e-{n}"))
        await settle(bus)

        assert len(sink.requests) == 1  # after the 410 nothing more goes to the endpoint
        assert [key for key, _, _ in recorder.paused] == [sub.key]
        assert recorder.paused[0][1] == "EndpointGone"
        assert "answered 410 Gone" in recorder.paused[0][2]
        health = bus.health(sub.key)
        assert health.paused
        assert health.condition.to_dict()["reason"] == "EndpointGone"
        assert (health.failed, health.dead_lettered, health.dropped) == (3, 3, 0)

        letters = [sent_event(r) for r in dead_letters.requests]
        assert [letter["id"] for letter in letters] == ["e-0", "e-1", "e-2"]
        assert letters[0]["ocerrorcode"] == 410
        assert "ocerrorcode" not in letters[1]  # never attempted: there is no status to report
        assert {letter["ocerrordest"] for letter in letters} == {sink.url}

        # The spec changed (the lead's reconciler calls resume): deliveries flow again.
        assert bus.resume(sub.key)
        await bus.submit(sub, Event("e-after"))
        await settle(bus)
        assert sent_event(sink.requests[-1])["id"] == "e-after"
        assert bus.health(sub.key).delivered == 1


async def test_auto_pause_after_consecutive_failed_events(bus: Bus, recorder: Recorder) -> None:
    policy = replace(FAST, retries=0)
    async with Sink(default=Reply(500)) as sink:
        sub = target(sink.url, policy=policy, max_concurrency=1, health=HealthConfig(auto_pause_after=2))
        bus.set_target(sub)
        for n in range(4):
            await bus.submit(sub, Event(f"e-{n}"))
        await settle(bus)

        assert len(sink.requests) == 2
        assert [(key, reason) for key, reason, _ in recorder.paused] == [(sub.key, "AutoPaused")]
        health = bus.health(sub.key)
        assert (health.failed, health.dropped) == (4, 4)
        assert health.condition.reason == "AutoPaused"


# --------------------------------------------------------------------------------- dead letter


async def test_an_endpoint_down_for_the_whole_budget_is_dead_lettered(bus: Bus, recorder: Recorder) -> None:
    with RefusingEndpoint() as down:
        async with Sink() as dead_letters:
            policy = replace(FAST, retries=2, dead_letter=dead_letters.url)
            sub = target(down.url + "?access_token=hidden", policy=policy)
            bus.set_target(sub)
            await bus.submit(sub, Event("e-down"))
            await settle(bus)

            (letter,) = dead_letters.requests
            document = sent_event(letter)
            assert letter.headers["Content-Type"].startswith("application/cloudevents+json")
            assert document["id"] == "e-down"
            assert document["data"] == {"zaak": "abc123"}
            assert document["ocerrordest"] == down.url  # the query string (may hold tokens) is cut
            assert "ocerrorcode" not in document  # no response, no code
            assert "ocerrordata" not in document
            assert len(retry_waits(bus, sub.key)) == 2

            health = bus.health(sub.key)
            assert (health.delivered, health.failed, health.retried) == (0, 1, 2)
            assert (health.dead_lettered, health.dropped) == (1, 0)
            log = bus.attempts(sub.key).to_json()
            assert [(a["destination"], a["attempt"]) for a in log] == [
                ("subscriber", 1),
                ("subscriber", 2),
                ("subscriber", 3),
                ("deadLetter", 1),
            ]
            assert all("connection to" in str(a["error"]) for a in log[:3])
            assert "hidden" not in json.dumps(log)
            assert recorder.outcomes == [(sub.key, "e-down", FinalOutcome.DEAD_LETTERED, None)]


async def test_dead_letters_carry_the_status_and_the_start_of_the_error_body(
    bus: Bus,
) -> None:
    body = b"upstream exploded: " + b"x" * 5000
    async with Sink() as dead_letters, Sink(default=Reply(503, body=body)) as sink:
        policy = replace(FAST, retries=1, dead_letter=dead_letters.url)
        sub = target(sink.url, policy=policy)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-503"))
        await settle(bus)

        document = sent_event(dead_letters.requests[0])
        assert document["ocerrorcode"] == 503
        assert base64.b64decode(document["ocerrordata"]) == body[:1024]


async def test_a_failing_dead_letter_sink_drops_loudly(
    bus: Bus, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sink(default=Reply(500)) as dead_letters, Sink(default=Reply(500)) as sink:
        policy = replace(FAST, retries=1, dead_letter=dead_letters.url, dead_letter_retries=2)
        sub = target(sink.url, policy=policy)
        bus.set_target(sub)
        with caplog.at_level(logging.ERROR, logger="openconnector.delivery"):
            await bus.submit(sub, Event("e-lost"))
            await settle(bus)

        assert len(dead_letters.requests) == 3  # bounded retries towards the dead-letter sink too
        health = bus.health(sub.key)
        assert (health.failed, health.dead_lettered, health.dropped) == (1, 0, 1)
        last_error = health.snapshot()["lastError"]
        assert isinstance(last_error, dict)
        assert last_error["message"].startswith(
            "dropped (deadLetterFailed): retries exhausted after 2 attempt(s)"
        )
        assert "dead-lettering failed: HTTP 500" in last_error["message"]
        assert recorder.outcomes == [(sub.key, "e-lost", FinalOutcome.DROPPED, "deadLetterFailed")]
        assert any(r.levelno == logging.ERROR and "e-lost" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------ isolation


async def test_a_slow_subscriber_does_not_delay_a_fast_one(bus: Bus) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as slow_sink, Sink() as fast_sink:
        slow = target(slow_sink.url, key=sub_key("default/slow"), max_concurrency=2)
        bus.set_target(slow)
        fast = target(fast_sink.url, key=sub_key("default/fast"))
        bus.set_target(fast)
        for n in range(6):
            await bus.submit(slow, Event(f"s-{n}"))
        for n in range(20):
            await bus.submit(fast, Event(f"f-{n}"))

        await settle(bus, fast.key)  # completes while every slow request is still held
        assert len(fast_sink.requests) == 20
        assert bus.health(fast.key).delivered == 20
        assert bus.health(slow.key).delivered == 0
        assert len(slow_sink.requests) <= 2  # the slow lane never exceeds its concurrency
        if isinstance(bus, Dispatcher):  # JetStream: waiting in the stream, counted by the server
            assert bus.queue_depth(slow.key) == 6

        gate.set()
        await settle(bus, slow.key)
        assert bus.health(slow.key).delivered == 6


async def test_back_pressure_and_queue_full_drops(dispatcher: Dispatcher[Event], recorder: Recorder) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=2)
        dispatcher.set_target(sub)
        assert dispatcher.try_submit(sub, Event("q-1"))
        await sink.wait_for(1)  # q-1 is in flight, the queue is empty again
        assert dispatcher.try_submit(sub, Event("q-2"))
        assert dispatcher.try_submit(sub, Event("q-3"))
        assert not dispatcher.try_submit(sub, Event("q-4"))  # full: dropped and counted, not silent
        health = dispatcher.health(sub.key)
        assert health.dropped == 1
        assert recorder.outcomes == [(sub.key, "q-4", FinalOutcome.DROPPED, "queueFull")]

        waiting = asyncio.create_task(dispatcher.submit(sub, Event("q-5")))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()  # back-pressure: the caller waits for space
        gate.set()
        async with asyncio.timeout(10):
            await waiting
        await settle(dispatcher)
        assert sorted(sent_event(r)["id"] for r in sink.requests) == ["q-1", "q-2", "q-3", "q-5"]
        assert health.delivered == 4


# ------------------------------------------------------------------------------- credentials


async def test_the_bearer_token_is_sent_but_never_recorded(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sink() as dead_letters, Sink(Reply(500), Reply(500)) as sink:
        policy = replace(FAST, retries=1, dead_letter=dead_letters.url)
        sub = target(sink.url, policy=policy, auth_headers={"Authorization": f"Bearer {TOKEN}"})
        bus.set_target(sub)
        with caplog.at_level(logging.DEBUG):
            await bus.submit(sub, Event("e-auth"))
            await settle(bus)

        assert [r.headers["Authorization"] for r in sink.requests] == [f"Bearer {TOKEN}"] * 2
        assert "Authorization" not in dead_letters.requests[0].headers  # not leaked to another receiver
        health = bus.health(sub.key)
        recorded = [
            json.dumps(bus.attempts(sub.key).to_json()),
            json.dumps(health.snapshot()),
            json.dumps(health.condition.to_dict()),
            repr(sub),
            caplog.text,
        ]
        assert not [text for text in recorded if TOKEN in text]


async def test_deliveries_are_signed_with_standard_webhooks(bus: Bus) -> None:
    key = base64.b64decode(SIGNING_SECRET.removeprefix("whsec_"))
    async with Sink(Reply(503)) as sink:
        sub = target(sink.url, signing_secret=SIGNING_SECRET)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-signed"))
        await settle(bus)

        assert len(sink.requests) == 2
        for request in sink.requests:
            msg_id = request.headers["webhook-id"]
            timestamp = request.headers["webhook-timestamp"]
            signed = f"{msg_id}.{timestamp}.".encode() + request.body
            expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            assert expected in request.headers["webhook-signature"].split(" ")
            # stable across retries (receivers deduplicate on it) and unique per (source, id)
            assert msg_id == webhook_message_id(Event("e-signed").source, "e-signed")
        timestamps = [int(r.headers["webhook-timestamp"]) for r in sink.requests]
        assert timestamps[0] == int(T0)  # the bus's clock at each attempt
        assert timestamps == sorted(timestamps)
        assert SIGNING_SECRET not in repr(sub)


async def test_binary_mode_method_and_static_headers(bus: Bus) -> None:
    async with Sink() as sink:
        sub = target(
            sink.url,
            method="PUT",
            content_mode=ContentMode.BINARY,
            headers={"X-Tenant": "gemeente-utrecht"},
        )
        bus.set_target(sub)
        await bus.submit(sub, Event("e-bin"))
        await settle(bus)
        (request,) = sink.requests
        assert request.method == "PUT"
        assert request.headers["ce-id"] == "e-bin"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Tenant"] == "gemeente-utrecht"
        assert json.loads(request.body) == {"zaak": "abc123"}


# ------------------------------------------------------------------------ routing-table changes


async def test_update_target_redirects_queued_events_without_losing_them(
    bus: Bus,
) -> None:
    gate = asyncio.Event()
    async with Sink(Reply(gate=gate)) as old_sink, Sink() as new_sink:
        sub = target(old_sink.url, max_concurrency=1)
        bus.set_target(sub)
        for n in range(4):
            await bus.submit(sub, Event(f"u-{n}"))
        await old_sink.wait_for(1)

        bus.update_target(sub.key, replace(sub, url=new_sink.url))
        gate.set()
        await settle(bus)

        assert [sent_event(r)["id"] for r in old_sink.requests] == ["u-0"]
        assert [sent_event(r)["id"] for r in new_sink.requests] == ["u-1", "u-2", "u-3"]
        assert bus.health(sub.key).delivered == 4


async def test_intake_never_reconfigures_a_lane_with_a_stale_target(
    dispatcher: Dispatcher[Event],
) -> None:
    """A request holding an old routing table must not switch the lane back to an old URL or secret."""
    async with Sink() as old_sink, Sink() as new_sink:
        stale = target(old_sink.url)
        dispatcher.set_target(stale)
        dispatcher.update_target(stale.key, replace(stale, url=new_sink.url))
        await dispatcher.submit(stale, Event("a"))
        assert dispatcher.try_submit(stale, Event("b"))
        assert dispatcher.offer([(stale.key, Event("c"))]).accepted
        await settle(dispatcher)
        assert old_sink.requests == []
        assert sorted(sent_event(r)["id"] for r in new_sink.requests) == ["a", "b", "c"]
        assert dispatcher.target(stale.key).url == new_sink.url


async def test_remove_target_drops_what_cannot_be_drained_with_a_count(bus: Bus, recorder: Recorder) -> None:
    async with Sink(default=Reply(hang=True)) as sink:
        sub = target(sink.url, max_concurrency=1)
        bus.set_target(sub)
        for n in range(3):
            await bus.submit(sub, Event(f"r-{n}"))
        await sink.wait_for(1)
        assert await bus.remove_target(sub.key, drain_deadline=0.05) == 3
        assert sub.key not in bus.target_keys()
        removed = [event_id for _, event_id, _, reason in recorder.outcomes if reason == "removed"]
        assert len(removed) == 3  # JetStream counts them (the ids stay in the stream)
        if isinstance(bus, Dispatcher):
            assert sorted(removed) == ["r-0", "r-1", "r-2"]


# ------------------------------------------------------------------------------------ shutdown


async def test_shutdown_drains_queued_events() -> None:
    engine: Dispatcher[Event] = Dispatcher(encode)
    async with Sink(default=Reply(delay=0.01)) as sink:
        sub = target(sink.url, max_concurrency=1)
        engine.set_target(sub)
        for n in range(5):
            await engine.submit(sub, Event(f"d-{n}"))
        assert await engine.close(drain_deadline=10) == 0
        assert [sent_event(r)["id"] for r in sink.requests] == [f"d-{n}" for n in range(5)]
        assert engine.health(sub.key).delivered == 5


async def test_shutdown_past_the_deadline_counts_the_rest_as_dropped(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    engine: Dispatcher[Event] = Dispatcher(encode, observer=recorder)
    async with Sink(default=Reply(hang=True)) as sink:
        sub = target(sink.url, max_concurrency=1)
        engine.set_target(sub)
        for n in range(3):
            await engine.submit(sub, Event(f"x-{n}"))
        await sink.wait_for(1)
        with caplog.at_level(logging.ERROR, logger="openconnector.delivery"):
            assert await engine.close(drain_deadline=0.05) == 3

        health = engine.health(sub.key)
        assert health.dropped == 3
        last_error = health.snapshot()["lastError"]
        assert isinstance(last_error, dict)
        assert last_error["message"].startswith("dropped 3 (shutdown)")
        assert [outcome for _, _, outcome, _ in recorder.outcomes] == [FinalOutcome.DROPPED] * 3
        assert "dropped 3 undelivered events for EventSubscription/default/sub" in caplog.text

        with pytest.raises(DeliveryClosedError):
            await engine.submit(sub, Event("late"))
        assert not engine.try_submit(sub, Event("late"))
        assert health.dropped == 4


async def test_a_waiting_submitter_is_released_by_shutdown() -> None:
    engine: Dispatcher[Event] = Dispatcher(encode)
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        engine.set_target(sub)
        await engine.submit(sub, Event("w-1"))
        await sink.wait_for(1)
        await engine.submit(sub, Event("w-2"))
        waiting = asyncio.create_task(engine.submit(sub, Event("w-3")))
        await asyncio.sleep(0)
        closing = asyncio.create_task(engine.close(drain_deadline=0.05))
        with pytest.raises(DeliveryClosedError):
            async with asyncio.timeout(10):
                await waiting
        assert await closing == 2


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "ns/name"}, "key: must be a ResourceKey"),
        ({"key": sub_key("ns/")}, "key: must be a ResourceKey with a namespace and a name"),
        ({"url": "ftp://x/"}, "url: must be an absolute http:// or https:// URL"),
        ({"url": "http://user:pw@host/"}, "url: URL must not contain credentials"),
        ({"url": "http://host:99999/"}, "url: 'http://host:99999/' is not a valid URL"),
        ({"method": "GET"}, "method: must be one of POST, PUT, PATCH"),
        ({"content_mode": "batch"}, "content_mode: must be 'structured' or 'binary'"),
        ({"max_concurrency": 0}, "max_concurrency: must be a positive integer"),
        ({"queue_size": 0}, "queue_size: must be a positive integer"),
        (
            {"headers": {"Content-Type": "text/plain"}},
            "headers: header 'Content-Type' is set by the delivery",
        ),
        ({"headers": {"ce-id": "x"}}, "headers: header 'ce-id' is set by the delivery engine"),
        ({"headers": {"Authorization": "Bearer x"}}, "headers: put Authorization in auth headers"),
        ({"headers": {"bad header": "x"}}, "headers: 'bad header' is not a valid HTTP header name"),
        ({"auth_headers": {"Authorization": "Bearer x\r\nX-Evil: 1"}}, "auth_headers: value of header"),
        ({"signing_secret": "whsec_!!"}, "signing_secret: the signing secret is not base64"),
    ],
)
def test_delivery_target_validation(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"key": sub_key("ns/name"), "url": "http://127.0.0.1:8080/events"}
    fields.update(kwargs)
    with pytest.raises(ValueError, match="^" + re.escape(message)) as caught:
        DeliveryTarget(**fields)
    assert "Evil" not in str(caught.value)  # header values (maybe credentials) are never echoed


def test_a_target_copies_its_headers_and_hides_secrets_from_repr() -> None:
    headers = {"X-A": "1"}
    sub = DeliveryTarget(
        key=sub_key("ns/name"),
        url="http://127.0.0.1:8080/events?access_token=abc",
        headers=headers,
        auth_headers={"Authorization": f"Bearer {TOKEN}"},
        signing_secret=SIGNING_SECRET,
    )
    headers["X-A"] = "2"
    assert sub.headers["X-A"] == "1"
    assert TOKEN not in repr(sub)
    assert SIGNING_SECRET not in repr(sub)
    assert sub.redacted_url == "http://127.0.0.1:8080/events"


def test_dispatcher_rejects_a_key_mismatch() -> None:
    engine: Dispatcher[Event] = Dispatcher(encode)
    mismatch = "target.key: EventSubscription/a/b does not match the key being updated EventSubscription/c/d"
    with pytest.raises(ValueError, match=re.escape(mismatch)):
        engine.update_target(sub_key("c/d"), DeliveryTarget(key=sub_key("a/b"), url="http://127.0.0.1/"))


async def test_a_worker_cancelled_from_outside_counts_its_event_and_is_replaced(
    dispatcher: Dispatcher[Event], recorder: Recorder
) -> None:
    """kopf cancels tasks created after it started when it stops; the in-flight event is not lost silently."""
    async with Sink(Reply(hang=True)) as sink:
        sub = target(sink.url, max_concurrency=1)
        dispatcher.set_target(sub)
        await dispatcher.submit(sub, Event("c-1"))
        await sink.wait_for(1)
        (worker,) = [t for t in asyncio.all_tasks() if t.get_name().startswith(f"delivery:{sub.key}#")]
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        assert recorder.outcomes == [(sub.key, "c-1", FinalOutcome.DROPPED, "shutdown")]
        assert dispatcher.health(sub.key).dropped == 1

        await dispatcher.submit(sub, Event("c-2"))  # a new worker takes over
        await settle(dispatcher)
        assert dispatcher.health(sub.key).delivered == 1


# ------------------------------------------------------------- encoded lanes and byte accounting


class CountingEncoder:
    """The test encoder, counting calls per content mode; events whose id starts with "bad" fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ContentMode]] = []

    def __call__(self, event: Event, mode: ContentMode) -> tuple[dict[str, str], bytes]:
        self.calls.append((event.id, mode))
        if event.id.startswith("bad"):
            raise ValueError("data cannot be encoded")
        return encode(event, mode)


def size_of(event: Event, mode: ContentMode = ContentMode.STRUCTURED) -> int:
    return prepare(event, mode, encode).size


@pytest.fixture
def counting() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture
async def counted(
    counting: CountingEncoder, fake_time: FakeTime, recorder: Recorder
) -> AsyncIterator[Dispatcher[Event]]:
    engine: Dispatcher[Event] = Dispatcher(
        counting, observer=recorder, clock=fake_time.clock, sleep=fake_time.sleep, rng=MaxRng()
    )
    async with engine:
        yield engine


async def test_fan_out_encodes_once_per_mode_and_counts_shared_bytes_once(
    counted: Dispatcher[Event], counting: CountingEncoder
) -> None:
    gate = asyncio.Event()
    async with Sink(Reply(500), default=Reply(gate=gate)) as sink:
        first = target(sink.url, key=sub_key("ns/first"))
        second = target(sink.url, key=sub_key("ns/second"))
        binary = target(sink.url, key=sub_key("ns/binary"), content_mode=ContentMode.BINARY)
        for sub in (first, second, binary):
            counted.set_target(sub)
        event = Event("fan-1", data={"payload": "x" * 10_000})

        result = counted.offer([(first.key, event), (second.key, event), (binary.key, event)])

        assert (result.accepted, result.queued, result.skipped, result.full) == (True, 3, [], [])
        assert counting.calls == [("fan-1", ContentMode.STRUCTURED), ("fan-1", ContentMode.BINARY)]
        structured, binary_size = size_of(event), size_of(event, ContentMode.BINARY)
        assert structured > 10_000
        assert counted.queued_bytes(first.key) == counted.queued_bytes(second.key) == structured
        assert counted.queued_bytes(binary.key) == binary_size
        assert counted.queued_bytes() == structured + binary_size  # one held request per mode

        gate.set()
        await settle(counted)
        assert len(sink.requests) == 4  # one of them was a 500 and was retried ...
        assert len(counting.calls) == 2  # ... from the held bytes, not by encoding again
        assert counted.queued_bytes() == 0
        assert all(counted.queued_bytes(sub.key) == 0 for sub in (first, second, binary))


async def test_a_lane_is_bounded_by_bytes_as_well_as_by_count(
    counted: Dispatcher[Event], recorder: Recorder
) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        big = {"payload": "x" * 20_000}
        one = size_of(Event("b-0", data=big))
        sub = target(sink.url, max_concurrency=1, queue_bytes=3 * one + one // 2)
        counted.set_target(sub)
        for n in range(3):  # one in flight (its bytes stay held) and two waiting
            assert counted.offer([(sub.key, Event(f"b-{n}", data=big))]).accepted
        await sink.wait_for(1)
        assert counted.queued_bytes(sub.key) == 3 * one

        refused = counted.offer([(sub.key, Event("b-3", data=big))])
        assert (refused.accepted, refused.queued, refused.full, refused.too_large) == (
            False,
            0,
            [sub.key],
            [],
        )
        assert "the queue of default/sub is full" in refused.detail
        assert counted.queue_depth(sub.key) == 3
        assert counted.queued_bytes(sub.key) == 3 * one  # nothing was added
        small = counted.offer([(sub.key, Event("b-small"))])
        assert small.accepted  # the count limit (1000) is far away; a small event still fits

        assert not counted.try_submit(sub, Event("b-4", data=big))
        assert recorder.outcomes[-1] == (sub.key, "b-4", FinalOutcome.DROPPED, "queueFull")
        assert counted.health(sub.key).dropped == 1

        gate.set()
        await settle(counted)
        assert counted.health(sub.key).delivered == 4
        assert counted.queued_bytes() == 0


async def test_offer_is_all_or_nothing_and_wait_for_room_wakes_when_the_full_lane_drains(
    counted: Dispatcher[Event],
) -> None:
    gate = asyncio.Event()
    async with Sink() as open_sink, Sink(default=Reply(gate=gate)) as slow_sink:
        roomy = target(open_sink.url, key=sub_key("ns/roomy"))
        tight = target(slow_sink.url, key=sub_key("ns/tight"), max_concurrency=1, queue_size=1)
        counted.set_target(roomy)
        counted.set_target(tight)
        assert counted.offer([(tight.key, Event("t-1"))]).accepted
        await slow_sink.wait_for(1)  # t-1 in flight
        assert counted.offer([(tight.key, Event("t-2"))]).accepted  # t-2 waits: the lane is full
        held = counted.queued_bytes()

        event = Event("both")
        refused = counted.offer([(roomy.key, event), (tight.key, event)])

        assert (refused.accepted, refused.queued, refused.full, refused.too_large) == (
            False,
            0,
            [tight.key],
            [],
        )
        assert counted.queue_depth(roomy.key) == 0  # the lane with room got nothing either
        assert counted.queued_bytes() == held
        waiting = asyncio.create_task(counted.wait_for_room(refused.full))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        await settle(counted, roomy.key)
        assert open_sink.requests == []

        gate.set()  # t-1 completes, t-2 leaves the queue: room
        async with asyncio.timeout(10):
            await waiting
        accepted = counted.offer([(roomy.key, event), (tight.key, event)])
        assert (accepted.accepted, accepted.queued) == (True, 2)
        await settle(counted)
        assert [sent_event(r)["id"] for r in open_sink.requests] == ["both"]
        assert [sent_event(r)["id"] for r in slow_sink.requests] == ["t-1", "t-2", "both"]


async def test_the_global_byte_budget_refuses_whole_plans_and_wakes_waiters(
    counting: CountingEncoder, fake_time: FakeTime
) -> None:
    data = {"payload": "y" * 5_000}
    one = size_of(Event("g-1", data=data))
    engine: Dispatcher[Event] = Dispatcher(
        counting, max_queued_bytes=2 * one + one // 2, clock=fake_time.clock, sleep=fake_time.sleep
    )
    gate = asyncio.Event()
    async with engine, Sink(default=Reply(gate=gate)) as sink:
        a = target(sink.url, key=sub_key("ns/a"), max_concurrency=1)
        b = target(sink.url, key=sub_key("ns/b"), max_concurrency=1)
        engine.set_target(a)
        engine.set_target(b)
        shared = Event("g-1", data=data)
        assert engine.offer([(a.key, shared), (b.key, shared)]).accepted  # one request held twice
        assert engine.offer([(a.key, Event("g-2", data=data))]).accepted
        assert engine.queued_bytes() == 2 * one
        assert engine.queued_bytes(a.key) == 2 * one
        assert engine.queued_bytes(b.key) == one

        refused = engine.offer([(b.key, Event("g-3", data=data))])
        assert (refused.accepted, refused.full, refused.budget_needed) == (False, [], one)
        assert "delivery buffer is full" in refused.detail
        assert engine.queue_depth(b.key) == 1

        waiting = asyncio.create_task(engine.wait_for_room(refused.full, needed_bytes=refused.budget_needed))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        gate.set()
        async with asyncio.timeout(10):
            await waiting
        assert engine.max_queued_bytes - engine.queued_bytes() >= one
        assert engine.offer([(b.key, Event("g-3", data=data))]).accepted
        await settle(engine)
        assert len(sink.requests) == 4


async def test_an_event_that_can_never_fit_is_reported_not_waited_for(
    counted: Dispatcher[Event], recorder: Recorder, fake_time: FakeTime
) -> None:
    huge = Event("huge", data={"payload": "z" * 50_000})
    async with Sink() as sink:
        sub = target(sink.url, queue_bytes=10_000)
        counted.set_target(sub)

        result = counted.offer([(sub.key, huge)])
        assert (result.accepted, result.too_large, result.full, result.budget_needed) == (
            False,
            [sub.key],
            [],
            0,
        )
        assert "holds at most" in result.detail
        with pytest.raises(EventTooLargeError, match="default/sub"):
            async with asyncio.timeout(10):
                await counted.submit(sub, huge)
        assert not counted.try_submit(sub, huge)
        assert recorder.outcomes == [(sub.key, "huge", FinalOutcome.DROPPED, "tooLarge")]

        over_queue_size = target(sink.url, key=sub_key("ns/two"), queue_size=1)
        counted.set_target(over_queue_size)
        batch = counted.offer([(over_queue_size.key, Event("x-1")), (over_queue_size.key, Event("x-2"))])
        assert (batch.accepted, batch.too_large) == (False, [over_queue_size.key])

    budget: Dispatcher[Event] = Dispatcher(encode, max_queued_bytes=20_000, clock=fake_time.clock)
    async with budget:
        budget.set_target(target("http://127.0.0.1:9/", key=sub_key("ns/a")))
        budget.set_target(target("http://127.0.0.1:9/", key=sub_key("ns/b")))
        whole = budget.offer([(sub_key("ns/a"), huge), (sub_key("ns/b"), huge)])
        assert (whole.accepted, whole.too_large) == (False, [sub_key("ns/a"), sub_key("ns/b")])
        assert "the gateway holds at most" in whole.detail
        assert budget.queued_bytes() == 0


async def test_an_event_that_cannot_be_encoded_is_dropped_with_a_reason_and_the_rest_queued(
    counted: Dispatcher[Event], recorder: Recorder
) -> None:
    async with Sink() as sink:
        sub = target(sink.url)
        counted.set_target(sub)
        result = counted.offer([(sub.key, Event("bad-1")), (sub.key, Event("good-1"))])
        assert (result.accepted, result.queued, result.dropped) == (True, 1, [sub.key])
        await settle(counted)
        assert [sent_event(r)["id"] for r in sink.requests] == ["good-1"]
        health = counted.health(sub.key)
        assert (health.delivered, health.dropped) == (1, 1)
        last_error = health.snapshot()["lastError"]
        assert isinstance(last_error, dict)
        assert (
            last_error["message"]
            == "dropped (encodingFailed): encoding failed: ValueError: data cannot be encoded"
        )
        assert (sub.key, "bad-1", FinalOutcome.DROPPED, "encodingFailed") in recorder.outcomes


# ------------------------------------------------------------------- lanes only from the table


async def test_a_removed_target_is_never_resurrected_by_intake(
    dispatcher: Dispatcher[Event], recorder: Recorder
) -> None:
    async with Sink() as sink:
        sub = target(sink.url)
        dispatcher.set_target(sub)
        assert await dispatcher.remove_target(sub.key) == 0

        with pytest.raises(DeliveryClosedError, match="no delivery target EventSubscription/default/sub"):
            await dispatcher.submit(sub, Event("late-1"))
        assert not dispatcher.try_submit(sub, Event("late-2"))
        result = dispatcher.offer([(sub.key, Event("late-3"))])
        assert (result.accepted, result.queued, result.skipped) == (True, 0, [sub.key])
        async with asyncio.timeout(10):
            await dispatcher.wait_for_room([sub.key])  # returns at once: re-plan, the key is gone

        assert sub.key not in dispatcher.target_keys()
        assert recorder.outcomes == [(sub.key, "late-2", FinalOutcome.DROPPED, "unknownTarget")]
        await asyncio.sleep(0.05)
        assert sink.requests == []


async def test_a_submitter_waiting_on_a_removed_target_fails_instead_of_recreating_it(
    dispatcher: Dispatcher[Event],
) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        dispatcher.set_target(sub)
        await dispatcher.submit(sub, Event("r-1"))
        await sink.wait_for(1)
        await dispatcher.submit(sub, Event("r-2"))
        waiting = asyncio.create_task(dispatcher.submit(sub, Event("r-3")))
        for _ in range(5):
            await asyncio.sleep(0)
        removing = asyncio.create_task(dispatcher.remove_target(sub.key, drain_deadline=0.05))
        with pytest.raises(DeliveryClosedError):
            async with asyncio.timeout(10):
                await waiting
        assert await removing == 2
        assert sub.key not in dispatcher.target_keys()


async def test_offer_and_wait_for_room_after_close() -> None:
    engine: Dispatcher[Event] = Dispatcher(encode)
    engine.set_target(target("http://127.0.0.1:9/"))
    await engine.close()
    with pytest.raises(DeliveryClosedError):
        engine.offer([(sub_key("default/sub"), Event("late"))])
    async with asyncio.timeout(10):
        await engine.wait_for_room([sub_key("default/sub")])


async def test_a_content_mode_change_converts_queued_events(bus: Bus) -> None:
    gate = asyncio.Event()
    async with Sink(Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1)
        bus.set_target(sub)
        for n in range(3):
            await bus.submit(sub, Event(f"m-{n}"))
        await sink.wait_for(1)
        bus.update_target(sub.key, replace(sub, content_mode=ContentMode.BINARY))
        gate.set()
        await settle(bus)

        first, *later = sink.requests
        assert sent_event(first)["id"] == "m-0"  # was in flight: structured
        assert [r.headers["ce-id"] for r in later] == ["m-1", "m-2"]
        assert all(r.headers["Content-Type"] == "application/json" for r in later)
        assert [json.loads(r.body) for r in later] == [{"zaak": "abc123"}] * 2


# ------------------------------------------------------------------- Retry-After and webhook-id


async def test_a_retry_after_with_thousands_of_digits_waits_the_cap_and_delivers(
    bus: Bus, recorder: Recorder
) -> None:
    policy = replace(FAST, retry_after_max=1.0)
    async with Sink(Reply(429, headers={"Retry-After": "9" * 5000})) as sink:
        sub = target(sink.url, policy=policy)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-huge-ra"))
        await settle(bus)
        assert len(sink.requests) == 2
        assert retry_waits(bus, sub.key) == [1.0]
        assert recorder.outcomes == [(sub.key, "e-huge-ra", FinalOutcome.DELIVERED, None)]


async def test_webhook_id_is_unique_per_source_and_id(bus: Bus) -> None:
    async with Sink() as sink:
        sub = target(sink.url, signing_secret=SIGNING_SECRET)
        bus.set_target(sub)
        await bus.submit(sub, Event("1", source="urn:example:a"))
        await bus.submit(sub, Event("1", source="urn:example:b"))
        await settle(bus)
        ids = [r.headers["webhook-id"] for r in sink.requests]
        assert ids == [webhook_message_id("urn:example:a", "1"), webhook_message_id("urn:example:b", "1")]
        assert ids[0] != ids[1]


# --------------------------------------------------------- dead letters with the real CloudEvents


def cloudevents_encode(event: CloudEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    """What the gateway injects."""
    return to_binary(event) if mode is ContentMode.BINARY else to_structured(event)


@pytest.mark.parametrize("mode", [ContentMode.STRUCTURED, ContentMode.BINARY])
async def test_dead_letters_are_structured_cloudevents_with_error_extensions_in_both_modes(
    fake_time: FakeTime, mode: ContentMode
) -> None:
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": "zaak-42",
            "source": "urn:nld:oin:00000001823288444000:systeem:zaken",
            "type": "nl.vng.zgw.zaken.zaak.created",
            "time": "2026-11-28T08:00:00Z",
            "datacontenttype": "application/json",
            "sequence": "42",
            "sequencetype": "Integer",
        },
        {"zaak": "abc123", "omschrijving": "caf\u00e9 \u2013 ok"},
    )
    engine: Dispatcher[CloudEvent] = Dispatcher(
        cloudevents_encode, clock=fake_time.clock, sleep=fake_time.sleep, rng=MaxRng()
    )
    error_body = b'{"error": "kapot"}'
    async with engine, Sink() as dead_letters, Sink(default=Reply(500, body=error_body)) as sink:
        policy = replace(FAST, retries=1, dead_letter=dead_letters.url)
        sub = target(sink.url + "?token=hidden", policy=policy, content_mode=mode)
        engine.set_target(sub)
        assert engine.offer([(sub.key, event)]).accepted
        await settle(engine)

        assert len(sink.requests) == 2
        if mode is ContentMode.BINARY:
            assert sink.requests[0].headers["ce-id"] == "zaak-42"
        (letter,) = dead_letters.requests
        assert letter.headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        document = sent_event(letter)
        assert document == {
            **event.attributes,
            "data": event.data,
            "ocerrordest": sink.url,
            "ocerrorcode": 500,
            "ocerrordata": base64.b64encode(error_body).decode(),
        }
        assert engine.health(sub.key).dead_lettered == 1


async def test_dead_letters_of_a_custom_encoder_in_binary_mode(bus: Bus) -> None:
    async with Sink() as dead_letters, Sink(default=Reply(400, body=b"nope")) as sink:
        policy = replace(FAST, dead_letter=dead_letters.url)
        sub = target(sink.url, policy=policy, content_mode=ContentMode.BINARY)
        bus.set_target(sub)
        await bus.submit(sub, Event("e-bin-dl"))
        await settle(bus)
        document = sent_event(dead_letters.requests[0])
        assert (document["id"], document["data"]) == ("e-bin-dl", {"zaak": "abc123"})
        assert (document["ocerrorcode"], base64.b64decode(document["ocerrordata"])) == (400, b"nope")


# -------------------------------------------------------- wake-ups: one per freed slot, none lost


async def publish(
    engine: Dispatcher[Event], plan: list[tuple[ResourceKey, Event]], offers: list[str], name: str
) -> None:
    """The gateway's loop: offer the plan, and after a refusal wait for room and offer again."""
    while True:
        offers.append(name)
        result = engine.offer(plan)
        if result.accepted:
            return
        assert not result.too_large
        await engine.wait_for_room(result.full, needed_bytes=result.budget_needed)


async def spin(turns: int = 20) -> None:
    """Let every runnable task run (no real time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def fill(engine: Dispatcher[Event], sink: Sink, *subs: DeliveryTarget) -> None:
    """Leave each lane (max_concurrency=1, queue_size=1) full: one event in flight, one queued."""
    for sub in subs:
        assert engine.offer([(sub.key, Event(f"{sub.key}:in-flight"))]).accepted
    await sink.wait_for(len(subs))
    for sub in subs:
        assert engine.offer([(sub.key, Event(f"{sub.key}:queued"))]).accepted


async def test_each_freed_slot_wakes_one_waiter_in_arrival_order_and_none_is_lost(
    dispatcher: Dispatcher[Event],
) -> None:
    senders = 6
    first, rest = asyncio.Event(), asyncio.Event()
    async with Sink(Reply(gate=first), default=Reply(gate=rest)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        dispatcher.set_target(sub)
        await fill(dispatcher, sink, sub)
        offers: list[str] = []
        names = [f"s-{n}" for n in range(senders)]
        tasks = [
            asyncio.create_task(publish(dispatcher, [(sub.key, Event(name))], offers, name)) for name in names
        ]
        await spin()
        assert offers == names  # all refused once, all waiting

        first.set()  # the first event is delivered, the queued one leaves the queue: one free slot
        await sink.wait_for(2)
        await spin()
        assert offers[senders:] == ["s-0"]  # one waiter woken (the longest waiting), not the herd
        assert [task.done() for task in tasks] == [True] + [False] * (senders - 1)

        rest.set()  # from now on every freed slot goes to the next waiter
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
        await settle(dispatcher)
        delivered = [sent_event(r)["id"] for r in sink.requests]
        assert delivered == [f"{sub.key}:in-flight", f"{sub.key}:queued", *names]
        assert len(offers) == 2 * senders  # every sender refused once, queued on its first wake-up


async def test_a_woken_waiter_that_does_not_use_the_room_passes_it_on(dispatcher: Dispatcher[Event]) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        other = target(sink.url, key=sub_key("default/other"), max_concurrency=1, queue_size=1)
        dispatcher.set_target(sub)
        dispatcher.set_target(other)
        await fill(dispatcher, sink, sub, other)
        offers: list[str] = []
        both_event = Event("both")
        # In arrival order: a plan that also needs the other (full) lane, a caller that leaves as soon
        # as it is woken, and a sender that only needs `sub`.
        both = asyncio.create_task(
            publish(dispatcher, [(sub.key, both_event), (other.key, both_event)], offers, "both")
        )
        leaver = asyncio.create_task(dispatcher.wait_for_room([sub.key]))
        single = asyncio.create_task(publish(dispatcher, [(sub.key, Event("single"))], offers, "single"))
        await spin()
        assert offers == ["both", "single"]

        dispatcher.update_target(sub.key, replace(sub, queue_size=2))  # exactly one more slot in `sub`
        async with asyncio.timeout(10):
            await single  # `both` was refused again and `leaver` left: each handed the slot on
            await leaver
        assert offers == ["both", "single", "both", "single"]
        assert not both.done()  # still waiting for `other`
        assert dispatcher.queue_depth(sub.key) == 3

        gate.set()
        async with asyncio.timeout(10):
            await both
        await settle(dispatcher)
        assert sorted(sent_event(r)["id"] for r in sink.requests).count("both") == 2


async def test_waiters_needing_more_than_was_freed_are_asked_once_not_in_a_loop(
    dispatcher: Dispatcher[Event],
) -> None:
    first, rest = asyncio.Event(), asyncio.Event()
    async with Sink(Reply(gate=first), default=Reply(gate=rest)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=2)
        dispatcher.set_target(sub)
        assert dispatcher.offer([(sub.key, Event("in-flight"))]).accepted
        await sink.wait_for(1)
        assert dispatcher.offer([(sub.key, Event("q-1")), (sub.key, Event("q-2"))]).accepted
        offers: list[str] = []
        pairs = {
            name: asyncio.create_task(
                publish(
                    dispatcher, [(sub.key, Event(f"{name}-1")), (sub.key, Event(f"{name}-2"))], offers, name
                )
            )
            for name in ("a", "b")
        }
        await spin()
        assert offers == ["a", "b"]

        first.set()  # one slot frees up; each pair needs two
        await sink.wait_for(2)
        await spin(100)
        assert offers == ["a", "b", "a", "b"]  # each tried once for that slot, then left waiting

        rest.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*pairs.values())
        await settle(dispatcher)
        assert dispatcher.health(sub.key).delivered == 7


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on(dispatcher: Dispatcher[Event]) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        dispatcher.set_target(sub)
        await fill(dispatcher, sink, sub)
        timing_out = asyncio.create_task(dispatcher.wait_for_room([sub.key]))
        offers: list[str] = []
        patient = asyncio.create_task(publish(dispatcher, [(sub.key, Event("patient"))], offers, "patient"))
        await spin()

        dispatcher.update_target(sub.key, replace(sub, queue_size=2))  # one more slot: `timing_out`'s turn
        timing_out.cancel()  # ... but its caller gives up before it runs (as a timeout would)
        async with asyncio.timeout(10):
            await patient
        with pytest.raises(asyncio.CancelledError):
            await timing_out
        assert offers == ["patient", "patient"]
        gate.set()
        await settle(dispatcher)
        assert dispatcher.health(sub.key).delivered == 3


async def test_budget_waiters_are_woken_as_far_as_the_freed_bytes_go_and_pass_them_on(
    counting: CountingEncoder, fake_time: FakeTime
) -> None:
    data = {"payload": "y" * 5_000}
    one = size_of(Event("g-0", data=data))
    engine: Dispatcher[Event] = Dispatcher(
        counting, max_queued_bytes=2 * one + one // 2, clock=fake_time.clock, sleep=fake_time.sleep
    )
    first, rest = asyncio.Event(), asyncio.Event()
    async with engine, Sink(Reply(gate=first), default=Reply(gate=rest)) as sink:
        keys = [sub_key("ns/a"), sub_key("ns/b"), sub_key("ns/c"), sub_key("ns/d")]
        for key in keys:
            engine.set_target(target(sink.url, key=key, max_concurrency=1))
        assert engine.offer([(sub_key("ns/a"), Event("g-0", data=data))]).accepted
        b = sub_key("ns/b")
        assert engine.offer([(b, Event("g-1", data=data))]).accepted  # the budget holds no third
        await sink.wait_for(2)
        leaver = asyncio.create_task(engine.wait_for_room([], needed_bytes=one))
        offers: list[str] = []
        senders = [
            asyncio.create_task(publish(engine, [(key, Event(f"g-{key.name}", data=data))], offers, key.name))
            for key in (sub_key("ns/c"), sub_key("ns/d"))
        ]
        await spin()
        assert offers == ["c", "d"]

        first.set()  # one request delivered: its bytes make room for one more, not two
        async with asyncio.timeout(10):
            await leaver  # woken first; it leaves without offering, so the bytes go to the next
            await senders[0]
        await spin()
        assert offers == ["c", "d", "c"]  # ns/d was not woken for bytes it could not have
        assert not senders[1].done()

        rest.set()
        async with asyncio.timeout(10):
            await senders[1]
        await settle(engine)
        assert offers == ["c", "d", "c", "d"]
        assert len(sink.requests) == 4


async def test_many_senders_on_shared_full_lanes_all_get_through(dispatcher: Dispatcher[Event]) -> None:
    """No lost wake-ups under churn: plans over several small lanes, some senders giving up midway."""
    async with Sink(default=Reply(delay=0.001)) as sink:
        keys = [sub_key(f"ns/lane-{n}") for n in range(3)]
        for key in keys:
            dispatcher.set_target(target(sink.url, key=key, max_concurrency=1, queue_size=2))
        offers: list[str] = []

        async def sender(n: int) -> None:
            for i in range(3):
                event = Event(f"{n}-{i}")
                plan = [(keys[(n + k) % len(keys)], event) for k in range(1 + n % 2)]
                await publish(dispatcher, plan, offers, str(n))

        async def quitter() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.01):
                    await dispatcher.wait_for_room(keys[:1])

        quitters = [asyncio.create_task(quitter()) for _ in range(5)]
        async with asyncio.timeout(30):
            await asyncio.gather(*(sender(n) for n in range(24)), *quitters)
        await settle(dispatcher)
        expected = sum(3 * (1 + n % 2) for n in range(24))
        assert sum(dispatcher.health(key).delivered for key in keys) == expected
        assert len(sink.requests) == expected


async def test_a_refusal_describes_the_lane_as_it_was_when_refused(dispatcher: Dispatcher[Event]) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=1, queue_size=1)
        dispatcher.set_target(sub)
        await fill(dispatcher, sink, sub)
        refused = dispatcher.offer([(sub.key, Event("late"))])
        gate.set()
        await settle(dispatcher)
        # Formatted only now, from the figures at refusal time.
        assert refused.detail == (
            "the queue of default/sub is full (1 of 1 events waiting, 0.0 MiB of 32.0 MiB held)"
        )


# ------------------------------------------------------------------------------ lazy lanes


async def until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let other tasks run until ``condition`` holds (bounded: no real time involved)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still false after {turns} turns of the event loop")


def lane_tasks(key: ResourceKey) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"delivery:{key}#")]


async def test_a_lane_gets_its_queue_and_workers_on_its_first_event_and_lets_go_when_idle(
    fake_time: FakeTime, recorder: Recorder
) -> None:
    engine: Dispatcher[Event] = Dispatcher(
        encode, observer=recorder, clock=fake_time.clock, sleep=fake_time.sleep, idle_lane_seconds=0
    )
    async with engine, Sink() as sink:
        sub = target(sink.url, max_concurrency=4)
        engine.set_target(sub)
        assert not engine.lane_active(sub.key)
        assert lane_tasks(sub.key) == []
        assert engine.queue_depth(sub.key) == 0
        assert engine.health(sub.key).condition.reason == "NoDeliveries"  # status works before any event
        assert len(engine.attempts(sub.key)) == 0
        await engine.join(sub.key)  # nothing to wait for

        assert engine.offer([(sub.key, Event("l-1"))]).accepted
        assert engine.lane_active(sub.key)
        assert len(lane_tasks(sub.key)) == 1  # one event: one worker, not max_concurrency of them
        await settle(engine)
        await until(lambda: not engine.lane_active(sub.key))  # empty: queue and workers let go
        assert lane_tasks(sub.key) == []

        await engine.submit(sub, Event("l-2"))  # a fresh queue and worker
        await settle(engine)
        assert [sent_event(r)["id"] for r in sink.requests] == ["l-1", "l-2"]
        assert engine.health(sub.key).delivered == 2  # health and attempt log outlive the queue
        assert [a.event_id for a in engine.attempts(sub.key)] == ["l-1", "l-2"]


async def test_a_busy_lane_starts_workers_as_its_backlog_needs_them(dispatcher: Dispatcher[Event]) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        sub = target(sink.url, max_concurrency=3)
        dispatcher.set_target(sub)
        assert dispatcher.offer([(sub.key, Event("b-1")), (sub.key, Event("b-2"))]).accepted
        assert len(lane_tasks(sub.key)) == 2
        for n in range(3, 7):
            assert dispatcher.offer([(sub.key, Event(f"b-{n}"))]).accepted
        assert len(lane_tasks(sub.key)) == 3  # never more than max_concurrency
        await sink.wait_for(3)
        gate.set()
        await settle(dispatcher)
        assert dispatcher.health(sub.key).delivered == 6


async def test_a_lane_paused_while_idle_stays_paused_when_it_gets_work_again(
    fake_time: FakeTime, recorder: Recorder
) -> None:
    engine: Dispatcher[Event] = Dispatcher(
        encode, observer=recorder, clock=fake_time.clock, sleep=fake_time.sleep, idle_lane_seconds=0
    )
    async with engine, Sink(Reply(410)) as sink:
        sub = target(sink.url)
        engine.set_target(sub)
        await engine.submit(sub, Event("p-1"))
        await settle(engine)
        await until(lambda: not engine.lane_active(sub.key))
        assert engine.health(sub.key).paused

        await engine.submit(sub, Event("p-2"))
        await settle(engine)
        assert len(sink.requests) == 1  # nothing sent to a paused target
        assert recorder.outcomes[-1] == (sub.key, "p-2", FinalOutcome.DROPPED, "noDeadLetterSink")


async def test_removing_or_closing_lanes_that_never_had_work(fake_time: FakeTime) -> None:
    engine: Dispatcher[Event] = Dispatcher(encode, clock=fake_time.clock)
    for n in range(3):
        engine.set_target(target("http://127.0.0.1:9/", key=sub_key(f"ns/quiet-{n}")))
    assert await engine.remove_target(sub_key("ns/quiet-0")) == 0
    assert engine.target_keys() == [sub_key("ns/quiet-1"), sub_key("ns/quiet-2")]
    assert await engine.close(drain_deadline=0) == 0
