"""The webhook request side's shortcuts give what the general path gives.

- ``_GatewayPorts`` reads the clock once per request (``received``), and that reading serves ``now()``
  until the request awaits its body; it looks the Consumer's status and metric counters up once for
  ``received`` and ``forwarded``.
- ``receive`` answers an auth type ``none`` with :data:`NO_AUTH` without calling ``verify`` (what
  ``verify`` answers for any request): tests/unit/test_s5_request_fast_path.py runs the whole fast path
  (the inline JSON parse included) against the general one.
- ``RoutingTable.consumer`` finds an already normal endpoint without normalising it.
- ``Gateway.publish`` records and counts a publish accepted at once under one clock reading, and reads
  the clock again when it had to wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from prometheus_client import generate_latest
from tests.support.sinks import Reply, Sink

from openconnector.api.keys import ResourceKey
from openconnector.ce import CloudEvent
from openconnector.ce.emit import build_event
from openconnector.consumers.allow_list import IpAllowList
from openconnector.consumers.verifiers import NO_AUTH, InboundAuthConfig, compile_verifier
from openconnector.gateway.core import GATEWAY_KEY, Gateway, GatewaySettings
from openconnector.gateway.webhooks import _GatewayPorts
from openconnector.resources import Resource
from openconnector.routing.compiler import compile_table
from openconnector.routing.table import ConsumerRoute, RoutingTable, normalise_endpoint

CONSUMER_KEY = ResourceKey("Consumer", "tenant", "zaken")


class _Protocol:
    """What a StreamReader asks of its protocol."""

    _reading_paused = False
    transport = None
    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _request(body: bytes, *, complete: bool, gateway: Gateway | None = None) -> web.Request:
    app = web.Application()
    if gateway is not None:
        app[GATEWAY_KEY] = gateway  # read_request's body timeout
    payload = StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    payload.feed_data(body)
    if complete:
        payload.feed_eof()
    headers = CIMultiDict({"Content-Type": "application/json"})
    return make_mocked_request("POST", "/webhooks/zaken", headers=headers, payload=payload, app=app)


class _Clock:
    """A clock that says how often it was read: each reading is one second after the one before."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 1_700_000_000.0 + self.readings


def _consumer() -> ConsumerRoute:
    verifier = compile_verifier(InboundAuthConfig(type="none"))
    return ConsumerRoute(
        CONSUMER_KEY, "zaken", verifier, IpAllowList(), 1024, None, None, None, None, None, None
    )


def _consumer_samples(gateway: Gateway) -> list[str]:
    text = generate_latest(gateway.metrics.registry).decode()
    return [  # (not the _created samples: when a series appeared)
        line
        for line in text.splitlines()
        if line.startswith("openconnector_webhooks_") and "_created{" not in line
    ]


async def test_one_clock_reading_serves_a_request_that_does_not_await() -> None:
    clock = _Clock()
    gateway = Gateway(clock=clock)
    ports = _GatewayPorts(gateway, _request(b"{}", complete=True))
    ports.received(_consumer())
    assert clock.readings == 1
    assert ports.request_now(1024) is not None
    assert ports.now() == ports.now() == 1_700_000_001.0  # received()'s reading
    assert clock.readings == 1
    assert gateway.consumer_stats[CONSUMER_KEY].last_received == 1_700_000_001.0


async def test_a_request_that_awaits_its_body_reads_the_clock_again() -> None:
    clock = _Clock()
    gateway = Gateway(clock=clock)
    request = _request(b"{}", complete=False, gateway=gateway)
    ports = _GatewayPorts(gateway, request)
    ports.received(_consumer())
    assert ports.request_now(1024) is None  # the body is still coming
    reading = asyncio.ensure_future(ports.read_request(1024))
    await asyncio.sleep(0)
    request.content.feed_eof()
    assert (await reading).body == b"{}"
    assert ports.now() == 1_700_000_002.0  # read after the await, not received()'s reading
    assert clock.readings == 2


@settings(max_examples=30, deadline=None)
@given(requests=st.integers(min_value=1, max_value=4), with_received=st.booleans())
async def test_forwarded_counts_where_a_lookup_would(requests: int, with_received: bool) -> None:
    """The counters received() looked up are the ones forwarded() counts in; without received() (no
    pipeline skips it, but the port does not rely on that) forwarded() looks them up itself."""
    gateway, reference = Gateway(), Gateway()
    consumer = _consumer()
    for _ in range(requests):
        ports = _GatewayPorts(gateway, _request(b"{}", complete=True))
        if with_received:
            ports.received(consumer)
        ports.forwarded(consumer)
        # The reference: the counters looked up on each call.
        if with_received:
            reference.consumer_stats[consumer.key].record_received(0.0)
            reference.consumer_counters(consumer.key).received(1)
        reference.consumer_stats[consumer.key].record_forwarded()
        reference.consumer_counters(consumer.key).forwarded(1)
    stats, expected = gateway.consumer_stats[consumer.key], reference.consumer_stats[consumer.key]
    assert (
        (stats.received, stats.forwarded)
        == (expected.received, expected.forwarded)
        == (
            requests if with_received else 0,
            requests,
        )
    )
    assert _consumer_samples(gateway) == _consumer_samples(reference)


