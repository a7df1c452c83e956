"""The running process, in both modes: start-up and shutdown composed once.

``openconnector serve`` (``standalone.py``) and ``openconnector run`` (``kube/runner.py``) differ only in
where specs come from and what runs beside the gateway (a directory watcher; Kopf, the status writer and
the resync). Both build a :class:`Runtime` here: the gateway and its delivery bus, the reconciler, the
HTTP servers and the background tasks; and both stop it with :meth:`Runtime.stop`, in this order:

1. not ready: ``/readyz`` answers 503 (``draining``), so load balancers stop sending new traffic (a
   signal caught by :meth:`Runtime.stop_on_signals` does this at once);
2. the background tasks stop (no new routing table, no more watching);
3. the servers stop accepting and let open requests finish (bounded by the runner's shutdown timeout);
4. deliveries drain up to ``--drain-seconds``; what is left is counted as dropped;
5. the mode's own finishers run (in a cluster: the final status write, closing the API client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.gateway.limits import egress_from_args, limits_from_args
from openconnector.gateway.metrics import build_metrics_app
from openconnector.gateway.server import GatewayRunner, install_loop_error_log
from openconnector.reconciler import Reconciler
from openconnector.resources import ResourceStore

if TYPE_CHECKING:
    from openconnector.delivery.jetstream import JetStreamSettings

log = logging.getLogger(__name__)

Finisher = Callable[[], Awaitable[None]]
T = TypeVar("T")

#: ``--event-loop`` choices; the first is the default (env ``OPENCONNECTOR_EVENT_LOOP``).
EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop ``serve`` and ``run`` run on: ``uvloop`` (libuv; measured to cut the event loop's and
    the sockets' share of each delivery) or ``asyncio``'s own selector loop."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"event loop: one of {', '.join(EVENT_LOOPS)}, got {name!r}")


# The youngest generation is collected after this many net allocations instead of CPython's 700. A
# delivery allocates a few dozen tracked objects that live until it is settled, so at 700 a young
# collection came every ~15 deliveries and promoted whatever was in flight to older generations, whose
# collections then walked it again: 3.4-4.3% of the gateway's CPU under the 1 KB closed loop went to the
# collector. At 5000 it was about a third of that; a young collection of 5000 objects takes well under a
# millisecond (the added-latency benchmark's p99 at 1,000 events/s keeps that honest).
YOUNG_GC_THRESHOLD = 5000


def settle_gc() -> None:
    """Once start-up is done: what it made (modules, the first routing table, Kopf and the API client in a
    cluster) lives as long as the process, so it goes out of the cyclic GC's reach (``gc.freeze``), and
    the youngest generation is collected less often (``YOUNG_GC_THRESHOLD``)."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, oldest)


def run_main(main: Coroutine[Any, Any, T], args: argparse.Namespace) -> T:
    """``asyncio.run(main)`` on the loop ``--event-loop`` chose (uvloop without the flag)."""
    factory = event_loop_factory(getattr(args, "event_loop", EVENT_LOOPS[0]))
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    """The gateway's settings from the flags ``serve`` and ``run`` share."""
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
        pace_backlog=args.jetstream_pace_backlog,
        pace_wait=args.jetstream_pace_wait,
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


class Runtime:
    """A gateway, its reconciler, its servers and background tasks; started and stopped as one.

    Built in two steps, because each mode has work between them: :meth:`create` starts the gateway (and
    its bus) and an empty store; the mode fills the store and builds the first table; :meth:`serve` then
    opens the ports (so no request ever sees an empty gateway) and runs the reconciler.
    """

    def __init__(self, gateway: Gateway, reconciler: Reconciler) -> None:
        self.gateway = gateway
        self.reconciler = reconciler
        self.runners: list[web.AppRunner] = []
        self.port = gateway.settings.port
        self._tasks: list[asyncio.Task[Any]] = []
        self._finishers: list[Finisher] = []
        self._stopping = False

    @classmethod
    async def create(cls, settings: GatewaySettings) -> Runtime:
        gateway = Gateway(settings)
        await gateway.start()
        return cls(gateway, Reconciler(ResourceStore(), gateway.install, egress=settings.egress))

    @property
    def url(self) -> str:
        return f"http://{self.gateway.settings.host}:{self.port}"

    async def serve(self) -> None:
        """Open the ports and run the reconciler (call once the first table is built)."""
        self.runners, self.port = await start_servers(self.gateway)
        self.spawn(self.reconciler.run(), "reconciler")

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """A background task that lives until :meth:`stop`."""
        self._tasks.append(asyncio.create_task(work, name=name))

    def after_drain(self, finisher: Finisher) -> None:
        """Run ``finisher`` at the end of :meth:`stop`, after the drain (in the order registered)."""
        self._finishers.append(finisher)

    def stop_on_signals(self) -> asyncio.Event:
        """An event set by SIGINT or SIGTERM; the signal also turns readiness off at once, before whatever
        the mode stops first (Kopf takes a moment), so load balancers stop sending while that happens."""
        stop = asyncio.Event()

        def on_signal() -> None:
            self.gateway.draining = True
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return stop

    async def stop(self) -> None:
        """Not ready, stop the tasks, stop accepting, drain, finish (see the module docstring); idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self.gateway.draining = True
        log.info("shutting down: draining deliveries for up to %.0f s", self.gateway.settings.drain_seconds)
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
        for finisher in self._finishers:
            try:
                await finisher()
            except Exception:  # one failing finisher must not skip the others
                log.exception("shutdown step failed")


class RunningGateway:
    """What both modes hand their callers (the CLI, tests, benchmarks): a started :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def gateway(self) -> Gateway:
        return self.runtime.gateway

    @property
    def reconciler(self) -> Reconciler:
        return self.runtime.reconciler

    @property
    def port(self) -> int:
        return self.runtime.port

    @property
    def url(self) -> str:
        return self.runtime.url

    async def stop(self) -> None:
        await self.runtime.stop()
