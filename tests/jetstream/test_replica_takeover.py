"""Issue 13's proof for the durable bus: of two replicas sharing the JetStream consumers, one is killed
(SIGKILL) mid-run and stays dead; the survivor delivers everything that was accepted, including what the
dead one had pulled and not acknowledged (redelivered to the survivor after the attempt timeout)."""

from __future__ import annotations

import asyncio

import pytest

from tests.jetstream.conftest import StartGateway
from tests.jetstream.countingsink import CountingSink
from tests.jetstream.publisher import Publisher
from tests.jetstream.test_faults import STEADY_DELIVERY, Show, assert_well_formed, counts_line, until

pytestmark = [pytest.mark.jetstream]


@pytest.mark.timeout(240)
async def test_the_survivor_takes_over_when_one_of_two_replicas_dies(
    start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    doomed = await start_gateway("doomed", sink.url, delivery=STEADY_DELIVERY)
    survivor = await start_gateway("survivor", sink.url, delivery=STEADY_DELIVERY)
    publisher = Publisher([doomed.url, survivor.url], give_up_after=30)
    publishing = asyncio.create_task(publisher.run(3_000, rate=200, prefix="takeover"))

    await until(lambda: publisher.progress >= 1_000, within=60)
    doomed.kill()  # not restarted: only the survivor is left to deliver
    delivered_at_kill = len(sink.delivered())
    report = await publishing
    missing = await sink.wait_delivered(report.accepted, within=90, stalled=30)

    show(
        counts_line("replica SIGKILL, no restart", report, sink)
        + f"; delivered at the kill: {delivered_at_kill}"
    )
    assert_well_formed(report)
    assert len(report.accepted) >= 2_900, "the survivor kept accepting"
    assert not missing, f"{len(missing)} accepted events never delivered, e.g. {sorted(missing)[:5]}"
    assert len(sink.delivered()) > delivered_at_kill
