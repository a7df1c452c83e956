"""``until_stream_takes_publishes`` (delivery/jetstream.py) against a real nats-server: it answers True
once a stream takes publishes on the subject, storing nothing, and False when none does within its bound.
The message log waits for it before it counts as caught up: its changes are plain publishes, which NATS
drops unseen until the stream's interest reaches the connection's server."""

from __future__ import annotations

import asyncio

import nats

from openconnector.delivery.jetstream import until_stream_takes_publishes
from tests.component.natsserver import NatsServer


async def test_a_stream_on_the_subject_answers_the_probe_and_stores_nothing() -> None:
    with NatsServer() as server:
        client = await nats.connect(server.url)
        try:
            js = client.jetstream()
            await js.add_stream(name="PROBED", subjects=["probed.>"])
            assert await until_stream_takes_publishes(js, "probed._probe", within=5.0)
            info = await js.stream_info("PROBED")
            assert info.state.messages == 0
        finally:
            await client.close()


async def test_no_stream_on_the_subject_is_false_once_the_bound_ends() -> None:
    with NatsServer() as server:
        client = await nats.connect(server.url)
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert not await until_stream_takes_publishes(client.jetstream(), "nobody.listens", within=0.3)
            assert 0.3 <= loop.time() - began < 3.0
        finally:
            await client.close()
