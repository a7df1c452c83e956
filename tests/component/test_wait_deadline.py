"""``Dispatcher.wait_for_room(..., deadline=...)``: a waiter whose turn has not come by its deadline gets
TimeoutError and leaves nothing behind (the room goes to the next waiter); one whose turn came keeps it
even if the deadline passes before it runs.

The waiters' deadlines share one timer (issue 15: no TimerHandle per wait): each waiter still gets
TimeoutError at its own deadline, whatever order the deadlines come in, a waiter that left is never
expired, and the entries of waiters who left do not pile up behind a long wait."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from openconnector.delivery import DeliveryTarget, Dispatcher
from openconnector.delivery.deadlines import _COMPACT_AT as _DEADLINES_COMPACT_AT
from tests.support.engine_events import Event, encode
from tests.support.keys import sub_key
from tests.support.sinks import Reply, Sink

KEY = sub_key("ns/a")
OTHER = sub_key("ns/b")
# The shared timer may expire a waiter this much before its deadline (uvloop's millisecond clock).
TOLERANCE = 0.002


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


async def _expires_at(engine: Dispatcher[Event], deadline: float) -> float:
    """Wait with ``deadline``; the loop time at which the TimeoutError came."""
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await engine.wait_for_room([KEY], deadline=deadline)
    return loop.time()


@pytest.mark.parametrize("order", list(itertools.permutations([0.01, 0.02, 0.03, 0.04])))
async def test_each_waiter_expires_at_its_own_deadline_in_any_order(
    full: Full, order: tuple[float, ...]
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadlines = [start + offset for offset in order]
    waits = [asyncio.create_task(_expires_at(full.engine, deadline)) for deadline in deadlines]
    async with asyncio.timeout(10):
        expired = await asyncio.gather(*waits)
    for deadline, at in zip(deadlines, expired, strict=True):
        assert at >= deadline - TOLERANCE  # never (noticeably) early, however the timer was armed
    # Nobody is left to expire: the timer is disarmed until the next wait with a deadline.
    assert not full.engine._deadlines.armed
    assert not full.engine._deadlines


async def test_a_waiter_that_left_is_not_expired_and_the_rest_still_are(full: Full) -> None:
    loop = asyncio.get_running_loop()
    leaver = asyncio.create_task(full.engine.wait_for_room([KEY], deadline=loop.time() + 0.01))
    patient = asyncio.create_task(full.engine.wait_for_room([KEY], deadline=loop.time() + 3600))
    late = asyncio.create_task(_expires_at(full.engine, loop.time() + 0.03))
    await asyncio.sleep(0)
    leaver.cancel()  # leaves before the timer (armed for its deadline) fires
    with pytest.raises(asyncio.CancelledError):
        await leaver
    async with asyncio.timeout(10):
        await late
    assert not patient.done()
    full.gate.set()  # room: the patient waiter's turn, long before its deadline
    async with asyncio.timeout(10):
        await patient
    assert full.engine.offer([(KEY, Event("patient"))]).accepted


async def test_entries_of_waiters_who_left_do_not_pile_up_behind_a_long_wait() -> None:
    gate = asyncio.Event()
    async with (
        Sink(default=Reply(gate=gate)) as stuck,
        Sink() as flowing,
        Dispatcher(encode, idle_lane_seconds=0) as engine,
    ):
        engine.set_target(DeliveryTarget(key=KEY, url=stuck.url, max_concurrency=1, queue_size=1))
        engine.set_target(DeliveryTarget(key=OTHER, url=flowing.url, max_concurrency=1, queue_size=1))
        assert engine.offer([(KEY, Event("in-flight"))]).accepted
        await stuck.wait_for(1)
        assert engine.offer([(KEY, Event("queued"))]).accepted
        loop = asyncio.get_running_loop()
        # First in line and going nowhere: every later entry is behind it.
        front = asyncio.create_task(engine.wait_for_room([KEY], deadline=loop.time() + 3600))
        await asyncio.sleep(0)
        sent = 0
        while sent < 3 * _DEADLINES_COMPACT_AT:  # senders that wait for the flowing lane and get in
            result = engine.offer([(OTHER, Event(f"o-{sent}"))])
            if result.accepted:
                sent += 1
                continue
            await engine.wait_for_room(result.full, deadline=loop.time() + 3600)
            assert len(engine._deadlines) <= 2 * _DEADLINES_COMPACT_AT
        assert not front.done()
        gate.set()
        async with asyncio.timeout(10):
            await front
        await engine.join()
        assert engine.health(OTHER).delivered == sent
