"""replicas: two replicas on a real kube-apiserver, and ingest with two replicas against one.

* apiserver (issue 13): two replicas, each an ``openconnector run`` process of its own (a pod each in a
  cluster) with its own pod name and the test bed's kubeconfig. bench.kubeapply applies N
  EventSubscriptions; per replica, apply → route live (p99), read from outside the replica: its
  "routing table v… installed: N resources" log line (JSON, ms timestamps) and the apiserver's write order
  (resourceVersion). Then a steady open-loop load split over both replicas: status PATCHes/s of both
  together against the policy's bound for two replicas (2 × N / status interval), and the 409s among
  them, both counted by the apiserver itself (its /metrics).
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
import re
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.context import FULL, TINY, Config, Context, envelope, goal
from bench.harness import (
    HOST,
    Proc,
    SinkClient,
    child_env,
    cpu_seconds,
    free_port,
    start_gateway,
    start_sink,
    stop_all,
    wait_http,
)
from bench.loadgen import LoadSpec, run_load
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.reconcile import STATUS_INTERVAL_S, _apply, _cluster, _testbed
from bench.stats import latency_summary

NAME = "replicas"
GOAL_LIVE_S = 1.0
REPLICAS = ("bench-replica-a", "bench-replica-b")
LIVE_TIMEOUT_S = 120.0

log = logging.getLogger(__name__)


def replica_argv(namespace: str, pod: str, port: int) -> list[str]:
    """``openconnector run`` of one replica, as a pod runs it: its own pod name, JSON logs at INFO (the
    reconciler's "routing table v… installed" line is what the benchmark reads)."""
    return [
        sys.executable, "-m", "openconnector.cli", "--log-level", "INFO", "--log-format", "json", "run",
        "--namespace", namespace, "--host", HOST, "--port", str(port), "--allow-unknown-types",
        "--drain-seconds", "2", "--status-interval", str(STATUS_INTERVAL_S), "--health-port", "0",
        "--pod-name", pod, "--pod-namespace", namespace, "--no-kopf-scanning",
    ]  # fmt: skip


def spawn_replica(cluster: Any, namespace: str, pod: str, log_dir: Path) -> Proc:
    """One replica as an OS process of its own, with the test bed's kubeconfig."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{pod}-{port}.log"
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            replica_argv(namespace, pod, port),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**child_env(), "KUBECONFIG": str(cluster.kubeconfig)},
        )  # fmt: skip
    return Proc(pod, popen, port, log_path)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_INSTALLED = re.compile(r"routing table v\d+ installed: (\d+) resources \((\d+) not ready\)")


class TableLog:
    """A replica's routing-table installs, read from its log (outside the process, so nothing in it is
    measured by instrumenting it): (CLOCK_MONOTONIC ns, resources routed) per install. The log's wall
    clock (ms) is mapped to CLOCK_MONOTONIC with the offset between the two clocks of this machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.installs: list[tuple[int, int]] = []
        self._offset_ns = time.time_ns() - time.monotonic_ns()
        self._read = 0

    def poll(self) -> list[tuple[int, int]]:
        with self.path.open("rb") as log_file:
            log_file.seek(self._read)
            chunk = log_file.read()
        complete = chunk.rfind(b"\n") + 1
        self._read += complete
        for line in chunk[:complete].splitlines():
            if b"routing table v" not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                found = _INSTALLED.match(str(entry.get("message", "")))
                if found is None:
                    continue
                since_epoch = datetime.datetime.fromisoformat(str(entry["time"])) - _EPOCH
                wall_ns = since_epoch // datetime.timedelta(microseconds=1) * 1000
                routed = int(found.group(1)) - int(found.group(2))
                self.installs.append((wall_ns - self._offset_ns, routed))
        return self.installs

    def routed(self) -> int:
        return self.poll()[-1][1] if self.poll() else 0

    async def wait_routed(self, count: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while self.routed() < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


def live_times(installs: list[tuple[int, int]], before: int, ordered: list[str]) -> dict[str, int]:
    """When each of ``ordered`` (the apply's names in resourceVersion order) first routed.

    A replica's store takes watch events in the apiserver's write order and every install compiles the
    whole store, so the routed resources form a prefix of that order: the k-th written subscription is
    live at the first install routing ``before`` + k resources. (Exact as a distribution; Kopf may swap
    two neighbours written within the same few ms.)"""
    found: dict[str, int] = {}
    rank = 0
    for at_ns, routed in sorted(installs):
        while rank < len(ordered) and routed - before > rank:
            found[ordered[rank]] = at_ns
            rank += 1
    return found


class ApiserverCounts:
    """Status PATCHes of EventSubscriptions as the apiserver counted them (its /metrics,
    ``apiserver_request_total``), by response code: outside every replica."""

    def __init__(self, cluster: Any) -> None:
        self.url = f"{cluster.server}/metrics"
        self.headers = {"Authorization": f"Bearer {cluster.admin_token}"}
        self.tls = ssl.create_default_context(cafile=str(cluster.ca_file))

    async def status_patches(self) -> dict[str, int]:
        from prometheus_client.parser import text_string_to_metric_families

        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(self.url, headers=self.headers, ssl=self.tls) as reply,
        ):
            reply.raise_for_status()
            text = await reply.text()
        codes: dict[str, int] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "apiserver_request":
                continue
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "apiserver_request_total"
                    and labels.get("verb") == "PATCH"
                    and labels.get("resource") == "eventsubscriptions"
                    and labels.get("subresource") == "status"
                ):
                    codes[labels["code"]] = codes.get(labels["code"], 0) + int(sample.value)
        return codes


