"""A JetStream publish that no stream took ("no responders": the stream's interest in the subject had not
reached the connection's server yet) is sent again after a short pause, within the publish's bound; only
when the bound ends is it 503 bus-unavailable. The CI failure this fixes: the first requests after a
gateway became ready, in tests/jetstream/test_s8_log_views.py, answered 503 NoRespondersError.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg
from tests.unit.test_s7_js_handover import _answer
from tests.unit.test_s8_js_intake import KEY, PREPARED, _connected_bus, _nothing_left

from openconnector.delivery.jetstream import JetStreamBus
from openconnector.delivery.outcomes import BusUnavailableError


def _no_responders(bus: JetStreamBus[Any], token: int) -> None:
    status = Msg(_client=None, subject=f"{bus._ack_prefix}{token}", data=b"", headers={"Status": "503"})  # type: ignore[arg-type]
    bus._acknowledge(status)


async def _answered(bus: JetStreamBus[Any], token: int) -> None:
    """Wait until the request with reply ``token`` is waiting for its answer."""
    for _ in range(200):
        if str(token) in bus._ack_waiters:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no request {token} was made")


async def test_a_publish_no_stream_took_is_sent_again_and_stored() -> None:
    bus, connection = _connected_bus(publish_timeout=4.0)
    store = asyncio.ensure_future(bus._publish([(KEY, PREPARED)], "id-1", None))
    await _answered(bus, 1)
    _no_responders(bus, 1)
    await _answered(bus, 2)  # sent again ...
    await asyncio.sleep(0)  # ... and written at the end of that loop turn
    _answer(bus, 2)
    await store
    assert connection.written == ["OPENCONNECTOR.d.ns.sub", "OPENCONNECTOR.d.ns.sub"]
    assert _nothing_left(bus)


async def test_no_stream_taking_it_within_the_bound_is_bus_unavailable() -> None:
    bus, _ = _connected_bus(publish_timeout=0.2)
    store = asyncio.ensure_future(bus._publish([(KEY, PREPARED)], "id-1", None))
    token = 1
    while not store.done():
        if str(token) in bus._ack_waiters:
            _no_responders(bus, token)
            token += 1
        await asyncio.sleep(0.001)
    with pytest.raises(BusUnavailableError, match="did not confirm storing the request: NoRespondersError"):
        await store
    assert token > 2  # sent more than once
    assert _nothing_left(bus)
