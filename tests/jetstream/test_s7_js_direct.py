"""Messages handed to a function as the connection reads them (session 7, issue 15) are the messages
nats-py's queued subscription delivers: same subject, reply, data, headers (also a status-only answer),
in order; after unsubscribing, none (a real 3-node cluster: the subscriptions live on one node).
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from openconnector.delivery.jetstream import _CoalescingClient
from tests.jetstream.natscluster import NatsCluster

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(120)]


def _fields(message: Msg) -> tuple[str, str, bytes, dict[str, str] | None]:
    return message.subject, message.reply, message.data, message.headers


async def test_a_direct_subscription_receives_what_a_queued_one_receives(nats_cluster: NatsCluster) -> None:
    client = _CoalescingClient()
    await client.connect(servers=nats_cluster.urls.split(",")[0])
    try:
        direct: list[Msg] = []
        queued: list[Msg] = []
        all_in = asyncio.Event()

        async def collect(message: Msg) -> None:
            queued.append(message)
            if len(queued) == 4:
                all_in.set()

        direct_subscription = await client.subscribe_direct("s7.direct.*", direct.append)
        await client.subscribe("s7.direct.*", cb=collect)
        await client.flush()
        await client.publish("s7.direct.a", b"plain")
        await client.publish("s7.direct.b", b"with headers", reply="r.1", headers={"Oc-Meta": '{"id":"x"}'})
        await client.publish("s7.direct.c", b"", headers={"A": "1", "B": " two "})
        await client.publish("s7.direct.d", b"last")
        async with asyncio.timeout(10):
            await all_in.wait()
        assert [_fields(m) for m in direct] == [_fields(m) for m in queued]
        assert [m.data for m in direct] == [b"plain", b"with headers", b"", b"last"]
        assert direct[1].headers == {"Oc-Meta": '{"id":"x"}'}
        assert all(m._client is client for m in direct)

        # A status-only answer (no responders) arrives as nats-py builds it.
        await direct_subscription.unsubscribe()
        answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        inbox = "s7.inbox.1"
        await client.subscribe_direct(inbox, answer.set_result)
        await client.flush()
        await client.publish("s7.nobody.listens", b"?", reply=inbox, headers={"X": "1"})
        async with asyncio.timeout(10):
            status = await answer
        assert status.headers is not None
        assert status.headers.get("Status") == "503"

        # Unsubscribed: nothing more reaches the function, and it is forgotten.
        before = len(direct)
        await client.publish("s7.direct.e", b"after")
        await client.flush()
        await asyncio.sleep(0.2)
        assert len(direct) == before
        assert direct_subscription._id not in client._direct
    finally:
        await client.close()


async def test_publish_now_and_publish_keep_one_order(nats_cluster: NatsCluster) -> None:
    client = _CoalescingClient()
    await client.connect(servers=nats_cluster.urls.split(",")[0])
    try:
        received: list[Msg] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def collect(message: Msg) -> None:
            received.append(message)
            if len(received) == 40 and not done.done():
                done.set_result(None)

        await client.subscribe_direct("s7.order", collect)
        await client.flush()
        for n in range(40):
            if n % 3:
                assert client.publish_now("s7.order", str(n).encode(), headers={"N": str(n)}) is None
            else:
                await client.publish("s7.order", str(n).encode(), headers={"N": str(n)})
            if n % 7 == 0:
                await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await done
        assert [int(m.data) for m in received] == list(range(40))
        assert [m.headers for m in received] == [{"N": str(n)} for n in range(40)]
    finally:
        await client.close()
