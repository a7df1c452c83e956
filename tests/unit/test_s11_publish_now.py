"""``Gateway.publish_now``: the part of a publish that never awaits, and ``publish_waiting``, the rest.

The /events handler calls ``publish_now`` and awaits ``publish_waiting`` only when it must: a memory bus
that accepts (or refuses for good) at once answers without a coroutine. What a publish does must not
change with the split: all or nothing, records kept while it waits and discarded when it gives up, the
same refusals, and no record made twice.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tests.support.sinks import Reply, Sink
from tests.unit.test_s6_request_side import SOURCE, TYPE, _resources

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.ce.emit import build_event
from openconnector.gateway.core import Gateway, GatewaySettings, WaitingPublish
from openconnector.refusal import Refusal
from openconnector.routing.compiler import compile_table

SUBSCRIPTION = ResourceKey("EventSubscription", "ns", "first")
EVENT = ResourceKey("Event", "ns", "ev")


def _event(n: int) -> CloudEvent:
    return build_event(type=TYPE, source=SOURCE, data={"n": n})


def _gateway(sink: Sink, **settings: float) -> Gateway:
    gateway = Gateway(GatewaySettings(drain_seconds=0.0, **settings))  # type: ignore[arg-type]
    gateway.install(compile_table(_resources(sink), {}, version=1))
    # One delivery in flight and one queued fill the lane.
    gateway.dispatcher.update_target(
        SUBSCRIPTION, dataclasses.replace(gateway.dispatcher.target(SUBSCRIPTION), queue_size=1)
    )
    return gateway


def _recorded(gateway: Gateway, event: CloudEvent) -> bool:
    return gateway.recorder.store.find_event(SUBSCRIPTION, event.id) is not None


async def _fill_lane(gateway: Gateway, sink: Sink) -> None:
    assert gateway.publish_now([_event(1)], "ns") == 1
    await sink.wait_for(1)  # held at the sink: in flight
    assert gateway.publish_now([_event(2)], "ns") == 1  # queued: the lane is full


async def test_an_accepted_publish_ends_at_once_with_its_count() -> None:
    async with Sink() as sink:
        gateway = _gateway(sink)
        try:
            event = _event(1)
            assert gateway.publish_now([event], "ns") == 1
            assert _recorded(gateway, event)
            assert gateway.event_stats[EVENT].published == 1
            await sink.wait_for(1)
        finally:
            await gateway.dispatcher.close(0)


async def test_a_publish_refused_for_now_keeps_its_records_and_ends_once_there_is_room() -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        gateway = _gateway(sink)
        try:
            await _fill_lane(gateway, sink)
            event = _event(3)
            waiting = gateway.publish_now([event], "ns")
            assert isinstance(waiting, WaitingPublish)
            assert _recorded(gateway, event)  # recorded once, kept while it waits
            assert gateway.event_stats[EVENT].published == 2  # not yet counted
            recorded = gateway.recorder.store.count(SUBSCRIPTION)
            finishing = asyncio.ensure_future(gateway.publish_waiting([event], "ns", waiting))
            await asyncio.sleep(0.05)
            assert not finishing.done()
            gate.set()
            assert await finishing == 1
            assert gateway.recorder.store.count(SUBSCRIPTION) == recorded  # no second record
            assert gateway.event_stats[EVENT].published == 3
            await sink.wait_for(3)
        finally:
            gate.set()
            await gateway.dispatcher.close(0)


async def test_a_publish_that_finds_no_room_in_time_is_refused_and_leaves_no_record() -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        gateway = _gateway(sink, submit_timeout=0.1)
        try:
            await _fill_lane(gateway, sink)
            event = _event(3)
            waiting = gateway.publish_now([event], "ns")
            assert isinstance(waiting, WaitingPublish)
            with pytest.raises(Refusal) as refused:
                await gateway.publish_waiting([event], "ns", waiting)
            assert (refused.value.status, refused.value.label) == (503, "delivery-backlog")
            assert not _recorded(gateway, event)
            assert gateway.event_stats[EVENT].published == 2
        finally:
            gate.set()
            await gateway.dispatcher.close(0)


@pytest.mark.parametrize("namespace", ["ns", "elsewhere"])  # a delivery to queue, and none
async def test_a_closed_bus_refuses_at_once(namespace: str) -> None:
    async with Sink() as sink:
        gateway = _gateway(sink)
        await gateway.dispatcher.close(0)
        event = _event(1)
        with pytest.raises(Refusal) as refused:
            gateway.publish_now([event], namespace)
        assert (refused.value.status, refused.value.label) == (503, "shutting-down")
        assert not _recorded(gateway, event)


async def test_publish_is_publish_now_then_publish_waiting() -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        gateway = _gateway(sink)
        try:
            await _fill_lane(gateway, sink)
            publishing = asyncio.ensure_future(gateway.publish([_event(3)], "ns"))
            await asyncio.sleep(0.05)
            assert not publishing.done()  # waits for room, as publish_waiting does
            gate.set()
            assert await publishing == 1
        finally:
            gate.set()
            await gateway.dispatcher.close(0)
