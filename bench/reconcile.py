"""reconcile: apply → route live for 1,000 EventSubscriptions on a real kube-apiserver, and the status
PATCHes the operator sends under a steady 500 events/s.

Set-up: the loopback test bed of tests/e2e/testbed.py (etcd + kube-apiserver; attached when
``OPENCONNECTOR_TESTBED_STATE`` names a running one, else started here and stopped afterwards), the CRDs
from crds/, and the operator + gateway in this process exactly as ``openconnector run`` wires them
(``start_cluster_gateway`` + Kopf), watching one fresh namespace per repetition.

* apply → live: a separate process (bench.kubeapply) server-side-applies N subscriptions, 8 at a time,
  recording when each request left and when it was acknowledged; a listener on the reconciler records
  when each subscription first appears in an installed routing table (same CLOCK_MONOTONIC).
  Per-resource latency = live − sent. Counts: status PATCHes and Kubernetes Events the operator sent.
* steady load: 500 events/s (open loop, one event type per subscription, so every subscription's
  counters move) to /events for a bounded window; status PATCHes/s against the policy's bound
  (N / status interval).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import sys
import time
import uuid
from typing import Any

from bench.context import Context, envelope, goal
from bench.harness import REPO, SinkClient, run_json_process, start_sink, stop_all
from bench.ingest import measure
from bench.loadgen import LoadSpec
from bench.stats import latency_summary, spread
from openconnector.routing.table import RoutingTable

NAME = "reconcile"
GOAL_LIVE_S = 1.0
STATUS_INTERVAL_S = 5.0
LIVE_TIMEOUT_S = 120.0
KOPF_STOP_S = 15.0

log = logging.getLogger(__name__)


def _testbed() -> Any:
    """tests/e2e/testbed.py, imported from the repository (it is not part of the installed package)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.e2e import testbed

    return testbed


async def _cluster(testbed: Any) -> Any:
    """A test bed with our CRDs: the running one ``OPENCONNECTOR_TESTBED_STATE`` names, else a new one
    (about 3 s), so that every round starts from an empty etcd."""
    attached = testbed.load_running() if os.environ.get(testbed.STATE_ENV) else None
    cluster: Any = attached or await asyncio.to_thread(testbed.start_cluster, testbed.ensure_tools())
    crds = [arg for path in sorted((REPO / "crds").glob("*.yaml")) for arg in ("-f", path)]
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", *crds, check=True)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all", check=True)
    except BaseException:
        cluster.stop()
        raise
    return cluster


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    testbed = _testbed()
    sink_proc = await start_sink(ctx.log_dir)
    rounds = []
    version = ""
    try:
        for rep in range(ctx.config.reconcile_repeats):
            cluster = await _cluster(testbed)
            try:
                version = cluster.kubectl("version", "-o", "json").stdout
                rounds.append(await _round(ctx, cluster, SinkClient(sink_proc), sink_proc.url, rep))
            finally:
                cluster.stop()  # a no-op for a test bed we only attached to
    finally:
        stop_all([sink_proc])
    return envelope(NAME, ctx, started, rounds=rounds, **_summarise(ctx, rounds), apiserver_version=version)


class LiveRecorder:
    """Reconciler listener: when each subscription first shows up in an installed routing table."""

    def __init__(self, namespace: str, reconciler: Any) -> None:
        self.namespace = namespace
        self.reconciler = reconciler
        self.live_ns: dict[str, int] = {}
        self.compiles = 0
        self.compile_s: list[float] = []

    def __call__(self, table: RoutingTable) -> None:
        now = time.monotonic_ns()
        self.compiles += 1
        self.compile_s.append(self.reconciler.last_compile_seconds)
        for route in table.subscriptions():
            if route.key.namespace == self.namespace and route.key.name not in self.live_ns:
                self.live_ns[route.key.name] = now

    async def wait(self, names: set[str], within: float) -> bool:
        deadline = time.monotonic() + within
        while not names <= self.live_ns.keys():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def count_watch_events(core: Any) -> dict[str, int]:
    """Count the watch events Kopf hands the operator, by type (wraps the instance's method)."""
    counts: dict[str, int] = {}
    on_object = core.on_object

    def counted(event_type: str | None, body: Any) -> None:
        counts[str(event_type)] = counts.get(str(event_type), 0) + 1
        on_object(event_type, body)

    core.on_object = counted
    return counts


def time_patches(client: Any) -> list[float]:
    """Time every status PATCH of ``client`` (wraps the instance's method; the class is untouched)."""
    durations: list[float] = []
    patch = client.patch_status

    async def timed(*args: Any, **kwargs: Any) -> None:
        begin = time.perf_counter()
        try:
            await patch(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - begin)

    client.patch_status = timed
    return durations


