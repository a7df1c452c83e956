"""What only the JetStream bus promises: stored means kept (across processes, restarts and outages),
requests are stored atomically and once, and the gateway answers 503 (never 202) while it cannot store.

Each test runs its own nats-server (127.0.0.1, free port, temp store) so it can stop and restart it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import nats
import orjson
import pytest
import yaml
from nats.aio.client import Client as NatsClient
from nats.js.api import RetentionPolicy, StreamConfig

from openconnector.api.keys import ResourceKey
from openconnector.delivery import BusUnavailableError, DeliveryTarget
from openconnector.delivery.durable import consumer_name
from openconnector.delivery.jetstream import JetStreamBus, JetStreamReplayStore, JetStreamSettings
from openconnector.standalone import StandaloneGateway
from tests.component.client import assert_problem, call, post
from tests.component.conftest import StartGateway
from tests.component.natsserver import NatsServer
from tests.component.sinks import Reply, Sink
from tests.component.test_delivery_engine import FAST, Event, Recorder, encode
from tests.component.test_webhook_ingress import JSON, PAYLOAD, assert_forwarded, hmac_headers
from tests.component.test_webhook_ingress import manifests as webhook_manifests
from tests.support.keys import sub_key

# Every wait on NATS below is bounded: a hang fails its test in seconds, naming the step, instead of
# sitting until pytest-timeout's 300 s (a whole-suite run on 2 busy cores once did).
pytestmark = pytest.mark.timeout(120)

_streams = itertools.count(1)
T = TypeVar("T")
STEP = 20.0  # seconds any single step against a local nats-server may take, even on a loaded machine


async def bounded(step: Awaitable[T], what: str, seconds: float = STEP) -> T:
    """``await step``, failing the test with ``what`` after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        pytest.fail(f"{what}: no answer in {seconds:.0f} s")


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as nats_server:
        yield nats_server


def settings_for(server: NatsServer, stream: str, **overrides: Any) -> JetStreamSettings:
    return JetStreamSettings(servers=(server.url,), stream=stream, publish_timeout=2.0, **overrides)


