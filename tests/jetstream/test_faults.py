"""Issue 12's proof: faults of gateways, NATS nodes and subscribers, with counts.

Each test runs real processes on 127.0.0.1: a 3-node JetStream cluster (R3 stream), one or two
``openconnector serve --bus jetstream`` processes, and a counting sink in the test's loop. A publisher
counts an event as *accepted* only when the gateway answered 2xx; *lost* is an accepted event that
never reached the sink. Each test prints its counts (accepted, delivered unique, duplicates, lost,
how long publishing was refused); the assertions are on counts and on what the answers say, never on
how fast something went, except where the issue asks for a schedule (and then with seconds of slack).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.jetstream.conftest import StartGateway
from tests.jetstream.countingsink import Answer, CountingSink
from tests.jetstream.gatewayproc import STREAM
from tests.jetstream.natscluster import NatsCluster
from tests.jetstream.publisher import Publisher, PublishReport

pytestmark = [pytest.mark.jetstream]

Show = Callable[[str], None]

# Generous enough for every fault below: a retry budget of minutes, attempts that give up after 5 s
# (so an attempt held by a killed process is redelivered soon after).
STEADY_DELIVERY = {
    "retries": 20,
    "backoffPolicy": "exponential",
    "backoffDelay": "PT0.2S",
    "backoffMax": "PT2S",
    "timeout": "PT5S",
    "maxConcurrency": 32,
}


def counts_line(name: str, report: PublishReport, sink: CountingSink) -> str:
    delivered = sink.delivered()
    lost = report.accepted - delivered
    by_target = {
        target.rsplit(":", 1)[-1]: dict(sorted(counts.items()))
        for target, counts in report.statuses_by_target.items()
    }
    return (
        f"[{name}] sent {report.sent}, accepted {len(report.accepted)}, "
        f"not accepted {len(report.not_accepted)}, delivered unique {len(delivered & report.accepted)}"
        f" (+{len(delivered - report.accepted)} not acknowledged to the sender), "
        f"duplicates {sink.duplicates()}, lost {len(lost)}, dead-lettered {len(sink.dead_letters)}; "
        f"publish attempts {report.attempts}, answers {dict(sorted(report.statuses.items()))}, "
        f"no connection {report.connection_errors}, refused window {report.refused_window_s:.1f} s"
        + (f" (answers per gateway {by_target})" if len(by_target) > 1 else "")
    )


async def until(condition: Callable[[], bool], within: float) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds passed; returns whether it held."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


def assert_well_formed(report: PublishReport) -> None:
    assert not report.malformed_refusals, report.malformed_refusals[:5]
    assert not report.unexpected, report.unexpected[:5]


@pytest.mark.timeout(180)
async def test_sigkill_of_one_of_two_gateways_loses_nothing(
    start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    first = await start_gateway("a", sink.url, delivery=STEADY_DELIVERY)
    second = await start_gateway("b", sink.url, delivery=STEADY_DELIVERY)
    publisher = Publisher([first.url, second.url], give_up_after=30)
    publishing = asyncio.create_task(publisher.run(5_000, rate=200, prefix="two-gw"))

    await until(lambda: publisher.progress >= 2_000, within=60)
    first.kill()
    killed_at = publisher.progress
    await asyncio.sleep(3)
    await first.start()
    ready_again = time.monotonic()
    report = await publishing
    missing = await sink.wait_delivered(report.accepted, within=60, stalled=20)

    after_restart = [t - ready_again for t, target in report.refusals_503 if target == first.url]
    show(
        counts_line("gateway SIGKILL", report, sink)
        + f"; killed after {killed_at} events; 503s of the restarted gateway "
        + (
            f"{min(after_restart):+.1f}..{max(after_restart):+.1f} s from its /readyz 200"
            if after_restart
            else "none"
        )
    )
    assert_well_formed(report)
    assert len(report.accepted) >= 4_900, "the surviving gateway kept accepting"
    assert not missing, f"{len(missing)} accepted events never delivered, e.g. {sorted(missing)[:5]}"


@pytest.mark.timeout(180)
async def test_sigkill_of_the_stream_leader_loses_no_accepted_event(
    nats_cluster: NatsCluster, start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    gateway = await start_gateway("a", sink.url, delivery=STEADY_DELIVERY)
    leader = await nats_cluster.stream_leader(STREAM)
    publisher = Publisher([gateway.url], give_up_after=30)
    publishing = asyncio.create_task(publisher.run(3_000, rate=150, prefix="leader"))

    await until(lambda: publisher.progress >= 1_000, within=60)
    nats_cluster.kill(leader)
    killed_at = publisher.progress
    new_leader = await nats_cluster.stream_leader(STREAM)
    await asyncio.sleep(5)
    await nats_cluster.restart(leader)
    report = await publishing
    missing = await sink.wait_delivered(report.accepted, within=60, stalled=20)

    show(
        counts_line("stream leader SIGKILL", report, sink)
        + f"; leader {leader} killed after {killed_at} events, new leader {new_leader}"
    )
    assert new_leader != leader
    assert_well_formed(report)
    assert report.accepted, "nothing was accepted at all"
    assert not missing, f"{len(missing)} accepted events never delivered, e.g. {sorted(missing)[:5]}"


@pytest.mark.timeout(180)
async def test_a_sink_that_refuses_connections_for_60_s_gets_everything(
    start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    # The retry budget covers the outage: linear backoff with full jitter waits up to 4 s per retry,
    # ~2 s on average, so 100 retries last minutes.
    delivery = {
        "retries": 100,
        "backoffPolicy": "linear",
        "backoffDelay": "PT1S",
        "backoffMax": "PT4S",
        "timeout": "PT5S",
        "maxConcurrency": 16,
    }
    dead_letters = await CountingSink().listen()
    try:
        gateway = await start_gateway("a", sink.url, delivery=delivery, dead_letter=dead_letters.url)
        outage = asyncio.create_task(sink.refuse_for(60))
        await asyncio.sleep(0.5)  # the port is closed before the first event is published
        report = await Publisher([gateway.url], retry=False).run(200, rate=50, prefix="outage")
        delivered_during_outage = len(sink.delivered())
        await outage
        missing = await sink.wait_delivered(report.accepted, within=60, stalled=20)

        show(
            counts_line("sink refuses 60 s", report, sink)
            + f"; delivered during the outage {delivered_during_outage}, "
            f"dead-lettered {len(dead_letters.arrivals)}"
        )
        assert_well_formed(report)
        assert len(report.accepted) == 200, "the sink being down is no reason to refuse events"
        assert delivered_during_outage == 0
        assert not missing, f"{len(missing)} accepted events never delivered, e.g. {sorted(missing)[:5]}"
        assert not dead_letters.arrivals, "the retry budget covered the outage: nothing is dead-lettered"
    finally:
        await dead_letters.close()


RETRY_AFTER_S = 10.0


@pytest.mark.timeout(120)
async def test_events_waiting_in_backoff_survive_the_gateway_and_arrive_on_schedule(
    start_gateway: StartGateway, show: Show
) -> None:
    # Every event's first attempt is answered 503 + Retry-After: 10, so its retry is due 10 s later.
    # The attempt timeout (30 s) sets AckWait: had the wait lived only in the killed process, the
    # event would come back no sooner than AckWait, far off the schedule.
    sink = await CountingSink(
        first_reply=lambda _: Answer(503, {"Retry-After": str(int(RETRY_AFTER_S))})
    ).listen()
    try:
        delivery = {
            "retries": 3,
            "backoffPolicy": "exponential",
            "backoffDelay": "PT0.1S",
            "backoffMax": "PT60S",
            "timeout": "PT30S",
            "maxConcurrency": 32,
        }
        first = await start_gateway("a", sink.url, delivery=delivery)
        report = await Publisher([first.url], retry=False).run(20, rate=20, prefix="backoff")
        await until(lambda: len(sink.arrivals) >= len(report.accepted), within=20)
        await asyncio.sleep(1)  # every 503 answered and turned into a delayed redelivery
        first.kill()
        killed_at = time.monotonic()
        second = await start_gateway("b", sink.url, delivery=delivery)
        started_in = time.monotonic() - killed_at
        missing = await sink.wait_delivered(report.accepted, within=45)

        delays = sorted(
            times[1] - times[0] for event, times in sink.arrivals.items() if len(times) > 1
        )  # fmt: skip
        show(
            counts_line("backoff across a gateway SIGKILL", report, sink)
            + f"; replacement ready {started_in:.1f} s after the kill; retry came "
            f"{delays[0] if delays else 0:.1f}..{delays[-1] if delays else 0:.1f} s after the first attempt "
            f"(Retry-After {RETRY_AFTER_S:.0f} s)"
        )
        assert second.running
        assert_well_formed(report)
        assert len(report.accepted) == 20
        assert not missing, f"{len(missing)} events waiting in backoff were lost: {sorted(missing)[:5]}"
        assert all(len(sink.arrivals[e]) >= 2 for e in report.accepted)
        # On schedule: not before Retry-After, and long before AckWait would have brought it back.
        assert delays[0] >= RETRY_AFTER_S - 0.5, delays
        assert delays[-1] <= RETRY_AFTER_S + 8, delays
    finally:
        await sink.close()


@pytest.mark.timeout(150)
async def test_nats_down_at_publish_is_a_503_never_a_202(
    nats_cluster: NatsCluster, start_gateway: StartGateway, sink: CountingSink, show: Show
) -> None:
    gateway = await start_gateway("a", sink.url, delivery=STEADY_DELIVERY)
    before = await Publisher([gateway.url], retry=False).run(20, rate=50, prefix="before")
    assert len(before.accepted) == 20

    nats_cluster.kill_all()
    down = await Publisher([gateway.url], retry=False).run(50, rate=25, prefix="down")
    not_ready_in = await gateway.wait_readyz(503, within=30)

    await nats_cluster.restart_all()
    ready_in = await gateway.wait_readyz(200, within=60)
    after = await Publisher([gateway.url], give_up_after=30).run(20, rate=20, prefix="after")
    expected = before.accepted | after.accepted
    missing = await sink.wait_delivered(expected, within=45)
    await asyncio.sleep(2)  # a refused event that was delivered anyway would show up by now

    warnings = [line for line in gateway.log_lines() if " WARNING " in line or " ERROR " in line]
    show(
        f"[NATS down] while down: sent {down.sent}, accepted {len(down.accepted)}, answers "
        f"{dict(down.statuses)}, no answer {down.connection_errors}, refused window "
        f"{down.refused_window_s:.1f} s, delivered anyway {len(sink.delivered() & down.not_accepted)}; "
        f"/readyz 503 within {not_ready_in:.1f} s, 200 again {ready_in:.1f} s after NATS returned; "
        f"before/after: accepted {len(expected)}, delivered {len(expected & sink.delivered())}, "
        f"lost {len(missing)}, duplicates {sink.duplicates()}; warnings logged {len(warnings)}"
    )
    assert_well_formed(down)
    assert not down.accepted, f"{len(down.accepted)} events answered 2xx while NATS was down"
    assert down.connection_errors == 0, "every request got an answer"
    assert set(down.statuses) == {503}, down.statuses
    assert not (sink.delivered() & down.not_accepted), "a refused event was delivered"
    assert len(after.accepted) == 20
    assert not missing, sorted(missing)[:5]
    # The log says why, once per outage, not once per refused request.
    assert 1 <= len(warnings) <= 5, warnings
