"""Standalone mode: a subscription suspended by 410 Gone or autoPauseAfter resumes when its spec changes.

Files carry no metadata.generation; the store counts it (issue 16: before, every file edit left
generation 1, so observedGeneration never moved and a suspended subscription stayed suspended).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from openconnector.standalone import StandaloneGateway
from tests.component.client import call, post
from tests.component.conftest import StartGateway
from tests.component.sinks import Reply, Sink

API = "openconnector.nl/v1alpha1"
EVENT_TYPE = "nl.example.webshop.order.paid"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:webshop"
_ids = iter(range(1_000_000))


def write(directory: Path, delivery: Mapping[str, Any], endpoint: str) -> None:
    docs = [
        {"apiVersion": API, "kind": "Event", "metadata": {"name": "paid"},
         "spec": {"type": EVENT_TYPE, "source": SOURCE}},
        {"apiVersion": API, "kind": "EventSubscription", "metadata": {"name": "orders"},
         "spec": {"eventType": EVENT_TYPE, "endpoint": endpoint, "delivery": dict(delivery)}},
    ]  # fmt: skip
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


async def send(gw: StandaloneGateway) -> None:
    body = orjson.dumps({"specversion": "1.0", "id": f"e{next(_ids)}", "source": SOURCE, "type": EVENT_TYPE})
    answer = await post(f"{gw.url}/events", body, {"Content-Type": "application/cloudevents+json"})
    assert answer.status == 202, answer.body


async def subscription_status(gw: StandaloneGateway) -> dict[str, Any]:
    answer = await call("GET", f"{gw.url}/api/v1alpha1/status")
    entry = next(r for r in answer.json()["resources"] if r["kind"] == "EventSubscription")
    status: dict[str, Any] = entry["status"]
    return status


async def until(gw: StandaloneGateway, phase: str, generation: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status = await subscription_status(gw)
        if status.get("phase") == phase and status.get("observedGeneration") == generation:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.02)


def healthy(status: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Healthy")


async def test_410_suspends_until_the_file_changes(tmp_path: Path, start_gateway: StartGateway) -> None:
    async with Sink(Reply(410)) as sink:
        write(tmp_path, {"retries": 0}, sink.url_for("/v1"))
        gw = await start_gateway(tmp_path)
        await send(gw)
        status = await until(gw, "Suspended", 1)
        assert healthy(status)["reason"] == "EndpointGone"

        # An unchanged rescan keeps the generation, and the subscription stays suspended.
        assert gw.reload() is False
        await send(gw)
        await until(gw, "Suspended", 1)
        assert len(sink.requests) == 1

        write(tmp_path, {"retries": 0}, sink.url_for("/v2"))
        assert gw.reload() is True
        await until(gw, "Active", 2)
        await send(gw)
        requests = await sink.wait_for(2)
        assert requests[1].path == "/v2"


async def test_auto_pause_lasts_until_the_file_changes(tmp_path: Path, start_gateway: StartGateway) -> None:
    async with Sink(default=Reply(500)) as sink:
        write(tmp_path, {"retries": 0, "autoPauseAfter": 2}, sink.url)
        gw = await start_gateway(tmp_path)
        await send(gw)
        await send(gw)
        status = await until(gw, "Suspended", 1)
        assert healthy(status)["status"] == "False"

        write(tmp_path, {"retries": 0, "autoPauseAfter": 5}, sink.url)
        gw.reload()
        await until(gw, "Active", 2)
        sink.default = Reply(200)
        await send(gw)
        await sink.wait_for(3)