def _total(codes: dict[str, int]) -> int:
    return sum(codes.values())


async def _patches_settled(counts: ApiserverCounts, quiet_s: float = 1.5, within: float = 30.0) -> None:
    """Wait until no status PATCH arrives at the apiserver for ``quiet_s`` (for at most ``within`` s)."""
    deadline = time.monotonic() + within
    last, since = _total(await counts.status_patches()), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = _total(await counts.status_patches())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


async def apiserver(cfg: Config, log_dir: Path, pods: tuple[str, ...] = REPLICAS) -> dict[str, Any]:
    testbed = _testbed()
    sink_proc = await start_sink(log_dir)
    cluster = await _cluster(testbed)
    namespace = f"bench-replicas-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace, check=True)
    replicas: list[Proc] = []
    try:
        replicas = [spawn_replica(cluster, namespace, pod, log_dir) for pod in pods]
        for proc in replicas:
            await wait_http(proc, "/readyz", 120)
        tables = [TableLog(proc.log) for proc in replicas]
        counts = ApiserverCounts(cluster)
        # A probe proves every replica's watch is up before the clock starts.
        await _apply(cluster, namespace, 1, sink_proc.url, prefix="probe")
        for proc, table in zip(replicas, tables, strict=True):
            if not await table.wait_routed(1, 60):
                raise RuntimeError(f"{proc.name} never routed the probe subscription:\n{proc.log_tail()}")
        await _patches_settled(counts)
        before_routed = [table.routed() for table in tables]
        cpu_before = [cpu_seconds(proc.pid) for proc in replicas]
        patches_before = await counts.status_patches()
        count = cfg.reconcile_resources
        applied = await _apply(cluster, namespace, count, sink_proc.url)
        names = set(applied["acked_ns"])
        ordered = sorted(applied["resource_versions"], key=applied["resource_versions"].__getitem__)
        per_replica = {}
        for proc, table, before in zip(replicas, tables, before_routed, strict=True):
            all_live = await table.wait_routed(before + len(names), LIVE_TIMEOUT_S)
            live = live_times(table.poll(), before, ordered)
            latencies = [(live[n] - applied["sent_ns"][n]) / 1e6 for n in names if n in live]
            per_replica[proc.name] = {
                "all_live": all_live,
                "live": len(live),
                "sent_to_live_ms": latency_summary(latencies),
                "ack_to_live_ms": latency_summary(
                    [(live[n] - applied["acked_ns"][n]) / 1e6 for n in names if n in live]
                ),
                "installs": sum(1 for at, _ in table.installs if at >= applied["started_ns"]),
            }
        await _patches_settled(counts)
        patches_apply = await counts.status_patches()
        for proc, before_s in zip(replicas, cpu_before, strict=True):
            per_replica[proc.name]["cpu_s_apply"] = cpu_seconds(proc.pid) - before_s
        apply_codes = {c: patches_apply.get(c, 0) - patches_before.get(c, 0) for c in patches_apply}

        # Steady load, split over the replicas (each delivers what it ingested: memory bus).
        begin = time.monotonic()
        specs = [
            LoadSpec(
                f"{proc.url}/namespaces/{namespace}/events",
                "structured",
                1024,
                128,
                cfg.reconcile_steady_s,
                rate=cfg.reconcile_rate / len(replicas),
                max_requests=int(cfg.reconcile_rate * cfg.reconcile_steady_s / len(replicas)),
                types=count,
            )
            for proc in replicas
        ]
        loads = await asyncio.gather(*(run_load(spec, "python") for spec in specs))
        elapsed = time.monotonic() - begin
        patches_after = await counts.status_patches()
        window = {c: patches_after.get(c, 0) - patches_apply.get(c, 0) for c in patches_after}
        steady = {
            "rate": cfg.reconcile_rate,
            "duration_s": elapsed,
            "accepted": sum(int(load["ok"]) for load in loads),
            "status_patches": _total(window),
            "patches_per_s": _total(window) / elapsed,
            "bound_per_s": len(replicas) * count / STATUS_INTERVAL_S,
            "conflicts_409": window.get("409", 0),
            "codes": window,
        }
        return {
            "resources": count,
            "replicas": per_replica,
            "apply_status_patches": _total(apply_codes),
            "apply_conflicts_409": apply_codes.get("409", 0),
            "steady": steady,
        }
    finally:
        stop_all(replicas)
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
        result["apiserver_one_replica"] = await apiserver(cfg, log_dir, REPLICAS[:1])
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
