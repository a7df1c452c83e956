"""The lane's job queue keeps asyncio.Queue's behaviour where the lanes rely on it: FIFO, a getter woken
per job, a cancelled getter hands its wake-up on, and join() waits for every task_done()."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from openconnector.delivery.memory import _Job, _JobQueue


def _job() -> _Job:
    return cast(_Job, object())  # the queue never looks inside a job


async def test_first_in_first_out_and_waiting_getters() -> None:
    queue = _JobQueue()
    one, two = _job(), _job()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(one)
    queue.put_nowait(two)
    assert await getter is one
    assert queue.qsize() == 1
    assert not queue.empty()
    assert queue.get_nowait() is two
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_getter_cancelled_after_its_wake_up_hands_it_on() -> None:
    queue = _JobQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    job = _job()
    queue.put_nowait(job)  # wakes the first
    first.cancel()
    assert await second is job
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_timed_out_getter_leaves_nothing_behind() -> None:
    queue = _JobQueue()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await queue.get()
    job = _job()
    queue.put_nowait(job)
    assert await queue.get() is job


async def test_join_waits_for_every_task_done() -> None:
    queue = _JobQueue()
    await queue.join()  # nothing unfinished
    queue.put_nowait(_job())
    queue.put_nowait(_job())
    joined = asyncio.ensure_future(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many"):
        queue.task_done()


def test_the_lane_bounds_the_queue_not_the_queue_itself() -> None:
    assert _JobQueue().jobs.maxlen is None
