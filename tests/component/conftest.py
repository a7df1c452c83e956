"""Component tier: the real gateway on a loopback port, with real loopback sinks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import StandaloneGateway, start_standalone

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SUBSCRIBER = "http://127.0.0.1:9000"
EXAMPLE_REGISTER = "http://127.0.0.1:9100"

StartGateway = Callable[..., Awaitable[StandaloneGateway]]


def example_manifests(target: Path, *, subscriber: str, register: str) -> Path:
    """examples/ copied to ``target`` with its loopback ports pointed at the test's own sinks."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((ROOT / "examples").glob("*.yaml")):
        text = source.read_text().replace(EXAMPLE_SUBSCRIBER, subscriber).replace(EXAMPLE_REGISTER, register)
        (target / source.name).write_text(text)
    return target


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """Start standalone gateways on free ports; all are stopped at the end of the test."""
    started: list[StandaloneGateway] = []

    async def start(directory: Path, *, watch: bool = False, **settings: Any) -> StandaloneGateway:
        gateway = await start_standalone(
            [directory],
            GatewaySettings(port=0, drain_seconds=1.0, **settings),
            watch=watch,
        )
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()
