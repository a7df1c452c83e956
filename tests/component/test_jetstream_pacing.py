"""Intake pacing on the JetStream bus: delivery gets its share of the event loop, and the stream still
stores what a subscriber that is down cannot take (``--jetstream-pace-backlog``/``--jetstream-pace-wait``).

Each test runs its own nats-server on 127.0.0.1 (the fixtures of ``test_jetstream_bus``).
"""

from __future__ import annotations

import asyncio

import pytest

from openconnector.api.keys import ResourceKey
from openconnector.delivery import jetstream
from openconnector.delivery.durable import consumer_name
from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings
from openconnector.delivery.policy import DeliveryPolicy
from tests.component.sinks import Reply, Sink
from tests.component.test_delivery_engine import Event, target
from tests.component.test_jetstream_bus import Buses, bounded, ids, settle

# The fixtures (a nats-server per test, and the buses on it), re-exported for pytest:
from tests.component.test_jetstream_bus import buses as buses
from tests.component.test_jetstream_bus import server as server

pytestmark = pytest.mark.timeout(120)

# Attempts that fail keep failing for minutes: nothing finishes, so the subscription is not delivering.
FAILING = DeliveryPolicy(retries=100, backoff_delay=10.0, backoff_max=30.0, timeout=5.0)


@pytest.fixture
def delivering_for_the_whole_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subscription counts as delivering for a second after it finished a delivery; a loaded machine
    may take longer between the steps of a test."""
    monkeypatch.setattr(jetstream, "_PACE_PROGRESS", 3600.0)


@pytest.mark.usefixtures("delivering_for_the_whole_test")
async def test_a_request_waits_while_a_delivering_subscription_is_over_its_pace_limit(buses: Buses) -> None:
    gate = asyncio.Event()
    async with Sink(Reply(), default=Reply(gate=gate)) as sink:
        bus = await buses.start(pace_backlog=2, pace_wait=60.0)
        sub = target(sink.url, max_concurrency=1)
        bus.set_target(sub)
        await bus.submit(sub, Event("p-0"))  # answered at once: the subscription is delivering
        await sink.wait_for(1)
        await settle(bus)
        await bounded(bus.submit(sub, Event("p-1")), "storing p-1")
        # p-1 is held at the sink; once it is there, its receipt (the backlog reading it carries) is in,
        # and with maxConcurrency 1 no other arrives while it is held: p-2 and p-3 are each counted as
        # they are stored, and wait in the stream: the limit.
        await sink.wait_for(2)
        for n in (2, 3):
            await bounded(bus.submit(sub, Event(f"p-{n}")), f"storing p-{n}")

        paced = asyncio.create_task(bus.submit(sub, Event("p-4")))
        await asyncio.sleep(0.5)
        waited = not paced.done()
        gate.set()  # deliveries make room
        await bounded(paced, "storing p-4 once deliveries made room")
        await settle(bus)
        print(f"p-4 waited for room: {waited}; delivered {ids(sink)}")
        assert waited
        assert ids(sink) == [f"p-{n}" for n in range(5)]  # in order, each once: nothing refused or lost


async def test_a_subscription_that_is_not_delivering_is_not_paced(buses: Buses) -> None:
    async with Sink(default=Reply(status=503)) as sink:  # down: every attempt waits in backoff
        bus = await buses.start(pace_backlog=2, pace_wait=60.0)
        sub = target(sink.url, policy=FAILING, max_concurrency=1)
        bus.set_target(sub)
        for n in range(10):  # a paced request would wait 60 s: the bound below fails it long before
            result = await bounded(bus.store([(sub.key, Event(f"down-{n}"))]), f"storing down-{n}")
            assert result.accepted
        await sink.wait_for(1)
        stored = await bounded(_stored(bus, sub.key), "reading the backlog")
        for _ in range(50):  # the consumer's counts follow the stream a moment later (seen 9 under load)
            if stored >= 10:
                break
            await asyncio.sleep(0.1)
            stored = await bounded(_stored(bus, sub.key), "reading the backlog")
        print(f"stored while the subscriber is down: {stored}, attempts {len(sink.requests)}")
        assert stored == 10  # the stream keeps the backlog of a subscriber that is down
        assert bus.health(sub.key).delivered == 0


@pytest.mark.usefixtures("delivering_for_the_whole_test")
async def test_a_paced_request_is_stored_after_the_pace_wait_even_without_room(buses: Buses) -> None:
    gate = asyncio.Event()
    async with Sink(Reply(), default=Reply(gate=gate)) as sink:
        bus = await buses.start(pace_backlog=1, pace_wait=0.2)
        sub = target(sink.url, max_concurrency=1)
        bus.set_target(sub)
        await bus.submit(sub, Event("w-0"))
        await settle(bus)
        for n in range(1, 6):  # w-1 hangs at the sink and makes no room: from w-3 on each waits 0.2 s
            await bounded(bus.submit(sub, Event(f"w-{n}")), f"storing w-{n}")
        gate.set()
        await settle(bus)
        print(f"delivered {ids(sink)}")
        assert ids(sink) == [f"w-{n}" for n in range(6)]


def test_pace_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="pace backlog"):
        JetStreamSettings(pace_backlog=-1)
    with pytest.raises(ValueError, match="pace wait"):
        JetStreamSettings(pace_wait=-0.5)
    assert JetStreamSettings(pace_backlog=0).pace_backlog == 0  # 0: no pacing


async def _stored(bus: JetStreamBus[Event], key: ResourceKey) -> int:
    """Deliveries of ``key`` stored and not finished (the consumer's count, from the server)."""
    js = bus.nats_client.jetstream() if bus.nats_client is not None else None
    assert js is not None
    info = await js.consumer_info(bus.settings.stream, consumer_name(key))
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
