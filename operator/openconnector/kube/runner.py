"""``openconnector run``: Kopf and the aiohttp gateway in one process and one event loop.

Order matters (see docs/architecture.md): the gateway and our long-lived tasks start before Kopf,
because Kopf cancels tasks created after it started when it shuts down; Kopf owns SIGINT/SIGTERM and
returns when one arrives; then deliveries drain and the last status is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway
from openconnector.kube.client import KubeClient
from openconnector.kube.operator import (
    OperatorCore,
    StatusPolicy,
    build_registry,
    configure_settings,
    login_info,
)
from openconnector.reconciler import Reconciler
from openconnector.resources import ResourceStore
from openconnector.standalone import settings_from_args

log = logging.getLogger(__name__)


@dataclass
class ClusterGateway:
    """A running operator + gateway (also used in-process by the e2e and benchmark harnesses)."""

    core: OperatorCore
    runner: web.AppRunner
    port: int
    tasks: tuple[asyncio.Task[Any], ...]

    @property
    def gateway(self) -> Gateway:
        return self.core.gateway

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runner.cleanup()
        dropped = await self.gateway.close()
        if dropped:
            log.error("shutdown dropped %d queued deliveries", dropped)
        with contextlib.suppress(Exception):
            await self.core.flush_status()
        if self.core.client is not None:
            await self.core.client.close()


async def start_cluster_gateway(args: argparse.Namespace) -> ClusterGateway:
    """Everything but Kopf: log in, LIST, build the first table, serve, write status."""
    settings = settings_from_args(args)
    gateway = Gateway(settings)
    await gateway.start()
    reconciler = Reconciler(ResourceStore(), gateway.install)
    core = OperatorCore(
        gateway, reconciler, namespaces=args.namespace, status_policy=StatusPolicy(args.status_interval)
    )
    kopf_settings = kopf.OperatorSettings()
    info = login_info(settings=kopf_settings, logger=log)
    if info is None:
        raise SystemExit("no Kubernetes credentials: not in a pod and no usable $KUBECONFIG")
    core.client = KubeClient(info)
    await core.initial_sync()
    runner = web.AppRunner(build_app(gateway), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = int(runner.addresses[0][1]) if runner.addresses else settings.port
    tasks = (
        asyncio.create_task(reconciler.run(), name="reconciler"),
        asyncio.create_task(core.status_loop(), name="status-writer"),
    )
    return ClusterGateway(core, runner, port, tasks)


async def run_kopf(
    core: OperatorCore, args: argparse.Namespace, *, stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:  # fmt: skip
    settings = kopf.OperatorSettings()
    configure_settings(settings)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    await kopf.operator(
        registry=build_registry(core),
        settings=settings,
        standalone=not args.peering,
        peering_name=args.peering or None,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


async def _run(args: argparse.Namespace) -> int:
    cluster = await start_cluster_gateway(args)
    log.info(
        "gateway on port %d; operator watching %s",
        cluster.port,
        ", ".join(args.namespace) or "all namespaces",
    )
    try:
        await run_kopf(cluster.core, args)
    finally:
        log.info("shutting down: draining deliveries for up to %.0f s", args.drain_seconds)
        await cluster.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
