"""JetStream tier: real nats-server processes (3-node cluster), real gateway processes, a real sink.

Everything listens on 127.0.0.1 on free ports; each test gets its own cluster and store directories, and
every process a test started is stopped at its end (SIGTERM, then SIGKILL), whatever the outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.jetstream.countingsink import CountingSink
from tests.jetstream.gatewayproc import GatewayProcess, write_manifests
from tests.jetstream.natscluster import NatsCluster

StartGateway = Callable[..., Awaitable[GatewayProcess]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "jetstream: starts a real 3-node NATS JetStream cluster and gateway processes"
    )


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", size=3)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def sink() -> AsyncIterator[CountingSink]:
    counting = CountingSink()
    await counting.listen()
    yield counting
    await counting.close()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    """Gateway processes a test created; all stopped at the end."""
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.stop()


@pytest.fixture
def start_gateway(tmp_path: Path, nats_cluster: NatsCluster, gateways: list[GatewayProcess]) -> StartGateway:
    """``await start_gateway(name, endpoint, delivery={...})``: write manifests, start, wait for /readyz."""

    async def start(
        name: str,
        endpoint: str,
        *,
        delivery: Mapping[str, Any],
        dead_letter: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> GatewayProcess:
        policy = dict(delivery)
        if dead_letter is not None:
            policy["deadLetter"] = {"endpoint": dead_letter}
        manifests = write_manifests(tmp_path / f"manifests-{name}", endpoint, delivery=policy)
        gateway = GatewayProcess(name, manifests, nats_cluster.urls, tmp_path / "logs", extra_args=extra_args)
        gateways.append(gateway)
        await gateway.start()
        return gateway

    return start


@pytest.fixture
def show(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of counts to the terminal even while pytest captures output."""

    def say(line: str) -> None:
        with capsys.disabled():
            print(f"\n    {line}", end="")

    return say
