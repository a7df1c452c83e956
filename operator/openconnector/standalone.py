"""``openconnector serve --manifests DIR``: the gateway without a cluster.

The same reconciler and gateway as in a cluster; only the spec source differs: YAML files in a
directory, watched so that an edit takes effect without a restart. Secrets come from ``kind: Secret``
manifests in the directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from watchfiles import awatch

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.gateway.limits import egress_from_args, limits_from_args
from openconnector.gateway.metrics import build_metrics_app
from openconnector.gateway.server import GatewayRunner, install_loop_error_log
from openconnector.manifests import load_manifests
from openconnector.reconciler import Reconciler
from openconnector.resources import ResourceStore

if TYPE_CHECKING:
    from openconnector.delivery.jetstream import JetStreamSettings

log = logging.getLogger(__name__)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    token = None
    if getattr(args, "events_token_file", None):
        token = Path(args.events_token_file).read_text(encoding="utf-8").strip()
    bus = getattr(args, "bus", "memory")
    return GatewaySettings(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        allow_unknown_types=args.allow_unknown_types,
        events_token=token,
        trusted_proxies=tuple(args.trusted_proxy),
        drain_seconds=args.drain_seconds,
        limits=limits_from_args(args),
        egress=egress_from_args(args),
        bus=bus,
        jetstream=jetstream_settings_from_args(args) if bus == "jetstream" else None,
        api_token=api_token_from_args(args),
        message_max=getattr(args, "message_max", 10_000),
        message_max_age=getattr(args, "message_max_age", 7 * 24 * 3600.0),
    )


def api_token_from_args(args: argparse.Namespace) -> str | None:
    """The message API's bearer token: ``--api-token-file``, else env ``OPENCONNECTOR_API_TOKEN``."""
    path = getattr(args, "api_token_file", None)
    if path:
        return Path(path).read_text(encoding="utf-8").strip() or None
    return os.environ.get("OPENCONNECTOR_API_TOKEN") or None


def jetstream_settings_from_args(args: argparse.Namespace) -> JetStreamSettings:
    """The ``--nats-*`` and ``--jetstream-*`` flags (see ``openconnector serve --help``)."""
    from openconnector.delivery.jetstream import JetStreamSettings

    token = os.environ.get("OPENCONNECTOR_NATS_TOKEN") or None
    if args.nats_token_file:
        token = Path(args.nats_token_file).read_text(encoding="utf-8").strip()
    return JetStreamSettings(
        servers=tuple(url.strip() for url in args.nats_url.split(",") if url.strip()),
        stream=args.jetstream_stream,
        replicas=args.jetstream_replicas,
        storage=args.jetstream_storage,
        max_bytes=args.jetstream_max_bytes,
        max_age=args.jetstream_max_age,
        duplicate_window=args.jetstream_duplicate_window,
        creds_file=args.nats_creds,
        token=token,
        tls_ca=args.nats_tls_ca,
        tls_cert=args.nats_tls_cert,
        tls_key=args.nats_tls_key,
    )


async def start_servers(gateway: Gateway) -> tuple[list[web.AppRunner], int]:
    """The gateway's HTTP server (and a separate metrics server with --metrics-port); returns the runners
    and the gateway's bound port (useful with port 0)."""
    settings = gateway.settings
    # shutdown_timeout bounds how long open connections may delay shutdown (inside the pod's grace period).
    install_loop_error_log(asyncio.get_running_loop())
    runner = GatewayRunner(build_app(gateway, with_metrics=not settings.metrics_port), handle_signals=False,
                           access_log=None, shutdown_timeout=5.0, limits=settings.limits)  # fmt: skip
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    runners: list[web.AppRunner] = [runner]
    if settings.metrics_port:
        metrics = web.AppRunner(
            build_metrics_app(gateway.metrics), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await metrics.setup()
        await web.TCPSite(metrics, settings.host, settings.metrics_port).start()
        runners.append(metrics)
    port = runner.addresses[0][1] if runner.addresses else settings.port
    return runners, int(port)


def load_into(store: ResourceStore, directories: Sequence[Path]) -> bool:
    """Make the store hold what the directories hold; returns whether anything changed."""
    loaded = load_manifests(directories)
    for problem in loaded.problems:
        log.warning("%s", problem)
    return store.replace_all([*loaded.resources, *loaded.secrets])


@dataclass
class StandaloneGateway:
    """A running standalone gateway (also used by tests and benchmarks)."""

    gateway: Gateway
    reconciler: Reconciler
    runners: list[web.AppRunner]
    port: int
    directories: tuple[Path, ...]
    _tasks: tuple[asyncio.Task[None], ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.gateway.settings.host}:{self.port}"

    def reload(self) -> bool:
        """Re-read the directories; returns whether anything changed."""
        changed = load_into(self.reconciler.store, self.directories)
        if changed:
            self.reconciler.notify()
        return changed

    async def _watch(self, started: asyncio.Event) -> None:
        # Small debounce: an editor's save is several events; a second is the promise to the user.
        # yield_on_timeout gives a first (empty) yield once the watch is live: a rescan then catches
        # edits made between the first read and the watch starting.
        async for changes in awatch(
            *self.directories, debounce=100, step=20, rust_timeout=500, yield_on_timeout=True, recursive=True
        ):
            if started.is_set() and not changes:
                continue
            started.set()
            try:
                self.reload()
            except Exception:  # a broken file must not stop the watcher
                log.exception("reloading manifests failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self.runners:
            await runner.cleanup()
        dropped = await self.gateway.close()
        if dropped:
            log.error("shutdown dropped %d queued deliveries", dropped)


async def start_standalone(
    directories: Sequence[Path], settings: GatewaySettings, *, watch: bool = True
) -> StandaloneGateway:
    gateway = Gateway(settings)
    await gateway.start()
    store = ResourceStore()
    reconciler = Reconciler(store, gateway.install, egress=settings.egress)
    # The first table is built before the port opens: no request ever sees an empty gateway.
    load_into(store, directories)
    reconciler.rebuild()
    runners, port = await start_servers(gateway)
    standalone = StandaloneGateway(gateway, reconciler, runners, port, tuple(directories))
    tasks = [asyncio.create_task(reconciler.run(), name="reconciler")]
    if watch:
        started = asyncio.Event()
        tasks.append(asyncio.create_task(standalone._watch(started), name="manifest-watcher"))
        await asyncio.wait_for(started.wait(), timeout=10)
    standalone._tasks = tuple(tasks)
    return standalone


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.manifests)
    standalone = await start_standalone([directory], settings_from_args(args))
    log.info(
        "serving %s on %s (webhooks at /webhooks/<endpoint>, events at /events)", directory, standalone.url
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining deliveries for up to %.0f s", args.drain_seconds)
    await standalone.stop()
    return 0


def serve(args: argparse.Namespace) -> int:
    if not Path(args.manifests).exists():
        log.error("%s: no such file or directory", args.manifests)
        return 2
    return asyncio.run(_serve(args))
