"""Over a real nats-server (session 8, issue 15): the JetStream connection's reader
(delivery/nats_reader.py) takes the messages of the gateway's hot path itself — PubAcks on a direct inbox,
deliveries of a push consumer on a direct deliver subject, and the read-back of an ordered consumer (as
the message log follows its stream) — and they arrive as they were published. Run on asyncio's loop and
on uvloop (the gateway's default; in a thread of its own).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import uvloop
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from openconnector.delivery.jetstream import _CoalescingClient, until_stream_takes_publishes
from openconnector.delivery.nats_reader import FrameParser
from tests.jetstream.natscluster import NatsCluster

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(120)]

_ROUNDS = 5
_PER_ROUND = 8


class _Watched(_CoalescingClient):
    """Records the subjects of the messages the fast path handed over (through ``_process_msg_now``) and
    of those nats-py's own parser handed over (straight to ``_process_msg``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fast: list[str] = []
        self.slow: list[str] = []
        self._now = False

    def _process_msg_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Any:
        self.fast.append(subject.decode())
        self._now = True
        try:
            return super()._process_msg_now(sid, subject, reply, data, headers)
        finally:
            self._now = False

    def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> Any:
        if not self._now:
            self.slow.append(subject.decode())
        return super()._process_msg(sid, subject, reply, data, headers)


async def _scenario(server: str, stream: str) -> dict[str, Any]:
    client = _Watched()
    await client.connect(servers=server)
    assert type(client._ps) is FrameParser
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.d.>"], num_replicas=1)
        # Until the new stream's interest reaches this server, the raw publishes below are answered
        # "no responders" and not stored.
        assert await until_stream_takes_publishes(js, f"{stream}.d.probe", within=10.0)
        total = _ROUNDS * _PER_ROUND
        acks: list[Msg] = []
        delivered: list[Msg] = []
        followed: list[Msg] = []
        all_in = asyncio.Event()

        def check() -> None:
            if len(acks) == len(delivered) == len(followed) == total:
                all_in.set()

        def acknowledged(message: Msg) -> None:
            acks.append(message)
            check()

        def deliver(message: Msg) -> None:
            delivered.append(message)
            client.publish_now(message.reply, b"+ACK")
            check()

        async def follow(message: Msg) -> None:
            followed.append(message)
            check()

        await client.subscribe_direct(f"_{stream}_ACK.*", acknowledged)
        await client.subscribe_direct(f"{stream}.deliver", deliver, queue="q")
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="c",
                deliver_subject=f"{stream}.deliver",
                deliver_group="q",
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=4,
            ),
        )
        await js.subscribe(
            f"{stream}.d.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=follow
        )
        await client.flush()
        for round_ in range(_ROUNDS):
            for n in range(_PER_ROUND):
                number = round_ * _PER_ROUND + n
                client.publish_now(
                    f"{stream}.d.{number}",
                    json.dumps({"n": number}).encode() * 20,
                    reply=f"_{stream}_ACK.{number}",
                    headers={"Oc-Meta": json.dumps({"n": number}), "Nats-Msg-Id": f"m{number}"},
                )
            await asyncio.sleep(0.05)
        async with asyncio.timeout(30):
            await all_in.wait()
        return {
            "acks": sorted(json.loads(m.data)["seq"] for m in acks),
            "ack subjects": sorted(int(m.subject.rsplit(".", 1)[1]) for m in acks),
            "delivered": sorted(json.loads(m.data[: m.data.index(b"}") + 1])["n"] for m in delivered),
            "delivered headers": sorted(
                json.loads(m.headers["Oc-Meta"])["n"] for m in delivered if m.headers
            ),
            "followed": [m.subject for m in followed],
            "fast": client.fast,
            "slow": client.slow,
        }
    finally:
        await client.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_puback_delivery_and_read_back_go_through_the_fast_path(
    nats_cluster: NatsCluster, loop: str
) -> None:
    server = nats_cluster.urls.split(",")[0]
    stream = f"S8{loop.upper()}"
    if loop == "asyncio":
        seen = await _scenario(server, stream)
    else:
        seen = await asyncio.to_thread(uvloop.run, _scenario(server, stream))
    total = _ROUNDS * _PER_ROUND
    assert seen["acks"] == list(range(1, total + 1))
    assert seen["ack subjects"] == list(range(total))
    assert seen["delivered"] == list(range(total))
    assert seen["delivered headers"] == list(range(total))
    assert seen["followed"] == [f"{stream}.d.{n}" for n in range(total)]
    # Every one of them came through the fast path; nats-py's parser handed over none of them.
    # (a push consumer's message has the subject it was stored with: deliveries and read-backs alike)
    hot = (f"_{stream}_ACK.", f"{stream}.d.")
    assert len([subject for subject in seen["fast"] if subject.startswith(hot)]) == 3 * total
    assert [subject for subject in seen["slow"] if subject.startswith(hot)] == []
