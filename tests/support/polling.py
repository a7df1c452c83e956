"""The one poller of the test suite: wait for a condition with a deadline, never a fixed sleep.

``within`` is a ceiling, not a budget: a passing test returns as soon as the condition holds, so the
ceiling can be generous enough that two busy cores never break it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

WITHIN = 10.0
EVERY = 0.05


def _truthy(value: object) -> bool:
    return bool(value)


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = ...,
    within: float = ...,
    every: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = ...,
    within: float = ...,
    every: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    until: Callable[[Any], bool] = _truthy,
    within: float = WITHIN,
    every: float = EVERY,
    what: str = "",
) -> Any:
    """Call ``probe`` (sync or async) until ``until(result)``; return that result, or fail with the last."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        value = await result if inspect.isawaitable(result) else result
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or probe} not reached within {within} s; last value: {value!r}")
        await asyncio.sleep(every)


def eventually_blocking(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = _truthy,
    within: float = WITHIN,
    every: float = 0.2,
    what: str = "",
) -> T:
    """:func:`eventually` for synchronous tests (e.g. ones that run kubectl)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or probe} not reached within {within} s; last value: {value!r}")
        time.sleep(every)