headers = st.dictionaries(st.text(max_size=12), st.text(max_size=24), max_size=4)


@settings(max_examples=100, deadline=None)
@given(
    headers=headers,
    query=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    body=st.binary(max_size=32),
    now=st.floats(allow_nan=False),
)
def test_an_unauthenticated_consumer_verifies_every_request_as_no_auth(
    headers: dict[str, str], query: dict[str, str], body: bytes, now: float
) -> None:
    verifier = compile_verifier(InboundAuthConfig(type="none"))
    assert verifier.verify(headers=headers, query=query, body=body, now=now) is NO_AUTH


endpoints = st.text(alphabet="ab/", max_size=6)


@settings(max_examples=200, deadline=None)
@given(asked=endpoints, served=st.lists(endpoints, max_size=4))
def test_a_consumer_is_found_as_by_its_normal_endpoint(asked: str, served: list[str]) -> None:
    consumer = _consumer()
    by_endpoint = {
        normalise_endpoint(e): dataclasses.replace(consumer, endpoint=normalise_endpoint(e)) for e in served
    }
    table = dataclasses.replace(RoutingTable.empty(), consumers_by_endpoint=by_endpoint)
    assert table.consumer(asked) is by_endpoint.get(normalise_endpoint(asked))


TYPE = "nl.vng.zgw.zaken.zaak.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:openconnector"


def _resources(sink: Sink) -> dict[ResourceKey, Resource]:
    event = Resource(
        kind="Event", namespace="ns", name="ev", spec={"name": "ev", "type": TYPE, "source": SOURCE}
    )
    subscription = Resource(
        kind="EventSubscription",
        namespace="ns",
        name="first",
        spec={"eventType": TYPE, "endpoint": sink.url, "delivery": {"retries": 0, "maxConcurrency": 1}},
    )
    return {r.key: r for r in (event, subscription)}


def _spy_stored_at(gateway: Gateway) -> list[float]:
    """The clock readings the gateway's publishes record their deliveries under."""
    readings: list[float] = []
    record_stored = gateway.recorder.record_stored

    def spy(plan: Sequence[tuple[ResourceKey, CloudEvent]], *, now: float) -> list[tuple[ResourceKey, str]]:
        readings.append(now)
        return record_stored(plan, now=now)

    gateway.recorder.record_stored = spy  # type: ignore[method-assign]
    return readings


def _published_at(gateway: Gateway) -> float | None:
    return gateway.event_stats[ResourceKey("Event", "ns", "ev")].last_published


async def test_a_publish_accepted_at_once_is_recorded_and_counted_under_one_reading() -> None:
    async with Sink(default=Reply(gate=asyncio.Event())) as sink:
        gateway = Gateway(GatewaySettings(drain_seconds=0.0))
        gateway.install(compile_table(_resources(sink), {}, version=1))
        gateway.clock = clock = _Clock()  # the gateway's own readings (the bus and the store keep theirs)
        stored_at = _spy_stored_at(gateway)
        try:
            assert (
                await gateway.publish([build_event(type=TYPE, source=SOURCE, data={})], namespace="ns") == 1
            )
            assert clock.readings == 1
            assert stored_at == [_published_at(gateway)] == [1_700_000_001.0]
        finally:
            await gateway.dispatcher.close(0)


async def test_a_publish_that_waited_is_counted_at_the_time_it_was_queued() -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink:
        gateway = Gateway(GatewaySettings(drain_seconds=0.0))
        gateway.install(compile_table(_resources(sink), {}, version=1))
        key = ResourceKey("EventSubscription", "ns", "first")
        gateway.dispatcher.update_target(
            key, dataclasses.replace(gateway.dispatcher.target(key), queue_size=1)
        )
        try:
            for n in (1, 2):  # one in flight (held at the sink), one queued: the lane is full
                assert (
                    await gateway.publish([build_event(type=TYPE, source=SOURCE, data={"n": n})], "ns") == 1
                )
                if n == 1:
                    await sink.wait_for(1)
            gateway.clock = clock = _Clock()
            stored_at = _spy_stored_at(gateway)
            waiting = asyncio.ensure_future(
                gateway.publish([build_event(type=TYPE, source=SOURCE, data={"n": 3})], "ns")
            )
            await asyncio.sleep(0.05)
            assert not waiting.done()  # waits for room
            gate.set()
            assert await waiting == 1
            assert clock.readings == 2
            assert stored_at == [1_700_000_001.0]
            assert _published_at(gateway) == 1_700_000_002.0  # read again after the wait
        finally:
            gate.set()
            await gateway.dispatcher.close(0)
