"""A lane worker waits for its next job on one idle timer per queue (not an ``asyncio.timeout`` per
wait): it gets every job put while it waits, gives up only after waiting long enough, and a job put
as it gives up is not lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import cast

from openconnector.delivery.memory import _Job, _JobQueue


def _job() -> _Job:
    return cast(_Job, object())  # the queue never looks inside a job


async def test_a_job_put_while_waiting_is_handed_to_the_waiting_getter() -> None:
    queue = _JobQueue()
    getter = asyncio.ensure_future(queue.get_within(60))
    await asyncio.sleep(0)
    job = _job()
    queue.put_nowait(job)
    assert await getter is job


async def test_a_getter_without_a_job_gives_up_after_its_time_and_leaves_nothing_behind() -> None:
    queue = _JobQueue()
    assert await asyncio.wait_for(queue.get_within(0.02), 5) is None
    job = _job()
    queue.put_nowait(job)  # nobody waits any more: it stays queued
    assert queue.qsize() == 1
    assert await queue.get_within(60) is job


async def test_getters_give_up_in_turn_on_one_timer() -> None:
    queue = _JobQueue()
    early = asyncio.ensure_future(queue.get_within(0.02))
    await asyncio.sleep(0)
    late = asyncio.ensure_future(queue.get_within(60))
    assert await asyncio.wait_for(early, 5) is None
    assert not late.done()
    assert queue._idle_timer is not None  # armed again, for the one still within its time
    job = _job()
    queue.put_nowait(job)
    assert await asyncio.wait_for(late, 5) is job


def _past_their_time(queue: _JobQueue) -> None:
    """Run the idle timer's callback now, its getters' time being up (no loop turn in between)."""
    time.sleep(0.01)
    queue._give_up_idle()


async def test_a_job_put_as_the_getter_gives_up_is_taken_not_lost() -> None:
    queue = _JobQueue()
    getter = asyncio.ensure_future(queue.get_within(0.001))
    await asyncio.sleep(0)
    _past_their_time(queue)
    job = _job()
    queue.put_nowait(job)  # after the getter was told to give up, before it ran
    assert await getter is job
    assert queue.empty()


async def test_a_getter_cancelled_after_its_wake_up_hands_it_on() -> None:
    queue = _JobQueue()
    first = asyncio.ensure_future(queue.get_within(60))
    second = asyncio.ensure_future(queue.get_within(60))
    await asyncio.sleep(0)
    job = _job()
    queue.put_nowait(job)  # wakes the first
    first.cancel()
    assert await second is job


async def test_a_getter_cancelled_after_giving_up_hands_nothing_on() -> None:
    queue = _JobQueue()
    first = asyncio.ensure_future(queue.get_within(0.001))
    second = asyncio.ensure_future(queue.get_within(0.001))
    await asyncio.sleep(0)
    _past_their_time(queue)  # both told to give up
    first.cancel()
    assert await second is None
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert not queue._getters
