"""Every webhook to a targetless Consumer is counted where a user reads it (issue 15 keeps them all while
the intake binds its counters once): the Consumer's status counters, the webhook and ingress-byte series,
the Event's emitted counter, and a delivery-side refusal counted as ``backlog``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from openconnector.resources import ResourceKey
from tests.component.conftest import StartGateway
from tests.support.http import assert_problem, post
from tests.support.sinks import Sink

API = "openconnector.nl/v1alpha1"
TYPE = "nl.example.webshop.order.paid"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:webshop"
JSON = {"Content-Type": "application/json"}


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _manifests(directory: Path, sink_url: str) -> Path:
    docs = [
        _doc("Event", "paid", {"name": "paid", "type": TYPE, "source": SOURCE}),
        _doc("Consumer", "shop", {"endpoint": "shop", "event": "paid", "auth": {"type": "none"}}),
        _doc("EventSubscription", "sub", {"eventType": TYPE, "endpoint": f"{sink_url}/x"}),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


@pytest.fixture
async def sink() -> Any:
    async with Sink() as running:
        yield running


async def test_webhooks_are_counted_in_status_and_metrics(
    tmp_path: Path, start_gateway: StartGateway, sink: Sink
) -> None:
    standalone = await start_gateway(_manifests(tmp_path / "m", sink.url))
    gateway = standalone.gateway
    url = f"{standalone.url}/webhooks/shop"
    sample = gateway.metrics.registry.get_sample_value
    labels = {"namespace": "default", "consumer": "shop"}
    # A series appears with the first request it counts, not before.
    assert sample("openconnector_ingress_bytes_total", {"endpoint": "/webhooks"}) is None
    assert sample("openconnector_webhooks_received_total", labels) is None
    bodies = [orjson.dumps({"n": 1}), orjson.dumps({"n": [2, {"deep": True}]}), b'{"n": 3}']
    for body in bodies:
        answer = await post(url, body, JSON)
        assert answer.status == 200, answer.body
        assert set(orjson.loads(answer.body)) == {"eventId"}
    refused = await post(url, b"[", JSON)
    assert_problem(refused, 400, "invalid-json")

    stats = gateway.consumer_stats[ResourceKey("Consumer", "default", "shop")]
    assert (stats.received, stats.forwarded, stats.rejected_by_reason) == (4, 3, {"invalid-json": 1})
    assert sample("openconnector_webhooks_received_total", labels) == 4
    assert sample("openconnector_webhooks_forwarded_total", labels) == 3
    assert sample("openconnector_ingress_bytes_total", {"endpoint": "/webhooks"}) == sum(map(len, bodies)) + 1
    assert sample("openconnector_events_emitted_total", {"type": TYPE}) == 3
    assert gateway.event_stats[ResourceKey("Event", "default", "paid")].published == 3

    # A refusal of the delivery side (here: shutting down) is the Consumer's "backlog" refusal.
    await gateway.dispatcher.close(0)
    closed = await post(url, b"{}", JSON)
    assert_problem(closed, 503, "shutting-down")
    assert closed.headers["Retry-After"] == "5"
    assert stats.rejected_by_reason == {"invalid-json": 1, "backlog": 1}
    rejected = {**labels, "reason": "backlog"}
    assert sample("openconnector_webhooks_rejected_total", rejected) == 1
