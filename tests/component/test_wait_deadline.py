"""``Dispatcher.wait_for_room(..., deadline=...)``: a waiter whose turn has not come by its deadline gets
TimeoutError and leaves nothing behind (the room goes to the next waiter); one whose turn came keeps it
even if the deadline passes before it runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest

from openconnector.delivery import ContentMode, DeliveryTarget, Dispatcher
from tests.support.keys import sub_key
from tests.support.sinks import Reply, Sink

KEY = sub_key("ns/a")


@dataclass(frozen=True)
class Event:
    id: str
    type: str = "nl.vng.zgw.zaken.zaak.created"
    source: str = "urn:example:test"


def encode(event: Event, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return {"Content-Type": "application/json"}, b'{"id": "%s"}' % event.id.encode()


@dataclass
class Full:
    engine: Dispatcher[Event]
    sink: Sink
    gate: asyncio.Event


@pytest.fixture
async def full() -> AsyncIterator[Full]:
    """A lane with one event in flight (held at the sink until ``gate``) and one queued: full."""
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink, Dispatcher(encode, idle_lane_seconds=0) as engine:
        engine.set_target(DeliveryTarget(key=KEY, url=sink.url, max_concurrency=1, queue_size=1))
        assert engine.offer([(KEY, Event("in-flight"))]).accepted
        await sink.wait_for(1)
        assert engine.offer([(KEY, Event("queued"))]).accepted
        try:
            yield Full(engine, sink, gate)
        finally:
            gate.set()


async def test_a_waiter_past_its_deadline_times_out_and_the_room_goes_to_the_next(full: Full) -> None:
    loop = asyncio.get_running_loop()
    refused = full.engine.offer([(KEY, Event("late"))])
    assert refused.full == [KEY]
    late = asyncio.create_task(full.engine.wait_for_room(refused.full, deadline=loop.time() + 0.01))
    patient = asyncio.create_task(full.engine.wait_for_room(refused.full, deadline=loop.time() + 3600))
    with pytest.raises(TimeoutError):
        await late
    assert not patient.done()
    full.gate.set()  # room frees: the patient waiter's turn, nobody else's
    await patient
    assert full.engine.offer([(KEY, Event("patient"))]).accepted
    await full.engine.join(KEY)
    delivered = [request.body for request in await full.sink.wait_for(3)]
    assert delivered == [b'{"id": "in-flight"}', b'{"id": "queued"}', b'{"id": "patient"}']


async def test_a_waiter_whose_turn_came_keeps_it_past_the_deadline(full: Full) -> None:
    loop = asyncio.get_running_loop()
    refused = full.engine.offer([(KEY, Event("waiter"))])
    waiting = asyncio.create_task(full.engine.wait_for_room(refused.full, deadline=loop.time() + 0.01))
    await asyncio.sleep(0)  # registered
    # Its turn comes (the lane grows by one slot), and its deadline passes before it runs (the loop is
    # held past it): it keeps the turn, the timer only expires a waiter still waiting.
    wider = DeliveryTarget(key=KEY, url=full.sink.url, max_concurrency=1, queue_size=2)
    full.engine.update_target(KEY, wider)
    time.sleep(0.05)  # noqa: ASYNC251 (deliberately holding the loop past the deadline)
    assert not full.engine.offer([(KEY, Event("newcomer"))]).accepted  # the slot is the waiter's
    await waiting
    assert full.engine.offer([(KEY, Event("waiter"))]).accepted


async def test_a_cancelled_waiter_with_a_deadline_leaves_nothing_behind(full: Full) -> None:
    loop = asyncio.get_running_loop()
    refused = full.engine.offer([(KEY, Event("leaver"))])
    leaver = asyncio.create_task(full.engine.wait_for_room(refused.full, deadline=loop.time() + 3600))
    stayer = asyncio.create_task(full.engine.wait_for_room(refused.full, deadline=loop.time() + 3600))
    await asyncio.sleep(0)
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    full.gate.set()
    await stayer  # the room freed next is the stayer's
    assert full.engine.offer([(KEY, Event("stayer"))]).accepted
