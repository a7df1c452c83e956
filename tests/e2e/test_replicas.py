"""Two replicas on the real kube-apiserver: sharded status whose sums equal what the sink saw, a stopped
replica's shard folded into ``retired`` by the Lease holder, and status PATCH conflicts that stay bounded.

Both processes run with the chart's ServiceAccount token (the RBAC proof counts their requests too) and a
pod name each, as the chart's downward API gives them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import post
from tests.support.polling import eventually
from tests.support.sinks import Sink

from .harness import ChartInstall, OperatorProcess, apply, get_json
from .test_operator_e2e import EVENT, cloudevent, subscription, wait_ready
from .test_rbac_least_privilege import requests_by
from .testbed import Cluster

EVENTS = 1000
SUBSCRIPTIONS = ("first", "second", "third")
REPLICAS = ("replica-a", "replica-b")
IN_FLIGHT = 16


def replica(
    testbed: Cluster, chart_install: ChartInstall, namespace: str, workdir: Path, pod: str
) -> OperatorProcess:
    return OperatorProcess(
        testbed,
        workdir,
        kubeconfig=chart_install.kubeconfig,
        namespaces=[namespace],
        status_interval=1.0,
        extra_args=["--no-kopf-scanning", "--pod-name", pod, "--lease-duration", "3"],
    )


async def send_all(replicas: list[OperatorProcess]) -> None:
    """EVENTS events, alternating between the replicas, a few in flight at a time."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(number: int) -> None:
        target = replicas[number % len(replicas)]
        async with limit:
            answer = await post(
                f"{target.url}/events",
                cloudevent(f"evt-{number}"),
                {"Content-Type": "application/cloudevents+json"},
            )
        assert answer.status == 202, answer.body

    await asyncio.gather(*(one(n) for n in range(EVENTS)))


def status_conflicts(testbed: Cluster, chart_install: ChartInstall, namespace: str) -> tuple[int, int]:
    """(status PATCHes, of which answered 409) in ``namespace``, from the apiserver's audit log."""
    patches = [
        e
        for e in requests_by(testbed, chart_install.username)
        if e["verb"] == "patch"
        and e["objectRef"].get("subresource") == "status"
        and e["objectRef"].get("namespace") == namespace
        and e.get("stage") == "ResponseComplete"
    ]
    # Metadata-level audit events carry the response code: without it, "0 conflicts" would prove nothing.
    assert all("code" in (e.get("responseStatus") or {}) for e in patches)
    codes = Counter(int(e["responseStatus"]["code"]) for e in patches)
    return len(patches), codes[409]


@pytest.mark.timeout(600)
async def test_two_replicas_write_shards_whose_sums_equal_the_deliveries_and_survive_a_stop(
    testbed: Cluster, chart_install: ChartInstall, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    replicas = [
        replica(testbed, chart_install, namespace, tmp_path_factory.mktemp(pod), pod) for pod in REPLICAS
    ]
    try:
        async with Sink() as sink:
            await apply(
                testbed,
                namespace,
                EVENT,
                *(subscription(name, f"http://127.0.0.1:{sink.port}/{name}") for name in SUBSCRIPTIONS),
            )
            for process in replicas:
                await asyncio.to_thread(process.start)
            for name in SUBSCRIPTIONS:
                await wait_ready(testbed, namespace, "eventsubscription", name)

            await send_all(replicas)
            await sink.wait_for(EVENTS * len(SUBSCRIPTIONS), within=300)
            seen = Counter(request.path.strip("/") for request in sink.requests)
            assert seen == dict.fromkeys(SUBSCRIPTIONS, EVENTS)

            async def statuses() -> dict[str, dict[str, Any]]:
                listed = await get_json(testbed, namespace, "eventsubscriptions")
                return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}

            def exact(found: dict[str, dict[str, Any]]) -> bool:
                return all(
                    found[name].get("delivered") == seen[name]
                    and sum(s.get("delivered", 0) for s in (found[name].get("replicas") or {}).values())
                    == seen[name]
                    and set(found[name].get("replicas") or {}) >= set(REPLICAS)
                    for name in SUBSCRIPTIONS
                )

            before = await eventually(statuses, until=exact, within=120, what="sums over shards = deliveries")
            for name in SUBSCRIPTIONS:
                shards = before[name]["replicas"]
                # Both replicas delivered (each delivers what it ingested with the memory bus).
                assert all(shards[pod]["delivered"] > 0 for pod in REPLICAS), shards
                healthy = next(c for c in before[name]["conditions"] if c["type"] == "Healthy")
                assert healthy["status"] == "True", healthy
            event = (await get_json(testbed, namespace, "ocevent", "thing-created"))["status"]
            assert event["emitted"] == EVENTS
            assert sum(s["emitted"] for s in event["replicas"].values()) == EVENTS

            # Stop one: its last counts are written, its Lease deleted, and the holder folds its shard.
            stopped = {name: before[name]["replicas"]["replica-b"]["delivered"] for name in SUBSCRIPTIONS}
            await asyncio.to_thread(replicas[1].stop)

            def folded(found: dict[str, dict[str, Any]]) -> bool:
                return all(
                    "replica-b" not in (found[name].get("replicas") or {})
                    and (found[name].get("retired") or {}).get("delivered") == stopped[name]
                    and found[name].get("delivered") == seen[name]
                    for name in SUBSCRIPTIONS
                )

            await eventually(statuses, until=folded, within=90, what="replica-b's shard folded into retired")
            # The survivor still serves, and the sums keep counting from the right base.
            answer = await post(
                f"{replicas[0].url}/events",
                cloudevent("after-stop"),
                {"Content-Type": "application/cloudevents+json"},
            )
            assert answer.status == 202
            await sink.wait_for(EVENTS * len(SUBSCRIPTIONS) + len(SUBSCRIPTIONS))
            await eventually(
                statuses,
                until=lambda found: all(found[name].get("delivered") == EVENTS + 1 for name in SUBSCRIPTIONS),
                within=60,
                what="delivered = 1001 after the stop",
            )

        patches, conflicts = status_conflicts(testbed, chart_install, namespace)
        # 409s come only from writes made under a resourceVersion precondition (the holder's fold and
        # repairs): a handful per resource, whatever the event count.
        resources = len(SUBSCRIPTIONS) + 1
        print(f"status PATCHes: {patches}, of which 409: {conflicts}")  # shown with -s
        assert conflicts <= 3 * resources, (patches, conflicts)
        assert patches > 0
        for process in replicas:
            assert "Traceback" not in process.log_tail(400), process.log_tail(400)
    finally:
        for process in replicas:
            await asyncio.to_thread(process.stop)