class Buses:
    """Bus processes on one stream; every one still running is closed at the end of the test."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.stream = f"S{next(_streams)}"
        self.running: list[JetStreamBus[Event]] = []

    async def start(self, recorder: Recorder | None = None, **overrides: Any) -> JetStreamBus[Event]:
        bus: JetStreamBus[Event] = JetStreamBus(
            encode,
            settings_for(self.server, self.stream, **overrides),
            observer=recorder,
            on_paused=recorder.on_paused if recorder else None,
        )
        self.running.append(bus)
        await bounded(bus.start(), "starting a bus")
        await bus.wait_ready(STEP)
        return bus


@pytest.fixture
async def buses(server: NatsServer) -> AsyncIterator[Buses]:
    started = Buses(server)
    yield started
    for bus in started.running:
        await bounded(bus.close(drain_deadline=0.1), "closing a bus")


async def settle(bus: JetStreamBus[Event], key: ResourceKey | None = None) -> None:
    async with asyncio.timeout(20):
        await bus.join(key)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    """Poll ``check`` (bounded): for states that change outside this process (NATS going away)."""
    async with asyncio.timeout(seconds):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.05)


def ids(sink: Sink) -> list[str]:
    return [str(json.loads(request.body)["id"]) for request in sink.requests]


async def test_what_a_stopped_process_left_is_delivered_by_the_next(buses: Buses) -> None:
    async with Sink(default=Reply(hang=True)) as stuck, Sink() as sink:
        first = await buses.start()
        sub = DeliveryTarget(key=sub_key("default/sub"), url=stuck.url, policy=FAST, max_concurrency=1)
        first.set_target(sub)
        for n in range(3):
            await first.submit(sub, Event(f"k-{n}"))
        await stuck.wait_for(1)
        assert await first.close(drain_deadline=0.05) == 0  # nothing dropped: it stays stored

        second = await buses.start()
        second.set_target(replace(sub, url=sink.url))
        await settle(second)
        print(f"delivered by the next process: {ids(sink)}")
        assert sorted(ids(sink)) == ["k-0", "k-1", "k-2"]
        assert second.health(sub.key).delivered == 3


async def test_two_processes_share_the_work_and_max_concurrency_bounds_both(buses: Buses) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        first, second = await buses.start(), await buses.start()
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=FAST, max_concurrency=2)
        first.set_target(sub)
        second.set_target(sub)
        for n in range(10):
            await (first if n % 2 else second).submit(sub, Event(f"s-{n}"))
        await sink.wait_for(2)
        await asyncio.sleep(0.3)  # room for a third request, if anything allowed one
        assert len(sink.requests) == 2  # MaxAckPending = maxConcurrency, across both processes
        gate.set()
        await settle(first)
        await settle(second)
        shares = (first.health(sub.key).delivered, second.health(sub.key).delivered)
        print(f"delivered by each process: {shares}")
        assert sorted(ids(sink)) == sorted(f"s-{n}" for n in range(10))
        assert sum(shares) == 10


async def test_a_retried_request_is_stored_once_within_the_duplicate_window(buses: Buses) -> None:
    async with Sink() as sink:
        bus = await buses.start()
        a = DeliveryTarget(key=sub_key("default/a"), url=sink.url, policy=FAST)
        b = DeliveryTarget(key=sub_key("default/b"), url=sink.url, policy=FAST)
        bus.set_target(a)
        bus.set_target(b)
        fan_out = [(a.key, Event("d-1")), (b.key, Event("d-1")), (a.key, Event("d-2"))]
        for _ in range(3):  # the sender retries, e.g. because our 202 got lost
            assert (await bus.store(fan_out)).accepted
            assert (await bus.store([(b.key, Event("d-3"))])).accepted
        await settle(bus)
        print(f"requests to the sink: {len(sink.requests)}")
        assert sorted(ids(sink)) == ["d-1", "d-1", "d-2", "d-3"]


async def test_a_full_stream_refuses_the_whole_request_and_stores_none_of_it(buses: Buses) -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        bus = await buses.start(max_bytes=4096)
        a = DeliveryTarget(key=sub_key("default/a"), url=sink.url, policy=FAST)
        b = DeliveryTarget(key=sub_key("default/b"), url=sink.url, policy=FAST)
        bus.set_target(a)
        bus.set_target(b)
        assert (await bus.store([(a.key, Event("fits"))])).accepted
        big = Event("too-much", data={"blob": "x" * 1500})
        with pytest.raises(BusUnavailableError) as refused:
            await bus.store([(a.key, big), (b.key, big), (a.key, Event("small"))])
        print(f"refused: {refused.value.detail}")
        assert "refused to store" in refused.value.detail
        gate.set()
        await settle(bus)
        assert ids(sink) == ["fits"]  # nothing of the refused request is delivered


async def test_a_re_created_subscription_gets_only_what_is_published_after_it_became_live(
    buses: Buses,
) -> None:
    recorder = Recorder()
    gate = asyncio.Event()
    async with Sink(Reply(gate=gate)) as held, Sink() as sink:
        bus = await buses.start(recorder)
        sub = DeliveryTarget(key=sub_key("default/sub"), url=held.url, policy=FAST, max_concurrency=1)
        bus.set_target(sub)
        for n in range(3):
            await bus.submit(sub, Event(f"old-{n}"))
        await held.wait_for(1)
        assert await bus.remove_target(sub.key, drain_deadline=0.05) == 3  # its consumer is deleted
        gate.set()

        bus.set_target(replace(sub, url=sink.url))  # the same name, a new subscription
        await bus.submit(sub, Event("new"))
        await settle(bus)
        assert ids(sink) == ["new"]
        dropped = [reason for _, _, outcome, reason in recorder.outcomes if reason == "removed"]
        assert len(dropped) == 3


async def test_nats_down_refuses_then_recovers(server: NatsServer, buses: Buses) -> None:
    async with Sink() as sink:
        bus = await buses.start(storage="file")
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=FAST)
        bus.set_target(sub)
        await bus.submit(sub, Event("before"))
        await settle(bus)

        server.stop()

        async def down() -> bool:
            return not bus.ready

        async def up() -> bool:
            return bus.ready

        await until(down)
        assert "not available" in bus.readiness_detail
        with pytest.raises(BusUnavailableError) as refused:
            await bus.submit(sub, Event("during"))
        assert refused.value.retry_after > 0

        server.start()
        await until(up)
        await bus.submit(sub, Event("after"))
        await settle(bus)
        # At least once: an ack not yet written to disk when NATS was killed is delivered again.
        print(f"delivered: {ids(sink)}")
        assert set(ids(sink)) == {"before", "after"}


async def test_a_suspension_survives_a_restart_until_the_configuration_changes(buses: Buses) -> None:
    recorder = Recorder()
    async with Sink(default=Reply(410)) as gone, Sink() as sink:
        first = await buses.start(recorder)
        sub = DeliveryTarget(key=sub_key("default/sub"), url=gone.url, policy=FAST)
        first.set_target(sub)
        await first.submit(sub, Event("g-1"))
        await settle(first)
        assert first.health(sub.key).paused
        await asyncio.sleep(0.2)  # the suspension is written in the background
        await first.close()

        second = await buses.start()
        second.set_target(sub)
        await settle(second)
        assert second.health(sub.key).paused  # from the KV bucket
        assert second.health(sub.key).condition.reason == "EndpointGone"
        await second.close()

        third = await buses.start()
        third.set_target(replace(sub, url=sink.url))  # the spec changed meanwhile
        await settle(third)
        assert not third.health(sub.key).paused
        await third.submit(sub, Event("g-2"))
        await settle(third)
        assert ids(sink) == ["g-2"]


async def test_the_attempt_log_survives_a_restart(buses: Buses) -> None:
    async with Sink(Reply(500)) as sink:
        first = await buses.start()
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=FAST)
        first.set_target(sub)
        await first.submit(sub, Event("a-1"))
        await settle(first)
        assert [a.status_code for a in first.attempts(sub.key)] == [500, 200]
        await asyncio.sleep(0.2)  # attempts are published without waiting
        await first.close()

        second = await buses.start()
        second.set_target(sub)
        await settle(second)
        assert [(a.event_id, a.status_code) for a in second.attempts(sub.key)] == [("a-1", 500), ("a-1", 200)]


async def test_replay_guard_ids_are_shared_and_survive_a_restart(buses: Buses) -> None:
    key = "consumer\x00msg_1"
    first = await buses.start()
    store = JetStreamReplayStore(first)
    assert await bounded(store.remember(key, now=0.0, ttl=60), "remembering an id")
    assert not await bounded(store.remember(key, now=0.0, ttl=60), "remembering it again")
    await bounded(first.close(), "closing the first process")

    second = await buses.start()
    again = JetStreamReplayStore(second)
    # refused after the restart too
    assert not await bounded(again.remember(key, now=0.0, ttl=60), "remembering it after a restart")
    await bounded(again.forget(key), "forgetting it")
    assert await bounded(again.remember(key, now=0.0, ttl=60), "remembering it once forgotten")


async def test_closing_right_after_start_never_hangs(buses: Buses) -> None:
    # close() once waited for ever: it cancelled the suspension watcher while nats-py was setting it up,
    # and the cancellation was swallowed. Closing at once after start aims at that moment (the race is
    # rare; on a loaded machine it was seen about once in 15 runs of this file).
    for round_ in range(5):
        bus = await buses.start()
        await bounded(bus.close(drain_deadline=0.1), f"closing right after start (round {round_})")
        assert bus.closed


# ----------------------------------------------------------------------------- the gateway


ZAAK_TYPE = "nl.example.zaak.created"
SOURCE = "urn:example:zaken"


def manifests(directory: Path, sink: Sink) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    api = "openconnector.nl/v1alpha1"
    docs = [
        {
            "apiVersion": api,
            "kind": "Event",
            "metadata": {"name": "zaak"},
            "spec": {"type": ZAAK_TYPE, "source": SOURCE, "profile": "cloudevents"},
        },
        {
            "apiVersion": api,
            "kind": "EventSubscription",
            "metadata": {"name": "sub"},
            "spec": {"eventType": ZAAK_TYPE, "endpoint": sink.url, "delivery": {"retries": 0}},
        },
    ]
    (directory / "m.yaml").write_text(yaml.safe_dump_all(docs))
    return directory


def event(event_id: str) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": event_id, "source": SOURCE, "type": ZAAK_TYPE})


async def test_the_gateway_answers_503_never_202_while_nats_is_down(
    server: NatsServer, tmp_path: Path, start_gateway: StartGateway
) -> None:
    headers = {"Content-Type": "application/cloudevents+json"}
    async with Sink() as sink:
        jetstream = settings_for(server, f"G{next(_streams)}", storage="file")
        gw = await start_gateway(manifests(tmp_path / "m", sink), bus="jetstream", jetstream=jetstream)

        async def ready() -> bool:
            return (await call("GET", f"{gw.url}/readyz")).status == 200

        async def not_ready() -> bool:
            return not await ready()

        await until(ready)
        assert (await post(f"{gw.url}/events", event("e-1"), headers)).status == 202
        await sink.wait_for(1)

        server.stop()
        await until(not_ready)
        assert_problem(await call("GET", f"{gw.url}/readyz"), 503, "bus-unavailable")
        refused = await post(f"{gw.url}/events", event("e-2"), headers)
        body = assert_problem(refused, 503, "bus-unavailable")
        assert refused.headers["Retry-After"] == "5"
        print(f"while NATS is down: {refused.status} {body['detail']}")

        server.start()
        await until(ready)
        assert (await post(f"{gw.url}/events", event("e-3"), headers)).status == 202
        await sink.wait_for(2)
        delivered = {orjson.loads(r.body)["id"] for r in sink.requests}
        assert delivered == {"e-1", "e-3"}  # e-2 was refused, and nothing of it is delivered


async def test_a_replayed_webhook_id_is_refused_after_a_gateway_restart(
    server: NatsServer, tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink() as target:
        directory = webhook_manifests(tmp_path / "m", target)
        jetstream = settings_for(server, f"W{next(_streams)}")
        first = await start_gateway(directory, bus="jetstream", jetstream=jetstream)
        await until(lambda: ready(first))
        headers = {**JSON, **hmac_headers(PAYLOAD)}
        assert_forwarded(await post(f"{first.url}/webhooks/auth/hmac", PAYLOAD, headers), target)
        await first.stop()

        second = await start_gateway(directory, bus="jetstream", jetstream=jetstream)
        await until(lambda: ready(second))
        replay = await post(f"{second.url}/webhooks/auth/hmac", PAYLOAD, headers)
        assert_problem(replay, 401, "unauthorized")  # the in-memory guard of `second` never saw it
        assert len(target.requests) == 1


async def ready(gateway: StandaloneGateway) -> bool:
    return (await call("GET", f"{gateway.url}/readyz")).status == 200


# ------------------------------------------------------------------------------- retention


async def raw_client(server: NatsServer) -> NatsClient:
    return await bounded(nats.connect(server.url, connect_timeout=2, allow_reconnect=False), "connecting")


async def stream_messages(server: NatsServer, stream: str) -> int:
    client = await raw_client(server)
    try:
        info = await bounded(client.jetstream(timeout=5).stream_info(stream), "reading the stream")
        return int(info.state.messages)
    finally:
        await bounded(client.close(), "closing the client")


async def test_delivered_messages_leave_the_stream_so_a_bounded_stream_keeps_accepting(
    server: NatsServer, buses: Buses
) -> None:
    async with Sink() as sink:
        bus = await buses.start(max_bytes=4096)
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=FAST)
        bus.set_target(sub)
        # Each event is ~700 bytes stored: ten of them are well over the stream's 4 KiB, which only
        # works because a delivered (acked) message is removed (interest retention).
        for n in range(10):
            await bounded(bus.submit(sub, Event(f"r-{n}", data={"blob": "x" * 600})), f"storing r-{n}")
            await settle(bus)
        left = await stream_messages(server, buses.stream)
        print(f"delivered {len(sink.requests)}, messages left in the stream {left}")
        assert sorted(ids(sink)) == sorted(f"r-{n}" for n in range(10))
        assert left == 0


async def test_a_stream_created_with_limits_retention_is_refused_with_a_migration_hint(
    server: NatsServer, buses: Buses
) -> None:
    client = await raw_client(server)
    try:
        js = client.jetstream(timeout=5)
        old = StreamConfig(
            name=buses.stream, subjects=[f"{buses.stream}.>"], retention=RetentionPolicy.LIMITS
        )
        await bounded(js.add_stream(old), "creating a limits stream")
        bus: JetStreamBus[Event] = JetStreamBus(encode, settings_for(server, buses.stream))
        buses.running.append(bus)
        await bounded(bus.start(), "starting a bus")

        async def refused() -> bool:
            return "interest retention" in bus.readiness_detail

        await until(refused)
        print(f"readiness: {bus.readiness_detail}")
        assert not bus.ready
        assert f"nats stream rm {buses.stream}" in bus.readiness_detail
        assert "--jetstream-stream" in bus.readiness_detail

        await bounded(js.delete_stream(buses.stream), "deleting the old stream")  # the documented migration
        await bus.wait_ready(STEP)
        info = await bounded(js.stream_info(buses.stream), "reading the new stream")
        assert info.config.retention == RetentionPolicy.INTEREST
    finally:
        await bounded(client.close(), "closing the client")


# ------------------------------------------------------------------- max deliveries advisory


async def test_a_message_jetstream_gives_up_on_is_counted_dropped_once_across_processes(
    server: NatsServer, buses: Buses
) -> None:
    first_seen, second_seen = Recorder(), Recorder()
    async with Sink(default=Reply(500)) as sink:
        first, second = await buses.start(first_seen), await buses.start(second_seen)
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=FAST)
        first.set_target(sub)
        second.set_target(sub)
        # Both processes create the consumer (the same config); wait for both, or the second one's
        # create can land after the change below and put MaxDeliver back (then the process retries in
        # full and JetStream never gives up: seen twice in CI).
        await bounded(first.join(sub.key), "the consumer")
        await bounded(second.join(sub.key), "the second process's consumer")
        # Stand-in for "the process of the last delivery died": the server may deliver each message
        # only once, so the NAK of the first (failed) attempt makes it give up with the advisory.
        client = await bounded(
            nats.connect(server.url, connect_timeout=2, allow_reconnect=False), "connecting"
        )
        try:
            js = client.jetstream(timeout=5)
            info = await bounded(
                js.consumer_info(buses.stream, consumer_name(sub.key)), "reading the consumer"
            )
            await bounded(js.add_consumer(buses.stream, replace(info.config, max_deliver=1)), "max deliver 1")
        finally:
            await bounded(client.close(), "closing the client")
        await bounded(first.submit(sub, Event("m-1")), "storing m-1")

        def given_up() -> list[tuple[ResourceKey, str]]:
            return [
                (key, event_id)
                for key, event_id, _, reason in first_seen.outcomes + second_seen.outcomes
                if reason == "maxDeliveries"
            ]

        async def counted() -> bool:
            return bool(given_up())

        await until(counted)
        await asyncio.sleep(1.0)  # a second count (another process, a second advisory) would be here by now
        dropped = first.health(sub.key).dropped + second.health(sub.key).dropped
        left = await stream_messages(server, buses.stream)
        print(f"given up: {given_up()}, dropped per process sum {dropped}, attempts {len(sink.requests)}")
        assert given_up() == [(sub.key, "m-1")]
        assert dropped == 1
        assert len(sink.requests) == 1
        assert left == 0  # the given-up message does not linger in the interest stream
