"""Readiness turns false as soon as shutdown begins (SIGTERM), before the drain: the Service stops
sending new requests to a pod that is about to go, while it still finishes what it accepted."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.routing.table import RoutingTable


async def test_readyz_answers_503_once_draining_and_the_gateway_still_serves() -> None:
    gateway = Gateway(GatewaySettings())
    await gateway.start()
    try:
        gateway.install(RoutingTable.empty())
        async with TestClient(TestServer(build_app(gateway))) as client:
            assert (await client.get("/readyz")).status == 200
            gateway.draining = True
            answer = await client.get("/readyz")
            assert answer.status == 503
            assert answer.headers["Content-Type"].startswith("application/problem+json")
            assert answer.headers["Retry-After"] == "5"
            assert (await answer.json())["type"].endswith("shutting-down")
            assert (await client.get("/healthz")).status == 200  # alive: the drain goes on
    finally:
        await gateway.close()
