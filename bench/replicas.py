"""replicas: two replicas on a real kube-apiserver, and ingest with two replicas against one.

* apiserver (issue 13): two operator + gateway replicas in this process, each wired exactly as
  ``openconnector run`` (``start_cluster_gateway`` + Kopf in its own thread), with their own pod names.
  bench.kubeapply applies N EventSubscriptions; per replica, apply → route live (p99), then a steady
  open-loop load split over both replicas: status PATCHes/s of both together against the policy's bound
  for two replicas (2 × N / status interval), and the 409s among them.
* ingest: ``openconnector serve`` (memory bus) as one process and as two, behind the same closed-loop
  load (the connections split over the replicas); deliveries/s of two against one, ABBA-ordered.
  Both measured in the same run on the same machine: the figure is the ratio.

    python -m bench.run --only replicas      (renders its section of docs/benchmarks.md)
    python -m bench.replicas [--size tiny|full] [--skip-apiserver] [--skip-ingest]   (JSON only)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.context import FULL, TINY, Config, Context, envelope, goal
from bench.harness import Proc, SinkClient, start_gateway, start_sink, stop_all
from bench.loadgen import LoadSpec, run_load
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.reconcile import STATUS_INTERVAL_S, LiveRecorder, _apply, _cluster, _settled, _testbed
from bench.stats import latency_summary

NAME = "replicas"
GOAL_LIVE_S = 1.0
REPLICAS = ("bench-replica-a", "bench-replica-b")
LIVE_TIMEOUT_S = 120.0
KOPF_STOP_S = 15.0

log = logging.getLogger(__name__)


def _args(namespace: str, pod: str) -> argparse.Namespace:
    from openconnector.cli import build_parser

    return build_parser().parse_args(
        ["run", "--namespace", namespace, "--host", "127.0.0.1", "--port", "0", "--allow-unknown-types",
         "--drain-seconds", "2", "--status-interval", str(STATUS_INTERVAL_S), "--health-port", "0",
         "--pod-name", pod, "--pod-namespace", namespace, "--no-kopf-scanning"]
    )  # fmt: skip


async def apiserver(cfg: Config, log_dir: Path, pods: tuple[str, ...] = REPLICAS) -> dict[str, Any]:
    from openconnector.kube.runner import run_kopf, start_cluster_gateway

    testbed = _testbed()
    sink_proc = await start_sink(log_dir)
    cluster = await _cluster(testbed)
    namespace = f"bench-replicas-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace, check=True)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    for noisy in ("kopf", "openconnector", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    gateways: list[Any] = []
    kopf: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    try:
        recorders = []
        for pod in pods:
            gateway = await start_cluster_gateway(_args(namespace, pod))
            gateways.append(gateway)
            recorder = LiveRecorder(namespace, gateway.core.reconciler)
            gateway.core.reconciler.add_listener(recorder)
            recorders.append(recorder)
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(
                run_kopf(gateway.core, _args(namespace, pod), stop_flag=stop, ready_flag=ready)
            )
            kopf.append((stop, task))
            await asyncio.wait_for(ready.wait(), 60)
        probe = await _apply(cluster, namespace, 1, sink_proc.url, prefix="probe")
        probe_name = next(iter(probe["acked_ns"]))
        for recorder in recorders:
            if not await recorder.wait({probe_name}, 60):
                raise RuntimeError("a replica never routed the probe subscription")
        clients = [g.core.client for g in gateways]

        def patches() -> int:
            return sum(c.patches for c in clients)

        await _settled(patches)
        count = cfg.reconcile_resources
        applied = await _apply(cluster, namespace, count, sink_proc.url)
        names = set(applied["acked_ns"])
        per_replica = {}
        for pod, recorder in zip(pods, recorders, strict=True):
            all_live = await recorder.wait(names, LIVE_TIMEOUT_S)
            latencies = [
                (recorder.live_ns[n] - applied["sent_ns"][n]) / 1e6 for n in names if n in recorder.live_ns
            ]
            per_replica[pod] = {"all_live": all_live, "sent_to_live_ms": latency_summary(latencies)}
        await _settled(patches)

        # Steady load, split over both replicas (each delivers what it ingested: memory bus).
        before, conflicts_before, begin = patches(), sum(c.conflicts for c in clients), time.monotonic()
        specs = [
            LoadSpec(
                f"http://127.0.0.1:{g.port}/namespaces/{namespace}/events",
                "structured",
                1024,
                128,
                cfg.reconcile_steady_s,
                rate=cfg.reconcile_rate / len(gateways),
                max_requests=int(cfg.reconcile_rate * cfg.reconcile_steady_s / len(gateways)),
                types=count,
            )
            for g in gateways
        ]
        loads = await asyncio.gather(*(run_load(spec, "python") for spec in specs))
        elapsed = time.monotonic() - begin
        window = patches() - before
        steady = {
            "rate": cfg.reconcile_rate,
            "duration_s": elapsed,
            "accepted": sum(int(load["ok"]) for load in loads),
            "status_patches": window,
            "patches_per_s": window / elapsed,
            "bound_per_s": len(gateways) * count / STATUS_INTERVAL_S,
            "conflicts_409": sum(c.conflicts for c in clients) - conflicts_before,
        }
        return {"resources": count, "replicas": per_replica, "steady": steady}
    finally:
        for stop, _ in kopf:
            stop.set()
        for _, task in kopf:
            await asyncio.wait({task}, timeout=KOPF_STOP_S)
            if not task.done():
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        for gateway in gateways:
            await gateway.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        cluster.kubectl("delete", "eventsubscriptions", "--all", "-n", namespace, "--wait=false")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
        cluster.stop()
        stop_all([sink_proc])


async def _closed(sink: SinkClient, urls: list[str], connections: int, duration: float) -> float:
    """Deliveries/s reaching the sink while ``connections`` (split over ``urls``) post as fast as answered."""
    await sink.reset()
    share = max(1, connections // len(urls))
    loads = await asyncio.gather(
        *(run_load(LoadSpec(url, "json", 1024, share, duration), "python") for url in urls)
    )
    in_window = await sink.count()
    return in_window / max(float(load["duration_s"]) or duration for load in loads)


async def ingest(cfg: Config, log_dir: Path, repeats: int) -> dict[str, Any]:
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as scratch:
        try:
            sink_proc = await start_sink(log_dir)
            procs.append(sink_proc)
            manifests = write_dir(Path(scratch) / "manifests", ingest_manifests(sink_proc.url))
            for name in ("replica-a", "replica-b"):
                proc, _ = await start_gateway(manifests, log_dir, name=name)
                procs.append(proc)
            urls = [f"{p.url}/webhooks/{INGEST_ENDPOINT}" for p in procs[1:]]
            sink = SinkClient(sink_proc)
            await _closed(sink, urls, cfg.connections, cfg.warmup_s or 1.0)
            one: list[float] = []
            two: list[float] = []
            for rep in range(repeats):
                order = ("one", "two") if rep % 2 == 0 else ("two", "one")
                for system in order:
                    rate = await _closed(
                        sink, urls[:1] if system == "one" else urls, cfg.connections, cfg.duration_s
                    )
                    (one if system == "one" else two).append(rate)
        finally:
            stop_all(procs)
    ratios = [b / a for a, b in zip(one, two, strict=True) if a]
    return {
        "one_replica_per_s": one,
        "two_replicas_per_s": two,
        "ratio_two_over_one": sorted(ratios)[len(ratios) // 2] if ratios else None,
        "cpus": os.cpu_count(),
    }


async def run(ctx: Context) -> dict[str, Any]:
    """Both parts, as ``python -m bench.run --only replicas`` runs them."""
    started = datetime.datetime.now(datetime.UTC)
    cfg = ctx.config
    # The same measurement with one replica, in this run, on this machine: the baseline.
    single = await apiserver(cfg, ctx.log_dir, REPLICAS[:1])
    api = await apiserver(cfg, ctx.log_dir)
    api["one_replica"] = single
    single_p99 = single["replicas"][REPLICAS[0]]["sent_to_live_ms"]["p99"] / 1000
    p99s = {pod: r["sent_to_live_ms"]["p99"] / 1000 for pod, r in api["replicas"].items()}
    steady = api["steady"]
    ctx.say(
        f"replicas: apply→live p99 {', '.join(f'{pod} {s:.2f} s' for pod, s in p99s.items())} for "
        f"{api['resources']:,} subscriptions; {steady['patches_per_s']:.1f} status PATCH/s of both under "
        f"{steady['rate']:g} events/s (policy bound {steady['bound_per_s']:.0f}/s), "
        f"{steady['conflicts_409']} 409s"
    )
    throughput = await ingest(cfg, ctx.log_dir, cfg.repeats)
    ctx.say(f"replicas: ingest→deliver two replicas / one = {throughput['ratio_two_over_one'] or 0:.2f}")
    worst = max(p99s.values()) if p99s else None
    goals = [
        goal(
            f"apply → route live with two replicas, {api['resources']:,} EventSubscriptions "
            "(p99, worse replica)",
            f"< {GOAL_LIVE_S:g} s",
            worst,
            met=None
            if worst is None
            else worst < GOAL_LIVE_S and all(r["all_live"] for r in api["replicas"].values()),
            unit="s",
            note=f"one replica in the same run: {single_p99:.2f} s",
        ),
        goal(
            "status PATCH/s of two replicas under load, against the policy (2 × resources / interval)",
            f"≤ {steady['bound_per_s']:.0f} /s",
            steady["patches_per_s"],
            met=steady["patches_per_s"] <= steady["bound_per_s"],
            unit="/s",
            note=f"{steady['conflicts_409']} answered 409",
        ),
    ]
    return envelope(NAME, ctx, started, apiserver=api, ingest=throughput, goals=goals)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = TINY if args.size == "tiny" else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="bench-replicas-logs-"))
    result: dict[str, Any] = {"started": datetime.datetime.now(datetime.UTC).isoformat(), "size": cfg.name}
    if not args.skip_apiserver:
        result["apiserver"] = await apiserver(cfg, log_dir)
    if not args.skip_ingest:
        result["ingest"] = await ingest(cfg, log_dir, args.repeats)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--skip-apiserver", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2, default=str)
    if args.output is not None:
        args.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