def _args(namespace: str) -> argparse.Namespace:
    """The arguments of ``openconnector run`` (parsed by its own parser, so they never drift)."""
    from openconnector.cli import build_parser

    return build_parser().parse_args(
        ["run", "--namespace", namespace, "--host", "127.0.0.1", "--port", "0", "--allow-unknown-types",
         "--drain-seconds", "2", "--status-interval", str(STATUS_INTERVAL_S), "--health-port", "0"]
    )  # fmt: skip


async def _apply(
    cluster: Any, namespace: str, count: int, sink_url: str, prefix: str = "sub"
) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.kubeapply", "--server", cluster.server, "--cafile", str(cluster.ca_file),
        "--namespace", namespace, "--count", str(count), "--sink", sink_url, "--prefix", prefix,
    ]  # fmt: skip
    return await run_json_process(argv, 300, {"BENCH_KUBE_TOKEN": cluster.admin_token})


async def _settled(counter: Any, quiet_s: float = 1.0, within: float = 30.0) -> None:
    """Wait until ``counter()`` stops moving for ``quiet_s`` (for at most ``within`` seconds)."""
    deadline = time.monotonic() + within
    last, since = counter(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = counter()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


async def _round(ctx: Context, cluster: Any, sink: SinkClient, sink_url: str, rep: int) -> dict[str, Any]:
    from openconnector.kube.runner import run_kopf, start_cluster_gateway

    cfg = ctx.config
    namespace = f"bench-{rep}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace, check=True)
    previous_kubeconfig = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    for noisy in ("kopf", "openconnector", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    gateway = await start_cluster_gateway(_args(namespace))
    recorder = LiveRecorder(namespace, gateway.core.reconciler)
    watch_events = count_watch_events(gateway.core)
    gateway.core.reconciler.add_listener(recorder)
    kopf_task = asyncio.create_task(
        run_kopf(gateway.core, _args(namespace), stop_flag=stop_flag, ready_flag=ready_flag)
    )
    try:
        await asyncio.wait_for(ready_flag.wait(), 60)
        # A probe proves the watch stream is up before the clock starts (ready_flag fires earlier).
        probe = await _apply(cluster, namespace, 1, sink_url, prefix="probe")
        probe_name = next(iter(probe["acked_ns"]), None)
        if probe_name is None or not await recorder.wait({probe_name}, 60):
            raise RuntimeError(f"the operator never routed the probe subscription: {probe['failures']}")
        client = gateway.core.client
        assert client is not None
        patch_rtts = time_patches(client)
        await _settled(lambda: client.patches)
        patches_before, events_before, compiles_before = (
            client.patches,
            client.events_posted,
            recorder.compiles,
        )
        count = cfg.reconcile_resources
        watch_events.clear()
        compiles_s_before = len(recorder.compile_s)
        applied = await _apply(cluster, namespace, count, sink_url)
        names = set(applied["acked_ns"])
        all_live = await recorder.wait(names, LIVE_TIMEOUT_S)
        live_done_ns = time.monotonic_ns()
        await _settled(lambda: client.patches)
        apply_patches = client.patches - patches_before
        latencies_ms = [
            (recorder.live_ns[n] - applied["sent_ns"][n]) / 1e6 for n in names if n in recorder.live_ns
        ]
        after_ack_ms = [
            (recorder.live_ns[n] - applied["acked_ns"][n]) / 1e6 for n in names if n in recorder.live_ns
        ]
        last_ack = max(applied["acked_ns"].values(), default=applied["finished_ns"])
        apply_result = {
            "resources": count,
            "acknowledged": len(names),
            "failures": len(applied["failures"]),
            "failure_sample": list(applied["failures"].values())[:3],
            "live": sum(1 for n in names if n in recorder.live_ns),
            "all_live": all_live,
            "apply_s": (applied["finished_ns"] - applied["started_ns"]) / 1e9,
            "first_sent_to_all_live_s": (max(recorder.live_ns[n] for n in names if n in recorder.live_ns)
                                         - applied["started_ns"]) / 1e9 if names else None,
            "last_ack_to_all_live_s": (live_done_ns - last_ack) / 1e9 if all_live else None,
            "sent_to_live_ms": latency_summary(latencies_ms),
            "sent_to_live_ms_values": sorted(round(v, 2) for v in latencies_ms),
            "ack_to_live_ms": latency_summary(after_ack_ms),
            "compiles": recorder.compiles - compiles_before,
            "compile_s_total": sum(recorder.compile_s[compiles_s_before:]),
            "compile_s_max": max(recorder.compile_s[compiles_s_before:], default=0.0),
            "watch_events": dict(watch_events),
            "status_patches": apply_patches,
            "kubernetes_events": client.events_posted - events_before,
        }  # fmt: skip
        ctx.say(
            f"reconcile round {rep + 1}: {apply_result['live']}/{count} applied subscriptions live; "
            "apply→live p50/p99/max "
            + " / ".join(f"{apply_result['sent_to_live_ms'][q]:.0f}" for q in ("p50", "p99", "max"))
            + " ms "
            f"(the apply itself took {apply_result['apply_s']:.1f} s); {apply_result['compiles']} compiles "
            f"taking {apply_result['compile_s_total']:.2f} s "
            f"(longest {apply_result['compile_s_max'] * 1000:.0f} ms); "
            f"{apply_patches} status PATCHes for {count} new resources; watch events {dict(watch_events)}"
        )
        patch_rtts.clear()
        steady = await _steady(ctx, gateway, sink, count, namespace)
        steady["patch_rtt_ms"] = sum(patch_rtts) / len(patch_rtts) * 1000 if patch_rtts else None
        ctx.say(
            f"reconcile round {rep + 1}: under {steady['rate']:,.0f} events/s for "
            f"{steady['duration_s']:.0f} s: {steady['patches_per_s']:.1f} status PATCHes/s vs the policy's "
            f"steady rate {steady['bound_per_s']:.0f}/s ({count} subscriptions / {STATUS_INTERVAL_S:g} s), "
            f"one PATCH taking {steady['patch_rtt_ms'] or 0:.1f} ms; "
            f"{steady['delivered']}/{steady['accepted']} events delivered"
        )
        return {"rep": rep, "namespace": namespace, "apply": apply_result, "steady": steady}
    finally:
        stop_flag.set()
        await asyncio.wait({kopf_task}, timeout=KOPF_STOP_S)
        if not kopf_task.done():
            kopf_task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await kopf_task
        await gateway.stop()
        if previous_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous_kubeconfig
        # Nothing finalizes a namespace here (no controller-manager): delete the objects themselves.
        cluster.kubectl("delete", "eventsubscriptions", "--all", "-n", namespace, "--wait=false")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


async def _steady(ctx: Context, gateway: Any, sink: SinkClient, count: int, namespace: str) -> dict[str, Any]:
    cfg = ctx.config
    client = gateway.core.client
    # The namespace's own /events: the types are defined by no Event (--allow-unknown-types).
    url = f"http://127.0.0.1:{gateway.port}/namespaces/{namespace}/events"
    spec = LoadSpec(
        url, "structured", 1024, 256, cfg.reconcile_steady_s, rate=cfg.reconcile_rate,
        max_requests=int(cfg.reconcile_rate * cfg.reconcile_steady_s), types=count,
    )  # fmt: skip
    patches_before = client.patches
    begin = time.monotonic()
    result = await measure(ctx, sink, spec, fanout=1, drain_s=20)
    # The window is the load's: PATCHes sent while deliveries drained afterwards are not counted.
    window_patches = client.patches - patches_before
    elapsed = time.monotonic() - begin
    return {
        "rate": cfg.reconcile_rate,
        "duration_s": result["duration_s"],
        "accepted": result["accepted"],
        "delivered": result["delivered_total"],
        "errors": result["errors"],
        "status_patches": window_patches,
        "patches_per_s": window_patches / elapsed,
        "bound_per_s": count / STATUS_INTERVAL_S,
        "e2e_latency_ms": {k: v / 1000 for k, v in result["e2e_latency_us"].items() if k != "n"},
    }


def _summarise(ctx: Context, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    p99 = spread([r["apply"]["sent_to_live_ms"]["p99"] / 1000 for r in rounds])
    worst = spread([r["apply"]["sent_to_live_ms"]["max"] / 1000 for r in rounds])
    patches = spread([r["steady"]["patches_per_s"] for r in rounds])
    count = ctx.config.reconcile_resources
    summary = {
        "resources": count,
        "sent_to_live_p50_s": spread([r["apply"]["sent_to_live_ms"]["p50"] / 1000 for r in rounds]),
        "sent_to_live_p99_s": p99,
        "sent_to_live_max_s": worst,
        "last_ack_to_all_live_s": spread(
            [
                r["apply"]["last_ack_to_all_live_s"]
                for r in rounds
                if r["apply"]["last_ack_to_all_live_s"] is not None
            ]
        ),
        "apply_s": spread([r["apply"]["apply_s"] for r in rounds]),
        "apply_status_patches": spread([r["apply"]["status_patches"] for r in rounds]),
        "steady_patches_per_s": patches,
        "steady_bound_per_s": count / STATUS_INTERVAL_S,
    }
    measured = p99["median"]
    goals = [
        goal(
            f"apply → route live, {count:,} EventSubscriptions on a real apiserver (p99 per resource)",
            f"< {GOAL_LIVE_S:g} s",
            measured,
            met=None if measured is None else measured < GOAL_LIVE_S,
            unit="s",
            note=f"worst resource {worst['median']:.2f} s" if worst["median"] is not None else "",
        )
    ]
    return {"summary": summary, "goals": goals}
