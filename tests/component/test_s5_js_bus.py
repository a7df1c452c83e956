"""The JetStream bus after session 5's per-message savings keeps its promises (issue 15).

* a long attempt is kept from being redelivered by the keep-alive sweep (one sweep, no timer per message);
* the attempt log, published in intervals, is complete when the bus closes right after an attempt;
* a paced request that reaches its deadline is stored anyway, and releases nothing it did not reserve.

Each test runs its own nats-server on 127.0.0.1 (the fixtures of ``test_jetstream_bus``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from nats.aio.msg import Msg

from openconnector.delivery import durable, jetstream
from openconnector.delivery.policy import DeliveryPolicy
from openconnector.delivery.target import DeliveryTarget
from tests.component.sinks import Reply, Sink
from tests.component.test_delivery_engine import Event, target
from tests.component.test_jetstream_bus import Buses, bounded, ids, settle

# The fixtures (a nats-server per test, and the buses on it), re-exported for pytest:
from tests.component.test_jetstream_bus import buses as buses
from tests.component.test_jetstream_bus import server as server
from tests.support.keys import sub_key

pytestmark = pytest.mark.timeout(120)


async def test_a_long_attempt_is_not_redelivered_while_it_runs(
    buses: Buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AckWait = timeout + margin: with a negative margin the attempt (3 s at the sink) outlasts AckWait
    # (2 s), so only the keep-alive sweep keeps JetStream from handing the message out again meanwhile.
    monkeypatch.setattr(durable, "ACK_WAIT_MARGIN", -2.0)
    monkeypatch.setattr(jetstream, "_KEEPALIVE_SWEEP", 0.2)
    policy = DeliveryPolicy(retries=3, backoff_delay=0.01, backoff_max=0.01, timeout=4.0)
    async with Sink(Reply(delay=3.0)) as sink:
        bus = await buses.start()
        sub = target(sink.url, policy=policy, max_concurrency=4)
        bus.set_target(sub)
        await bus.submit(sub, Event("long-1"))
        await settle(bus)
        await asyncio.sleep(1.0)  # a redelivery would have arrived by now
        print(f"requests at the sink: {ids(sink)}")
        assert ids(sink) == ["long-1"]
        assert bus.health(sub.key).delivered == 1


async def test_the_attempt_log_is_published_when_the_bus_closes_right_after_an_attempt(
    buses: Buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "_ATTEMPT_FLUSH_DELAY", 3600.0)  # only close() publishes them
    async with Sink(Reply(500)) as sink:
        first = await buses.start()
        sub = DeliveryTarget(key=sub_key("default/sub"), url=sink.url, policy=target(sink.url).policy)
        first.set_target(sub)
        await first.submit(sub, Event("a-1"))
        await settle(first)
        await bounded(first.close(), "closing the first bus")

        second = await buses.start()
        second.set_target(sub)
        await settle(second)
        await asyncio.sleep(0.5)  # the attempts are read when the subscription starts receiving
        got = [(a.event_id, a.status_code) for a in second.attempts(sub.key)]
        print(f"attempt log after the restart: {got}")
        assert got == [("a-1", 500), ("a-1", 200)]


async def test_a_paced_request_past_its_deadline_is_stored_and_reserves_nothing(
    buses: Buses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "_PACE_PROGRESS", 3600.0)  # delivering for the whole test
    gate = asyncio.Event()
    async with Sink(Reply(), default=Reply(gate=gate)) as sink:
        bus = await buses.start(pace_backlog=1, pace_wait=0.3)
        sub = target(sink.url, max_concurrency=1)
        bus.set_target(sub)
        await bus.submit(sub, Event("d-0"))  # answered at once, delivered: the subscription is delivering
        await sink.wait_for(1)
        await settle(bus)
        await bounded(bus.submit(sub, Event("d-1")), "storing d-1")  # held at the sink
        await sink.wait_for(2)
        await bounded(bus.submit(sub, Event("d-2")), "storing d-2")  # waits in the stream: the limit
        state = bus._subs[sub.key]
        backlog = state.backlog
        loop = asyncio.get_running_loop()
        began = loop.time()
        await bounded(bus.submit(sub, Event("d-3")), "storing d-3 after its pace wait")
        waited = loop.time() - began
        print(f"d-3 waited {waited:.2f} s; backlog {backlog} -> {state.backlog}")
        assert waited >= 0.25  # it waited for room until its deadline ...
        assert state.backlog == backlog + 1  # ... then was stored and counted once, nothing reserved
        assert not [w for w in state.pace_waiters if not w.done()]
        gate.set()
        await settle(bus)
        assert ids(sink) == ["d-0", "d-1", "d-2", "d-3"]


async def test_commands_published_close_together_share_a_socket_write(buses: Buses) -> None:
    bus = await buses.start()
    client = bus.nats_client
    assert client is not None
    transport = client._transport
    assert transport is not None
    writes: list[int] = []
    write = transport.writelines

    def counting(payload: list[bytes]) -> None:
        writes.append(len(payload))
        write(payload)

    received: list[bytes] = []
    all_in = asyncio.Event()
    subscription = await client.subscribe("s5.coalesce", cb=_collect(received, 50, all_in))
    await client.flush()
    transport.writelines = counting  # type: ignore[method-assign]
    try:
        for n in range(50):  # each in a turn of the event loop of its own, as deliveries finish
            await client.publish("s5.coalesce", str(n).encode())
            await asyncio.sleep(0)
        await bounded(client.flush(), "the PING/PONG after the publishes")
    finally:
        transport.writelines = write  # type: ignore[method-assign]
    await bounded(all_in.wait(), "receiving the 50 messages")
    await subscription.unsubscribe()
    print(f"50 publishes went out in {len(writes)} writes")
    assert [int(data) for data in received] == list(range(50))  # all of them, in order
    assert len(writes) < 50


def test_the_overridden_nats_py_flusher_is_still_there() -> None:
    from nats.aio.client import Client

    assert callable(getattr(Client, "_flusher", None))  # nats-py renamed it: revisit _CoalescingClient
    assert jetstream._CoalescingClient._flusher is not Client._flusher


def _collect(into: list[bytes], count: int, done: asyncio.Event) -> Callable[[Msg], Awaitable[None]]:
    async def received(message: Msg) -> None:
        into.append(message.data)
        if len(into) >= count:
            done.set()

    return received
