"""The fixtures themselves: the 3-node cluster keeps an R3 stream through a leader's SIGKILL.

These guard the fault tests: if the cluster fixture could not elect a new leader, or a restarted node
did not rejoin, the fault tests would measure the fixture instead of the gateway.
"""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import PubAck, StreamConfig
from nats.js.client import JetStreamContext

from tests.jetstream.countingsink import CountingSink
from tests.jetstream.natscluster import NatsCluster

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(90)]

# While a leader is re-elected, or the client reconnects from the killed node, a publish may find no
# responder or no stream answer (the gateway answers 503 then); the stream takes it again after that.
_TRANSIENT = (nats.errors.NoRespondersError, nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError)


async def _publish_through_failover(js: JetStreamContext, payload: bytes, message_id: str) -> PubAck:
    for _ in range(60):
        try:
            return await js.publish("fixture.a", payload, headers={"Nats-Msg-Id": message_id})
        except _TRANSIENT:
            await asyncio.sleep(0.5)
    raise AssertionError(f"the stream did not take {message_id} within 30 s of retries")


async def test_r3_stream_survives_the_leader_sigkill(nats_cluster: NatsCluster) -> None:
    client = await nats.connect(servers=nats_cluster.urls.split(","), connect_timeout=2)
    try:
        js = client.jetstream(timeout=5)
        await js.add_stream(StreamConfig(name="FIXTURE", subjects=["fixture.>"], num_replicas=3))
        for i in range(10):
            await js.publish("fixture.a", str(i).encode(), headers={"Nats-Msg-Id": f"m{i}"})
        leader = await nats_cluster.stream_leader("FIXTURE")
        nats_cluster.kill(leader)
        new_leader = await nats_cluster.stream_leader("FIXTURE")
        assert new_leader != leader
        for i in range(10, 20):
            await _publish_through_failover(js, str(i).encode(), f"m{i}")
        await nats_cluster.restart(leader)
        # A re-publish inside the duplicate window is stored once, across the leader change.
        ack = await _publish_through_failover(js, b"0", "m0")
        assert ack.duplicate
        info = await js.stream_info("FIXTURE")
        assert info.state.messages == 20
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
    finally:
        await client.close()


async def test_counting_sink_refuses_connections_then_listens_on_the_same_port() -> None:
    import aiohttp

    sink = await CountingSink().listen()
    port = sink.port
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(sink.url, data=b"{}", headers={"ce-id": "a"}) as reply:
                assert reply.status == 200
            await sink.refuse()
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.post(sink.url, data=b"{}", headers={"ce-id": "b"}):
                    pass
            await sink.listen()
            assert sink.port == port
            async with session.post(sink.url, data=b"{}", headers={"ce-id": "c"}) as reply:
                assert reply.status == 200
        assert sink.delivered() == {"a", "c"}
    finally:
        await sink.close()
