"""What a sender is promised on the JetStream bus, with real processes: a re-sent CloudEvent is stored
once (the duplicate window), and a full stream refuses new events with 503 instead of dropping stored
ones, and takes new ones again once the stored ones are delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from tests.jetstream.conftest import StartGateway
from tests.jetstream.countingsink import CountingSink
from tests.jetstream.publisher import Publisher, event_headers

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(120)]

Show = Callable[[str], None]

DELIVERY = {"retries": 50, "backoffDelay": "PT0.2S", "backoffMax": "PT1S", "timeout": "PT5S"}


async def test_a_resent_cloudevent_is_stored_and_delivered_once(
    start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    gateway = await start_gateway("a", sink.url, delivery=DELIVERY)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for event_id in ("same", "same", "same", "other", "same"):
            async with session.post(
                f"{gateway.url}/events", data=orjson.dumps({"n": 1}), headers=event_headers(event_id)
            ) as reply:
                statuses.append(reply.status)
    missing = await sink.wait_delivered({"same", "other"}, within=30)
    await asyncio.sleep(2)  # a second copy would be delivered by now

    show(
        f"[duplicate window] answers {statuses}; deliveries per id "
        f"{ {k: len(v) for k, v in sorted(sink.arrivals.items())} }"
    )
    assert all(200 <= status < 300 for status in statuses), statuses
    assert not missing
    assert len(sink.arrivals["same"]) == 1, "a sender's retry inside the duplicate window is stored once"
    assert len(sink.arrivals["other"]) == 1


async def test_a_full_stream_refuses_new_events_and_keeps_the_stored_ones(
    start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    # 64 KiB of stream and a subscriber that is down: the stream fills with undelivered events.
    gateway = await start_gateway(
        "a", sink.url, delivery=DELIVERY, extra_args=["--jetstream-max-bytes", "65536"]
    )
    await sink.refuse()
    report = await Publisher([gateway.url], retry=False).run(400, rate=100, prefix="full")
    await sink.listen()
    missing = await sink.wait_delivered(report.accepted, within=60, stalled=20)
    # Delivered messages leave the stream (interest retention): the same stream takes as much again.
    again = await Publisher([gateway.url], retry=False).run(len(report.accepted), rate=100, prefix="again")
    missing_again = await sink.wait_delivered(again.accepted, within=60, stalled=20)

    show(
        f"[stream full] sent {report.sent}, accepted {len(report.accepted)}, refused "
        f"{report.statuses.get(503, 0)}, other answers "
        f"{ {s: n for s, n in report.statuses.items() if s not in (202, 503)} }, delivered "
        f"{len(sink.delivered() & report.accepted)}, lost {len(missing)}, delivered although refused "
        f"{len(sink.delivered() & report.not_accepted)}; after delivery: sent {again.sent}, accepted "
        f"{len(again.accepted)}, answers {dict(again.statuses)}, lost {len(missing_again)}"
    )
    # Every 503 carried Retry-After and problem+json (the publisher checks each one).
    assert not report.malformed_refusals, report.malformed_refusals[:3]
    assert not report.unexpected, report.unexpected[:3]
    assert report.accepted, "the stream took events until it was full"
    assert report.statuses[503] > 0, "the stream never filled: the test proves nothing"
    assert not missing, f"{len(missing)} accepted events were dropped, e.g. {sorted(missing)[:5]}"
    assert not (sink.delivered() & report.not_accepted), "a refused event was delivered"
    assert not again.malformed_refusals, again.malformed_refusals[:3]
    assert len(again.accepted) == again.sent, "delivered events still occupy the stream"
    assert not missing_again
