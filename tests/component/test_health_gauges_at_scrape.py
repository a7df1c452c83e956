"""The per-subscription health gauges are read when /metrics is scraped: every routed subscription has
them (-1 while its health is Unknown), a removed one has none, and nothing is held per idle subscription
between scrapes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.resources import Resource
from openconnector.routing.compiler import compile_table
from openconnector.routing.table import RoutingTable

GAUGES = (
    "openconnector_subscription_healthy",
    "openconnector_subscription_success_ratio",
    "openconnector_delivery_queue_depth",
)


def table(*names: str) -> RoutingTable:
    subs = [
        Resource(
            kind="EventSubscription", namespace="ns", name=name,
            spec={"eventType": "nl.example.thing.created", "endpoint": f"http://127.0.0.1:9/{name}"},
        )
        for name in names
    ]  # fmt: skip
    return compile_table({s.key: s for s in subs}, {}, version=len(names))


async def scrape(client: TestClient[web.Request, web.Application]) -> dict[str, dict[tuple[str, str], float]]:
    answer = await client.get("/metrics")
    assert answer.status == 200
    found: dict[str, dict[tuple[str, str], float]] = {name: {} for name in GAUGES}
    for family in text_string_to_metric_families(await answer.text()):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name][(sample.labels["namespace"], sample.labels["subscription"])] = sample.value
    return found


async def test_every_routed_subscription_has_its_gauges_at_scrape_and_a_removed_one_none() -> None:
    gateway = Gateway(GatewaySettings())
    await gateway.start()
    try:
        gateway.install(table("a", "b"))
        async with TestClient(TestServer(build_app(gateway))) as client:
            found = await scrape(client)
            # No attempt yet: health Unknown (-1), an empty queue, no success ratio to report.
            assert found["openconnector_subscription_healthy"] == {("ns", "a"): -1.0, ("ns", "b"): -1.0}
            assert found["openconnector_delivery_queue_depth"] == {("ns", "a"): 0.0, ("ns", "b"): 0.0}
            assert found["openconnector_subscription_success_ratio"] == {}
            gateway.tick()  # the periodic tick keeps no per-subscription series of its own
            assert not gateway.metrics._children

            gateway.install(table("b"))
            found = await scrape(client)
            assert set(found["openconnector_subscription_healthy"]) == {("ns", "b")}
            assert set(found["openconnector_delivery_queue_depth"]) == {("ns", "b")}
            # Named by the registry (the dashboard test reads these) even when no subscription is routed.
            gateway.install(RoutingTable.empty())
            assert set(GAUGES) <= gateway.metrics.metric_names()
    finally:
        await gateway.close()
