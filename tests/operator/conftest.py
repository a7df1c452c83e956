"""Operator tier: the real operator (Kopf with our registry, the KubeClient, the gateway) against kmock.

Everything talks HTTP on 127.0.0.1: Kopf lists and watches kmock, the operator patches status and posts
Events to it, the test drives the gateway's HTTP API and loopback sinks. Kopf logs in through the same
``$KUBECONFIG`` path as ``openconnector run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest

from openconnector.cli import build_parser
from openconnector.gateway.core import Gateway
from openconnector.kube.operator import OperatorCore
from openconnector.kube.runner import ClusterGateway, run_kopf, start_cluster_gateway
from tests.support.http import Answer, call, post
from tests.support.polling import eventually

from .kube import NAMESPACE, READER_TOKEN, Apiserver, Kubectl, condition, install_crds, watching

STARTUP_SECONDS = 15.0


@dataclass
class RunningOperator:
    """One ``openconnector run``: the gateway in this event loop, Kopf in its own thread."""

    cluster: ClusterGateway
    kopf_task: asyncio.Task[None]
    stop_flag: asyncio.Event
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cluster.port}"

    @property
    def core(self) -> OperatorCore:
        return self.cluster.core

    @property
    def gateway(self) -> Gateway:
        return self.cluster.gateway

    async def stop_kopf(self) -> None:
        """The first half of what SIGTERM does: Kopf stops watching (the gateway still serves)."""
        self.stop_flag.set()
        await asyncio.wait_for(asyncio.shield(self.kopf_task), timeout=STARTUP_SECONDS)

    async def stop(self) -> None:
        """What SIGTERM does: Kopf stops, then deliveries drain and the last status is written."""
        if self.stopped:
            return
        self.stopped = True
        try:
            await self.stop_kopf()
        finally:
            await self.cluster.stop()

    # ---------------------------------------------------------------------- the gateway API

    async def status_view(self) -> dict[str, Any]:
        answer = await call(
            "GET", f"{self.url}/api/v1alpha1/status", headers={"Authorization": f"Bearer {READER_TOKEN}"}
        )
        assert answer.status == 200, answer.body
        view: dict[str, Any] = answer.json()
        return view

    async def resource_status(
        self, kind: str, name: str, namespace: str = NAMESPACE
    ) -> dict[str, Any] | None:
        """What the gateway's status API says about one resource (None: it does not know it)."""
        for item in (await self.status_view())["resources"]:
            if (item["kind"], item["namespace"], item["name"]) == (kind, namespace, name):
                status: dict[str, Any] = item["status"]
                return status
        return None

    async def wait_status(
        self, kind: str, name: str, check: Callable[[dict[str, Any]], object], what: str
    ) -> dict[str, Any]:
        """Wait until the gateway's status of a resource passes ``check``; returns that status."""
        seen: dict[str, Any] | None = None

        async def probe() -> bool:
            nonlocal seen
            seen = await self.resource_status(kind, name)
            return seen is not None and bool(check(seen))

        await eventually(probe, what=f"{kind} {name}: {what}")
        assert seen is not None
        return seen

    async def wait_observed(
        self, kind: str, name: str, generation: int, *, reason: str = "Compiled"
    ) -> dict[str, Any]:
        """Wait until the routing table holds this generation of a resource with this Ready reason
        (objects created together reach the operator in any order, so a reference may resolve late)."""

        def check(status: dict[str, Any]) -> bool:
            return (
                status.get("observedGeneration") == generation
                and condition(status, "Ready")["reason"] == reason
            )

        return await self.wait_status(kind, name, check, f"generation {generation}, Ready reason {reason}")

    async def wait_gone(self, kind: str, name: str) -> None:
        async def probe() -> bool:
            return await self.resource_status(kind, name) is None

        await eventually(probe, what=f"{kind} {name} gone from the routing table")

    async def table_version(self) -> int:
        version: int = (await self.status_view())["routingTableVersion"]
        return version

    async def wait_recompiled(self, after: int) -> None:
        async def probe() -> bool:
            return await self.table_version() > after

        await eventually(probe, what=f"a routing table newer than v{after}")

    async def webhook(self, endpoint: str, payload: bytes = b"{}") -> Answer:
        return await post(f"{self.url}/webhooks/{endpoint}", payload, {"Content-Type": "application/json"})

    async def publish(self, event: bytes) -> Answer:
        return await post(f"{self.url}/events", event, {"Content-Type": "application/cloudevents+json"})


StartOperator = Callable[..., Awaitable[RunningOperator]]


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """kmock's own fixture builds our apiserver flavour of its emulator."""
    return {"cls": Apiserver}


@pytest.fixture
def kube(kmock: kmock_lib.KubernetesEmulator) -> Kubectl:
    install_crds(kmock)
    return Kubectl(kmock)


@pytest.fixture
def kubeconfig(kmock: kmock_lib.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for kmock; the operator finds it the way it does outside a pod ($KUBECONFIG)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
        "contexts: [{name: kmock, context: {cluster: kmock, user: tester}}]\n"
        f"clusters: [{{name: kmock, cluster: {{server: '{kmock.url}'}}}}]\n"
        "users: [{name: tester, user: {token: test-token}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
async def start_operator(
    kube: Kubectl, kubeconfig: Path, kmock: kmock_lib.KubernetesEmulator
) -> AsyncIterator[StartOperator]:
    """Start operators (``openconnector run`` flags may be added); each is stopped at the end."""
    running: list[RunningOperator] = []

    async def start(*flags: str, status_interval: float = 0.2) -> RunningOperator:
        args = build_parser().parse_args(
            ["run", "--host", "127.0.0.1", "--port", "0", "--health-port", "0", "--drain-seconds", "2",
             "--status-interval", str(status_interval), *flags]
        )  # fmt: skip
        cluster = await start_cluster_gateway(args)
        stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_kopf(cluster.core, args, stop_flag=stop_flag, ready_flag=ready_flag))
        operator = RunningOperator(cluster, task, stop_flag)
        running.append(operator)

        async def kopf_up() -> bool:
            if task.done():
                task.result()  # raises what stopped Kopf
            return ready_flag.is_set() and watching(kmock)

        await eventually(kopf_up, within=STARTUP_SECONDS, what="Kopf watching every resource")
        return operator

    yield start
    for operator in reversed(running):
        await operator.stop()
    # 404s are the operator's status writer racing a delete (it ignores them); anything else is a failure.
    failures = [error for error in kmock.errors if not isinstance(error, kmock_lib.KubernetesNotFoundError)]
    assert failures == [], "kmock failed to serve some of the operator's requests"
