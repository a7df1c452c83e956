"""``openconnector run``: Kopf and the aiohttp gateway in one process.

The gateway (HTTP server, reconciler, delivery, status writer) owns the main event loop and the signals;
Kopf runs in a thread with its own loop (Kopf's embedding guide). When Kopf stops it cancels every task
its loop created after it started; in a shared loop that would be the gateway's delivery workers and
in-flight webhook requests, cut off before they could drain. Kopf's handlers hand each watch event to
the main loop. On SIGINT/SIGTERM: readiness turns off, Kopf stops, then ``runtime.Runtime.stop`` drains
the deliveries and the last status is written (the shutdown sequence of both modes lives there).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import kopf

from openconnector.kube.client import KubeClient, pod_name, pod_namespace
from openconnector.kube.lease import ReplicaLeases
from openconnector.kube.operator import (
    OperatorCore,
    build_registry,
    configure_settings,
    login_info,
)
from openconnector.kube.status_writer import StatusPolicy
from openconnector.messages.access import KubernetesAuthorizer
from openconnector.runtime import RunningGateway, Runtime, run_main, settings_from_args, settle_gc

log = logging.getLogger(__name__)


class ClusterGateway(RunningGateway):
    """A running operator + gateway (also used in-process by the e2e and benchmark harnesses)."""

    def __init__(self, core: OperatorCore, runtime: Runtime, leases: ReplicaLeases | None = None) -> None:
        super().__init__(runtime)
        self.core = core
        self.leases = leases


async def start_cluster_gateway(args: argparse.Namespace) -> ClusterGateway:
    """Everything but Kopf: log in, LIST, build the first table, serve, write status."""
    settings = settings_from_args(args)
    runtime = await Runtime.create(settings)
    pod = getattr(args, "pod_name", None) or pod_name()
    core = OperatorCore(
        runtime.gateway,
        runtime.reconciler,
        namespaces=args.namespace,
        status_policy=StatusPolicy(args.status_interval),
        pod=pod,
    )
    kopf_settings = kopf.OperatorSettings()

    def login() -> kopf.ConnectionInfo | None:
        return login_info(settings=kopf_settings, logger=log)

    info = login()
    if info is None:
        raise SystemExit(
            "no Kubernetes credentials: not in a pod, and $KUBECONFIG (or ~/.kube/config) is not usable"
        )
    client = core.client = KubeClient(info, login=login, pod=pod)
    leases = ReplicaLeases(
        client, namespace=getattr(args, "pod_namespace", None) or pod_namespace(), pod=pod,
        duration=getattr(args, "lease_duration", 15.0),
    )  # fmt: skip
    await _beat_once(leases)  # before the first shard is written
    core.writer.fresh = leases.fresh
    # The message API: Kubernetes decides who may read (get) and resend/replay (update) a subscription.
    runtime.gateway.authorizer = KubernetesAuthorizer(client.create)
    await core.initial_sync()
    await runtime.serve()  # the same servers as standalone mode
    runtime.spawn(core.writer.loop(), "status-writer")
    runtime.spawn(core.resync_loop(), "resync")
    # The heartbeat is not one of the runtime's tasks: it goes on through the drain, so a drain longer
    # than the lease duration cannot get this replica declared gone (and its shard folded) before its last
    # status write.
    heartbeat = asyncio.create_task(lease_loop(core, leases), name=LEASE_TASK)

    async def final_status() -> None:
        # The counts of the last interval; the apiserver may be gone already, which changes nothing.
        with contextlib.suppress(Exception):
            await core.flush_status(final=True)

    async def release_lease() -> None:
        await _cancel([heartbeat])
        # After the last write: the holder folds this replica's shard into retired.
        with contextlib.suppress(Exception):
            await leases.release()

    runtime.after_drain(final_status)
    runtime.after_drain(release_lease)
    runtime.after_drain(client.close)
    return ClusterGateway(core, runtime, leases)


LEASE_TASK = "status-leases"


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _beat_once(leases: ReplicaLeases) -> bool:
    try:
        await leases.heartbeat()
    except Exception as error:  # the apiserver may be away: the loop retries
        log.warning("status Lease %s not renewed: %s", leases.replica_lease(leases.pod), error)
        return False
    return True


async def lease_loop(core: OperatorCore, leases: ReplicaLeases) -> None:
    """Renew this replica's heartbeat; while holding the status Lease, collect departed shards."""
    interval = max(0.2, leases.duration / 3)
    while True:
        await asyncio.sleep(interval)
        if not await _beat_once(leases) or leases.unavailable:
            continue
        try:
            if await leases.hold():
                for departed in await core.writer.collect(leases.alive):
                    await leases.forget(departed)
        except Exception as error:  # next round tries again
            log.warning("status shard clean-up failed: %s", error)


