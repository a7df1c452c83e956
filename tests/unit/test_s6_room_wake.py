"""Session 6 shortcut of the memory bus's room hand-out (issue 15): ``_wake_for_room`` with its room test
inlined wakes exactly the waiter, and leaves exactly the state, that the earlier form (``has_room``, then
the free-slot test, then ``waiter.wake()``) does, over random lane states."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.keys import sub_key

from openconnector.delivery import ContentMode, DeliveryTarget, Dispatcher
from openconnector.delivery.memory import _Job, _Lane, _LaneRuntime, _Waiter
from openconnector.delivery.prepared import DeliverableEvent, Prepared

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)
KEY = sub_key("ns/a")


def encode(event: DeliverableEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return {}, b""


def _reference_wake(lane: _Lane) -> None:
    """The form before session 6, kept here as the reference."""
    runtime = lane.runtime
    if runtime is None or not runtime.waiters or lane.closed:
        return
    target = lane.target
    if not (len(runtime.queue.jobs) < target.queue_size and lane.held_bytes < target.queue_bytes):
        return
    if target.queue_size - len(runtime.queue.jobs) <= runtime.woken:
        return
    version = runtime.room_version
    for waiter, since in runtime.waiters.items():
        if since >= version:
            return
        if not waiter.future.done():
            break
    else:
        return
    del runtime.waiters[waiter]
    runtime.woken += 1
    waiter.lane, waiter.room = lane, runtime
    waiter.wake()


def _state(lane: _Lane, waiters: list[_Waiter]) -> tuple[object, ...]:
    runtime = lane.runtime
    assert runtime is not None
    return (
        runtime.woken,
        [(waiters.index(w), since) for w, since in runtime.waiters.items()],
        [(w.future.done(), w.lane is lane, w.room is runtime) for w in waiters],
    )


@PROPERTY_SETTINGS
@given(
    st.integers(1, 6),  # queue_size
    st.integers(0, 7),  # jobs waiting
    st.integers(0, 4),  # woken
    st.integers(1, 4),  # queue_bytes, in units
    st.integers(0, 5),  # held, in units
    st.booleans(),  # closed
    st.integers(0, 3),  # room_version
    st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=5),  # (since, already done)
)
def test_the_inlined_room_test_wakes_whom_the_earlier_form_wakes(
    queue_size: int,
    jobs: int,
    woken: int,
    queue_units: int,
    held_units: int,
    closed: bool,
    version: int,
    waiting: list[tuple[int, bool]],
) -> None:
    loop = asyncio.new_event_loop()
    try:
        states = []
        for reference in (False, True):
            engine: Dispatcher[DeliverableEvent] = Dispatcher(encode)
            target = DeliveryTarget(
                key=KEY, url="http://127.0.0.1:9/", queue_size=queue_size, queue_bytes=queue_units * 1000
            )
            lane = _Lane(target, clock=lambda: 0.0)
            lane.closed = closed
            lane.held_bytes = held_units * 1000
            runtime = lane.runtime = _LaneRuntime(paused=False)
            prepared = Prepared("e", "t", "s", ContentMode.STRUCTURED, {}, b"", 1)
            runtime.queue.jobs = deque(_Job(prepared) for _ in range(jobs))
            runtime.woken = woken
            runtime.room_version = version
            waiters = []
            for since, done in waiting:
                waiter = _Waiter(loop.create_future())
                if done:
                    waiter.future.set_result(None)
                runtime.waiters[waiter] = since
                waiters.append(waiter)
            if reference:
                _reference_wake(lane)
            else:
                engine._wake_for_room(lane)
            states.append(_state(lane, waiters))
        assert states[0] == states[1]
    finally:
        loop.close()
