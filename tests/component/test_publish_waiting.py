"""A sender whose subscription's lane is full waits in ``Gateway.publish`` for its turn, up to the submit
timeout (the memory bus: one deadline for its waits, no ``asyncio.timeout`` per sender): admitted when
room frees, 503 ``delivery-backlog`` when the timeout passes, 503 ``shutting-down`` on close, nothing
left behind when it gives up or is cancelled, and a plan made again from a table swapped meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from openconnector.ce import CloudEvent
from openconnector.ce.emit import build_event
from openconnector.delivery import Dispatcher
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.messages.recorder import message_id
from openconnector.refusal import Refusal
from openconnector.resources import Resource, ResourceKey
from openconnector.routing.compiler import compile_table
from tests.support.sinks import Reply, Sink

TYPE = "nl.vng.zgw.zaken.zaak.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:openconnector"
FIRST = ResourceKey("EventSubscription", "ns", "first")
SECOND = ResourceKey("EventSubscription", "ns", "second")


@dataclass
class World:
    gateway: Gateway
    sink: Sink
    gate: asyncio.Event


def _resources(sink: Sink, *names: str) -> dict[ResourceKey, Resource]:
    event = Resource(
        kind="Event", namespace="ns", name="ev", spec={"name": "ev", "type": TYPE, "source": SOURCE}
    )
    subscriptions = [
        Resource(
            kind="EventSubscription",
            namespace="ns",
            name=name,
            spec={"eventType": TYPE, "endpoint": sink.url, "delivery": {"retries": 0, "maxConcurrency": 1}},
        )
        for name in names
    ]
    return {r.key: r for r in [event, *subscriptions]}


def _narrow(gateway: Gateway, key: ResourceKey) -> None:
    """One event in flight and one queued fill the lane."""
    gateway.dispatcher.update_target(key, dataclasses.replace(gateway.dispatcher.target(key), queue_size=1))


def _event(n: int) -> CloudEvent:
    return build_event(type=TYPE, source=SOURCE, data={"n": n})


@pytest.fixture
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    submit_timeout: float = getattr(request, "param", 5.0)
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        gateway = Gateway(GatewaySettings(submit_timeout=submit_timeout, drain_seconds=0.0))
        gateway.install(compile_table(_resources(sink, "first"), {}, version=1))
        _narrow(gateway, FIRST)
        assert await gateway.publish([_event(1)], namespace="ns") == 1  # in flight, held at the sink
        await sink.wait_for(1)
        assert await gateway.publish([_event(2)], namespace="ns") == 1  # queued: the lane is full
        try:
            yield World(gateway, sink, gate)
        finally:
            gate.set()
            await gateway.dispatcher.close(0)


async def _until_waiting(task: asyncio.Task[int]) -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()  # refused and waiting for room


def _recorded(gateway: Gateway, key: ResourceKey, event: CloudEvent) -> bool:
    return gateway.message_store.get(key, message_id(event)) is not None


async def test_a_waiting_sender_is_admitted_when_room_frees(world: World) -> None:
    third = _event(3)
    sending = asyncio.create_task(world.gateway.publish([third], namespace="ns"))
    await _until_waiting(sending)
    world.gate.set()
    assert await sending == 1
    assert len(await world.sink.wait_for(3)) == 3
    assert _recorded(world.gateway, FIRST, third)


@pytest.mark.parametrize("world", [0.05], indirect=True)
async def test_a_sender_still_waiting_at_the_submit_timeout_gets_503_delivery_backlog(world: World) -> None:
    third = _event(3)
    with pytest.raises(Refusal) as refused:
        await world.gateway.publish([third], namespace="ns")
    assert (refused.value.status, refused.value.slug, refused.value.headers) == (
        503,
        "delivery-backlog",
        {"Retry-After": "5"},
    )
    assert not _recorded(world.gateway, FIRST, third)  # nothing of it was stored
    # It left no waiter behind: the room freed next goes to a later sender at once.
    world.gate.set()
    assert await world.gateway.publish([_event(4)], namespace="ns") == 1
    requests = await world.sink.wait_for(3)
    assert [json.loads(r.body)["data"]["n"] for r in requests] == [1, 2, 4]


async def test_a_cancelled_waiter_hands_its_turn_to_the_next(world: World) -> None:
    leaving = asyncio.create_task(world.gateway.publish([_event(3)], namespace="ns"))
    await _until_waiting(leaving)
    staying = asyncio.create_task(world.gateway.publish([_event(4)], namespace="ns"))
    await _until_waiting(staying)
    leaving.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await leaving
    world.gate.set()
    assert await staying == 1
    requests = await world.sink.wait_for(3)
    assert [json.loads(r.body)["data"]["n"] for r in requests] == [1, 2, 4]


async def test_a_waiting_sender_is_told_503_shutting_down_on_close(world: World) -> None:
    sending = asyncio.create_task(world.gateway.publish([_event(3)], namespace="ns"))
    await _until_waiting(sending)
    closing = asyncio.create_task(world.gateway.dispatcher.close(0))
    with pytest.raises(Refusal) as refused:
        await sending
    assert (refused.value.status, refused.value.slug, refused.value.headers) == (
        503,
        "shutting-down",
        {"Retry-After": "5"},
    )
    world.gate.set()
    await closing


async def test_a_table_swapped_while_waiting_is_planned_again(world: World) -> None:
    third = _event(3)
    sending = asyncio.create_task(world.gateway.publish([third], namespace="ns"))
    await _until_waiting(sending)
    world.gateway.install(compile_table(_resources(world.sink, "first", "second"), {}, version=2))
    _narrow(world.gateway, FIRST)
    world.gate.set()
    assert await sending == 2  # the new subscription gets it too
    assert _recorded(world.gateway, FIRST, third)
    assert _recorded(world.gateway, SECOND, third)


async def test_a_passed_deadline_does_not_refuse_a_caller_with_room() -> None:
    dispatcher: Dispatcher[CloudEvent] = Dispatcher(lambda event, mode: ({}, b""))
    # The budget has room: no wait, so no deadline to meet (as asyncio.timeout, which only interrupts
    # an await).
    await dispatcher.wait_for_room([], needed_bytes=1, deadline=asyncio.get_running_loop().time() - 1)
    await dispatcher.close(0)