class _KopfThread:
    """Kopf in a thread with its own event loop; the outcome is reported to the main loop."""

    def __init__(self, operator: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._operator = operator
        self._main_loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self._main_loop.create_future()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="kopf", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask Kopf to stop (thread-safe, idempotent; also before its loop runs)."""
        with self._lock:
            self._stopping = True
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)

    async def _operate(self) -> None:
        # Kopf's stop flag lives in Kopf's loop: a threading.Event would park one of that loop's executor
        # threads in wait(), and asyncio.run() could then never finish if Kopf exited for another reason.
        stop = asyncio.Event()
        with self._lock:
            self._loop, self._stop = asyncio.get_running_loop(), stop
            if self._stopping:
                stop.set()
        await self._operator(stop)

    def _main(self) -> None:
        error: BaseException | None = None
        try:
            asyncio.run(self._operate())
        except BaseException as exc:  # handed to the main loop and raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # the main loop is closed: nobody is waiting any more
            self._main_loop.call_soon_threadsafe(self._report, error)

    def _report(self, error: BaseException | None) -> None:
        if self.finished.done():
            return
        if error is None:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(error)


async def run_kopf(
    core: OperatorCore, args: argparse.Namespace, *, stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:  # fmt: skip
    """Run Kopf (in its own thread) until ``stop_flag`` is set or this coroutine is cancelled.

    ``ready_flag`` is set once Kopf's startup handlers ran. A failure of Kopf is raised here.
    """
    settings = kopf.OperatorSettings()
    configure_settings(settings)
    if getattr(args, "no_kopf_scanning", False):
        settings.scanning.disabled = True  # no CRD/namespace discovery: no cluster-scoped read rights
    registry = build_registry(core, loop=asyncio.get_running_loop())
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    kopf_ready: concurrent.futures.Future[None] = concurrent.futures.Future()
    if ready_flag is not None:
        asyncio.wrap_future(kopf_ready).add_done_callback(lambda _: ready_flag.set())

    async def operator(stop: asyncio.Event) -> None:
        await kopf.operator(
            registry=registry,
            settings=settings,
            # No peering: every replica must watch everything to build its own routing table (peering
            # would pause the watches of all but one replica and freeze their tables).
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=liveness,
            stop_flag=stop,
            ready_flag=kopf_ready,
        )

    kopf_thread = _KopfThread(operator)
    kopf_thread.start()
    waiting: set[asyncio.Future[Any]] = {kopf_thread.finished}
    if stop_flag is not None:
        waiting.add(asyncio.ensure_future(stop_flag.wait()))
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        kopf_thread.stop()
        for waiter in waiting - {kopf_thread.finished}:
            waiter.cancel()
        await asyncio.shield(kopf_thread.finished)


async def _run(args: argparse.Namespace) -> int:
    cluster = await start_cluster_gateway(args)
    # What start-up made goes out of the cyclic GC's reach, so that a full collection no longer walks it.
    # Measured while 1,000 subscriptions were applied: the longest compiles (a full collection landing in
    # them) fell from 250-300 ms to under 100 ms, and every route waiting to go live waited for them.
    settle_gc()
    log.info(
        "gateway on port %d; operator watching %s",
        cluster.port,
        ", ".join(args.namespace) or "all namespaces",
    )
    stop = cluster.runtime.stop_on_signals()
    try:
        await run_kopf(cluster.core, args, stop_flag=stop)
    finally:
        await cluster.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    return run_main(_run(args), args)
