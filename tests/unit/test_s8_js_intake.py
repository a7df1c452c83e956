"""The JetStream bus's store ends by the caller's deadline itself (session 8, issue 15): the gateway no
longer puts an ``asyncio.timeout`` (a timer per request) around it, and the PubAck waits share one timer.

* past the deadline the store raises TimeoutError, as the gateway's ``asyncio.timeout`` did (the 503
  "delivery-backlog"); JetStream's own silence within ``publish_timeout`` stays BusUnavailableError;
* a wait that ends (answered, timed out, cancelled) leaves nothing behind: no waiter, no pending deadline;
* a wait for a subscription's consumer that is still being set up is BusUnavailableError whichever bound
  ends it (503 "bus-unavailable" naming the subscription, not "delivery queues are full").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from tests.unit.test_s7_js_handover import _answer, _Connection, _encode

from openconnector.api.keys import ResourceKey
from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings, _Subscription
from openconnector.delivery.outcomes import BusUnavailableError
from openconnector.delivery.prepared import Prepared
from openconnector.delivery.target import ContentMode, DeliveryTarget

KEY = ResourceKey("EventSubscription", "ns", "sub")
PREPARED = Prepared(
    id="e1", type="t", source="s", content_mode=ContentMode.STRUCTURED, headers={}, body=b"{}", size=2
)


def _connected_bus(publish_timeout: float = 4.0) -> tuple[JetStreamBus[Any], _Connection]:
    bus: JetStreamBus[Any] = JetStreamBus(_encode, JetStreamSettings(publish_timeout=publish_timeout))
    connection = _Connection([])
    connection._status = NatsClient.CONNECTED
    bus._nc = connection
    bus._js = object()  # type: ignore[assignment]
    bus._connected = True
    bus._provisioned.set()
    return bus, connection


def _nothing_left(bus: JetStreamBus[Any]) -> bool:
    return not bus._ack_waiters and not list(bus._ack_deadlines)


async def test_within_is_the_publish_timeout_or_what_is_left_of_the_deadline() -> None:
    bus, _ = _connected_bus(publish_timeout=4.0)
    now = asyncio.get_running_loop().time()
    assert bus._within(None) == (4.0, False)
    assert bus._within(now + 60) == (4.0, False)
    within, by_deadline = bus._within(now + 1)
    assert by_deadline
    assert 0.9 < within <= 1.0
    assert bus._within(now - 1) == (0.0, True)


async def test_past_the_callers_deadline_the_store_raises_timeout_error() -> None:
    bus, _ = _connected_bus(publish_timeout=4.0)
    deadline = asyncio.get_running_loop().time() + 0.05
    with pytest.raises(TimeoutError):
        await bus._publish([(KEY, PREPARED)], "id-1", deadline)
    assert _nothing_left(bus)


async def test_jetstreams_silence_within_publish_timeout_is_bus_unavailable() -> None:
    bus, _ = _connected_bus(publish_timeout=0.05)
    deadline = asyncio.get_running_loop().time() + 60
    with pytest.raises(BusUnavailableError, match="did not confirm storing the request: TimeoutError"):
        await bus._publish([(KEY, PREPARED)], "id-1", deadline)
    assert _nothing_left(bus)


async def test_an_answered_store_leaves_nothing_behind() -> None:
    bus, connection = _connected_bus()
    store = asyncio.ensure_future(bus._publish([(KEY, PREPARED)], "id-1", None))
    await asyncio.sleep(0)  # the request is made
    await asyncio.sleep(0)  # and written at the end of that loop turn
    assert connection.written == ["OPENCONNECTOR.d.ns.sub"]
    _answer(bus, 1)
    await store
    assert _nothing_left(bus)
    assert bus._ack_deadlines.armed  # (the shared timer fires later, finds nothing, and is not re-armed)


async def test_a_cancelled_store_leaves_nothing_behind_and_is_not_written() -> None:
    bus, connection = _connected_bus()
    store = asyncio.ensure_future(bus._publish([(KEY, PREPARED)], "id-1", None))
    await asyncio.sleep(0)
    store.cancel()
    with pytest.raises(asyncio.CancelledError):
        await store
    await asyncio.sleep(0)
    assert connection.written == []
    assert _nothing_left(bus)


async def test_a_consumer_still_being_set_up_is_bus_unavailable_whichever_bound_ends_the_wait() -> None:
    """Past the caller's deadline too: the sender learns that JetStream is setting up delivery (503
    bus-unavailable, naming the subscription), not that delivery queues are full."""
    for publish_timeout, deadline_in in ((4.0, 0.05), (0.05, 60.0)):
        bus, _ = _connected_bus(publish_timeout=publish_timeout)
        sub = _Subscription(DeliveryTarget(KEY, "http://127.0.0.1:9/"), time.time, 0.0, lambda k, a: None)
        bus._subs[KEY] = sub
        assert not bus.consumers_ready
        deadline = asyncio.get_running_loop().time() + deadline_in
        with pytest.raises(BusUnavailableError, match="still setting up delivery to ns/sub"):
            await bus._consumers_live([(KEY, PREPARED)], deadline)
        sub.consumer_ready.set()
        assert bus.consumers_ready
        sub.closed = True
        sub.consumer_ready.clear()
        assert bus.consumers_ready  # (a removed subscription's consumer is not waited for)
