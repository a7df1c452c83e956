"""Senders waiting for room in a full lane are served in arrival order: a newcomer does not take the
room that was just handed to a waiter (under a closed loop that starved some senders for seconds)."""

from __future__ import annotations

import asyncio

from openconnector.delivery import DeliveryTarget, Dispatcher
from tests.support.engine_events import Event, encode
from tests.support.keys import sub_key
from tests.support.sinks import Reply, Sink


async def test_room_handed_to_a_waiter_is_not_taken_by_a_newcomer() -> None:
    gate = asyncio.Event()
    async with Sink(Reply(gate=gate)) as sink, Dispatcher(encode, idle_lane_seconds=0) as engine:
        target = DeliveryTarget(key=sub_key("ns/a"), url=sink.url, max_concurrency=1, queue_size=1)
        engine.set_target(target)
        assert engine.offer([(sub_key("ns/a"), Event("in-flight"))]).accepted
        await sink.wait_for(1)  # held at the gate: the lane's one worker is busy
        assert engine.offer([(sub_key("ns/a"), Event("queued"))]).accepted
        refused = engine.offer([(sub_key("ns/a"), Event("waiter"))])
        assert refused.full == [sub_key("ns/a")]

        waiter = asyncio.create_task(engine.wait_for_room(refused.full))
        await asyncio.sleep(0)  # the waiter is registered
        assert not waiter.done()
        # One more slot: it goes to the waiter, which has not run yet; a newcomer must queue behind it.
        wider = DeliveryTarget(key=sub_key("ns/a"), url=sink.url, max_concurrency=1, queue_size=2)
        engine.update_target(sub_key("ns/a"), wider)
        newcomer = engine.offer([(sub_key("ns/a"), Event("newcomer"))])
        assert not newcomer.accepted
        assert newcomer.full == [sub_key("ns/a")]

        await waiter
        assert engine.offer([(sub_key("ns/a"), Event("waiter"))]).accepted  # its turn: the room is there

        gate.set()
        await engine.join(sub_key("ns/a"))
        delivered = [request.body for request in await sink.wait_for(3)]
        assert delivered == [b'{"id": "in-flight"}', b'{"id": "queued"}', b'{"id": "waiter"}']
