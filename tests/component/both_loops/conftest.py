"""Tests here run twice: on asyncio's loop and on uvloop, the gateway's default (``--event-loop``).
uvloop's transports and error texts differ from asyncio's, and the delivery client talks to both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
