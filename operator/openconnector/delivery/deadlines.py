"""Many deadlines, one timer: :class:`SharedDeadlines`.

Under a closed loop nearly every request waits for something with a deadline (a slot in a memory lane,
a subscriber's answer, JetStream's acknowledgement of a store, its turn under intake pacing). A timer
per wait (``asyncio.timeout``, ``call_later``) is made and cancelled for nearly every request, and a
cancelled timer still costs its removal from the loop's heap (uvloop: a libuv handle to close). Here the
waits of one kind share one timer, armed for the earliest deadline; a wait that ends before its deadline
cancels nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["TIMER_TOLERANCE", "SharedDeadlines"]

T = TypeVar("T")

#: Seconds a loop timer may fire early (uvloop's clock has millisecond steps): what is due by then is due.
TIMER_TOLERANCE = 0.002
# Entries kept before those that are over are dropped all at once (a long wait at the front keeps them).
_COMPACT_AT = 1024


class SharedDeadlines(Generic[T]):
    """Deadlines of waits of one kind, with one timer armed for the earliest.

    ``is_over(entry)`` tells whether a wait has ended (its entry is then dropped and never expired);
    ``expire(entry)`` ends one at its deadline. Entries are kept in the order they were added and dropped
    once over (from the front when one is added, all of them when the timer fires or the list has grown
    long). The timer may fire up to ``tolerance`` seconds early (uvloop's clock has millisecond steps):
    what is due by then expires."""

    __slots__ = ("_at", "_compact_at", "_entries", "_expire", "_is_over", "_timer", "_tolerance")

    def __init__(
        self, is_over: Callable[[T], bool], expire: Callable[[T], None], *, tolerance: float = TIMER_TOLERANCE
    ) -> None:
        self._is_over = is_over
        self._expire = expire
        self._tolerance = tolerance
        self._entries: deque[tuple[float, T]] = deque()
        self._compact_at = _COMPACT_AT
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires (inf: not armed)

    def __len__(self) -> int:
        """Entries kept (some may be over already and not dropped yet)."""
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        """The entries whose waits have not ended, in the order they were added."""
        is_over = self._is_over
        return (entry for _, entry in self._entries if not is_over(entry))

    @property
    def armed(self) -> bool:
        """Whether the timer is set (it is not while no entry waits)."""
        return self._timer is not None

    def add(self, entry: T, at: float, loop: asyncio.AbstractEventLoop) -> None:
        """Expire ``entry`` at ``at`` (the loop's ``time()``) unless it is over by then."""
        entries = self._entries
        is_over = self._is_over
        while entries and is_over(entries[0][1]):
            entries.popleft()
        entries.append((at, entry))
        if len(entries) > self._compact_at:
            self._entries = entries = deque(item for item in entries if not is_over(item[1]))
            self._compact_at = max(_COMPACT_AT, 2 * len(entries))
        if at < self._at:  # a later deadline never re-arms the timer
            if self._timer is not None:
                self._timer.cancel()
            self._at = at
            self._timer = loop.call_at(at, self._expire_due, loop)

    def clear(self) -> None:
        """Forget every entry and disarm the timer (nothing is expired)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._at = math.inf
        self._entries.clear()

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: expire the entries past their deadline, then arm it again for the earliest left."""
        self._timer = None
        self._at = math.inf
        now = loop.time() + self._tolerance
        is_over, expire = self._is_over, self._expire
        waiting: deque[tuple[float, T]] = deque()
        earliest = math.inf
        for item in self._entries:
            at, entry = item
            if is_over(entry):
                continue
            if at <= now:
                expire(entry)
            else:
                waiting.append(item)
                earliest = min(earliest, at)
        self._entries = waiting
        self._compact_at = max(_COMPACT_AT, 2 * len(waiting))
        if earliest != math.inf:
            self._at = earliest
            self._timer = loop.call_at(earliest, self._expire_due, loop)
