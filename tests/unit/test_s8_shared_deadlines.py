"""SharedDeadlines: many waits, one timer (session 8, issue 15).

The memory bus's room waits, HttpSender's request deadlines, and the JetStream bus's PubAck waits and
paced requests share this one implementation. Against a loop whose clock the test moves: every entry
that is not over by its deadline expires once, neither before its deadline (less the tolerance) nor
after it, and never one that ended first; at most one timer is armed, for the earliest deadline left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.delivery.deadlines import _COMPACT_AT, SharedDeadlines

TOLERANCE = 0.002


@dataclass
class _Timer:
    at: float
    callback: Any
    args: tuple[Any, ...]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Loop:
    """The two loop methods SharedDeadlines uses, with a clock the test moves."""

    now: float = 0.0
    timers: list[_Timer] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def call_at(self, at: float, callback: Any, *args: Any) -> _Timer:
        timer = _Timer(at, callback, args)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[_Timer]:
        return [timer for timer in self.timers if not timer.cancelled]

    def run_until(self, until: float) -> None:
        """Move the clock, firing each timer (once) as its time comes."""
        while True:
            due = [timer for timer in self.armed() if timer.at <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.at)
            self.now = max(self.now, timer.at)
            timer.cancelled = True  # fired: a handle that ran is not armed any more
            timer.callback(*timer.args)
        self.now = max(self.now, until)


@dataclass(eq=False)
class _Wait:
    at: float
    over: bool = False
    expired_at: float | None = None


def _deadlines(loop: _Loop) -> SharedDeadlines[_Wait]:
    def expire(wait: _Wait) -> None:
        assert wait.expired_at is None, "expired twice"
        wait.expired_at = loop.now

    return SharedDeadlines(lambda wait: wait.over, expire, tolerance=TOLERANCE)


# A step: (seconds the clock moves, a new wait's seconds from now, or None; index of a wait to end).
_steps = st.lists(
    st.tuples(
        st.floats(0, 0.05),
        st.one_of(st.none(), st.floats(0, 0.1)),
        st.one_of(st.none(), st.integers(0, 40)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_each_wait_expires_once_at_its_deadline_unless_it_ended_first(
    steps: list[tuple[float, float | None, int | None]],
) -> None:
    loop = _Loop()
    deadlines = _deadlines(loop)
    waits: list[_Wait] = []
    ended_at: dict[int, float] = {}
    for moved, new_in, end in steps:
        loop.run_until(loop.now + moved)
        if new_in is not None:
            wait = _Wait(loop.now + new_in)
            waits.append(wait)
            deadlines.add(wait, wait.at, cast(asyncio.AbstractEventLoop, loop))
        if end is not None and end < len(waits) and waits[end].expired_at is None and not waits[end].over:
            waits[end].over = True
            ended_at[end] = loop.now
        armed = loop.armed()
        assert len(armed) <= 1
        pending = [w.at for w in waits if not w.over and w.expired_at is None]
        if pending:  # armed, and for the earliest deadline still pending (or one that ended since)
            assert armed
            assert armed[0].at <= min(pending)
    loop.run_until(loop.now + 1.0)
    for index, wait in enumerate(waits):
        if index in ended_at and ended_at[index] < wait.at - TOLERANCE:
            assert wait.expired_at is None  # ended first: never expired
        elif not wait.over:
            assert wait.expired_at is not None
            assert wait.at - TOLERANCE <= wait.expired_at <= wait.at  # neither early nor late
    assert not loop.armed()  # nothing left to wait for: no timer
    assert not list(deadlines)


def test_waits_that_end_first_do_not_pile_up_behind_a_long_one() -> None:
    loop = _Loop()
    deadlines = _deadlines(loop)
    long = _Wait(1000.0)
    deadlines.add(long, long.at, cast(asyncio.AbstractEventLoop, loop))
    for _ in range(3 * _COMPACT_AT):
        wait = _Wait(loop.now + 5.0)
        deadlines.add(wait, wait.at, cast(asyncio.AbstractEventLoop, loop))
        wait.over = True
    assert len(deadlines) <= 2 * _COMPACT_AT + 1
    assert list(deadlines) == [long]


def test_clear_forgets_every_wait_and_disarms_the_timer() -> None:
    loop = _Loop()
    deadlines = _deadlines(loop)
    wait = _Wait(1.0)
    deadlines.add(wait, wait.at, cast(asyncio.AbstractEventLoop, loop))
    assert deadlines.armed
    deadlines.clear()
    assert not deadlines.armed
    loop.run_until(10.0)
    assert wait.expired_at is None
