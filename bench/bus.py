"""ingest→deliver on the JetStream bus next to the memory bus, and the bare proxy, in one run.

Three systems take the same load in turn (order rotated per repetition): the gateway with ``--bus
memory``, the gateway with ``--bus jetstream`` on one local ``nats-server -js`` (file storage, stream
replicas 1: a single server, not the 3-node cluster of production or of tests/jetstream, so the figures
leave out replication round trips), and the bare aiohttp accept-and-forward proxy of the ingest
benchmark. Path: webhook → targetless Consumer → Event → 1 subscription → loopback sink.

* closed loop (1 KB): deliveries/s at the sink while the load ran; the JetStream gateway's as a ratio of
  the memory gateway's, per repetition; and per system the deliveries/s while the load ran as a share of
  the accepted/s (near 1: delivery keeps up with intake; far below 1: intake starves delivery and the
  backlog grows, the signature of an unpaced intake) and the CPU per delivered event;
* open loop at 1,000 events/s: end-to-end latency from the intended send time to the sink; added p99 is
  the JetStream gateway's p99 minus the bare proxy's (as in the ingest benchmark), and, separately, minus
  the memory gateway's (what the durable bus itself adds).

The CPU time of nats-server during the JetStream runs is reported next to the gateway's: the durable bus
costs a process of its own on the same two cores.
"""

from __future__ import annotations

import datetime
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.context import Context, envelope, goal
from bench.harness import (
    REPO,
    Proc,
    SinkClient,
    cpu_seconds,
    start_baseline,
    start_gateway,
    start_nats,
    start_sink,
    stop_all,
)
from bench.ingest import by_system, measure, paired_differences, paired_ratios
from bench.loadgen import LoadSpec
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.stats import spread

NAME = "bus"
GOAL_RATIO = 0.5
GOAL_ADDED_P99_MS = 10.0
SYSTEMS = ["memory", "jetstream", "baseline"]
PAYLOAD = 1024


def rotated(rep: int, systems: list[str]) -> list[str]:
    """Each repetition starts with another system, so none always runs on a warmer machine."""
    shift = rep % len(systems)
    return systems[shift:] + systems[:shift]


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as scratch:
        try:
            sink = await start_sink(ctx.log_dir)
            procs.append(sink)
            nats, nats_url = await start_nats(Path(scratch) / "jetstream", ctx.log_dir)
            procs.append(nats)
            proxy = await start_baseline("proxy", ctx.log_dir, forward=f"{sink.url}/deliver/baseline")
            procs.append(proxy)
            manifests = write_dir(Path(scratch) / "manifests", ingest_manifests(sink.url))
            memory, memory_ready = await start_gateway(
                manifests, ctx.log_dir, name="gateway-memory", extra_args=["--bus", "memory"]
            )
            procs.append(memory)
            jetstream, jetstream_ready = await start_gateway(
                manifests,
                ctx.log_dir,
                name="gateway-jetstream",
                extra_args=["--bus", "jetstream", "--nats-url", nats_url, "--jetstream-replicas", "1"],
            )
            procs.append(jetstream)
            gateways = {"memory": memory, "jetstream": jetstream, "baseline": proxy}
            result = await _run_systems(ctx, SinkClient(sink), gateways, nats)
        finally:
            stop_all(procs)
    result["ready_s"] = {"memory": memory_ready, "jetstream": jetstream_ready}
    result["code"] = code_version()
    return envelope(NAME, ctx, started, **result)


def code_version() -> str:
    """The commit the gateway ran, ``+changes`` when operator/ differed from it (the bus is young and
    its figures move with every change)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "operator"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{'+changes' if changed else ''}"


async def _measure(
    ctx: Context, sink: SinkClient, spec: LoadSpec, system: str, procs: dict[str, Proc], nats: Proc
) -> dict[str, Any]:
    nats_before = cpu_seconds(nats.pid)
    result = await measure(ctx, sink, spec, pid=procs[system].pid)
    nats_cpu = cpu_seconds(nats.pid) - nats_before
    delivered = result["delivered_total"]
    result["nats_cpu_us_per_delivery"] = (
        nats_cpu * 1e6 / delivered if system == "jetstream" and delivered else None
    )
    return result


async def _run_systems(ctx: Context, sink: SinkClient, procs: dict[str, Proc], nats: Proc) -> dict[str, Any]:
    cfg = ctx.config
    urls = {
        "memory": f"{procs['memory'].url}/webhooks/{INGEST_ENDPOINT}",
        "jetstream": f"{procs['jetstream'].url}/webhooks/{INGEST_ENDPOINT}",
        "baseline": f"{procs['baseline'].url}/ingest",
    }
    if cfg.warmup_s > 0:
        for system in SYSTEMS:
            spec = LoadSpec(urls[system], "json", PAYLOAD, cfg.connections, cfg.warmup_s)
            await measure(ctx, sink, spec)

    closed: list[dict[str, Any]] = []
    for rep in range(cfg.repeats):
        for system in rotated(rep, SYSTEMS):
            spec = LoadSpec(urls[system], "json", PAYLOAD, cfg.connections, cfg.duration_s)
            closed.append(
                {"system": system, "rep": rep, **await _measure(ctx, sink, spec, system, procs, nats)}
            )
    open_runs: list[dict[str, Any]] = []
    for rep in range(cfg.repeats):
        for system in rotated(rep, SYSTEMS):
            spec = LoadSpec(
                urls[system], "json", PAYLOAD, 256, cfg.open_duration_s, rate=cfg.open_rate,
                max_requests=int(cfg.open_rate * cfg.open_duration_s),
            )  # fmt: skip
            result = await _measure(ctx, sink, spec, system, procs, nats)
            open_runs.append({"system": system, "rep": rep, **result})
    return {"closed_loop": closed, "open_loop": open_runs, **summarise(ctx, closed, open_runs)}


def _spreads(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {s: spread(v) for s, v in by_system(runs, key).items()}


def summarise(ctx: Context, closed: list[dict[str, Any]], open_runs: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = ctx.config
    closed_summary: dict[str, Any] = {
        "delivered_per_s": _spreads(closed, "delivered_per_s"),
        "accepted_per_s": _spreads(closed, "accepted_per_s"),
        "drained_per_s": _spreads(closed, "drained_per_s"),
        "delivered_vs_accepted": {
            system: spread(
                [run["delivered_per_s"] / run["accepted_per_s"] for run in runs if run["accepted_per_s"]]
            )
            for system, runs in _by_system_runs(closed).items()
        },
        "ratio_jetstream_memory": spread(paired_ratios(closed, "delivered_per_s", "jetstream", "memory")),
        "ratio_memory_baseline": spread(paired_ratios(closed, "delivered_per_s", "memory", "baseline")),
        "ratio_jetstream_baseline": spread(paired_ratios(closed, "delivered_per_s", "jetstream", "baseline")),
        "cpu_us_per_delivery": _spreads(closed, "cpu_us_per_delivery"),
        "nats_cpu_us_per_delivery": _spreads(closed, "nats_cpu_us_per_delivery"),
        "response_latency_us": {
            q: _spreads(closed, f"response_latency_us/{q}") for q in ("p50", "p99", "p99.9")
        },
        "lost": {s: int(sum(v)) for s, v in by_system(closed, "lost").items()},
        "errors": {s: int(sum(v)) for s, v in by_system(closed, "errors").items()},
    }
    open_summary: dict[str, Any] = {
        "rate": cfg.open_rate,
        "e2e_latency_us": {q: _spreads(open_runs, f"e2e_latency_us/{q}") for q in ("p50", "p99", "p99.9")},
        "response_latency_us": {
            q: _spreads(open_runs, f"response_latency_us/{q}") for q in ("p50", "p99", "p99.9")
        },
        "added_vs_baseline_us": {
            q: spread(paired_differences(open_runs, f"e2e_latency_us/{q}", "jetstream", "baseline"))
            for q in ("p50", "p99", "p99.9")
        },
        "added_vs_memory_us": {
            q: spread(paired_differences(open_runs, f"e2e_latency_us/{q}", "jetstream", "memory"))
            for q in ("p50", "p99", "p99.9")
        },
        "memory_added_vs_baseline_us": {
            q: spread(paired_differences(open_runs, f"e2e_latency_us/{q}", "memory", "baseline"))
            for q in ("p50", "p99", "p99.9")
        },
        "lost": {s: int(sum(v)) for s, v in by_system(open_runs, "lost").items()},
        "late": {s: int(sum(v)) for s, v in by_system(open_runs, "late").items()},
        "errors": {s: int(sum(v)) for s, v in by_system(open_runs, "errors").items()},
    }
    ratio = closed_summary["ratio_jetstream_memory"]["median"]
    rates = closed_summary["delivered_per_s"]
    kept_up = closed_summary["delivered_vs_accepted"]
    cpu = closed_summary["cpu_us_per_delivery"]
    ctx.say(
        f"bus closed loop 1 KB: JetStream {_median(rates, 'jetstream'):,.0f} deliveries/s vs memory "
        f"{_median(rates, 'memory'):,.0f}/s vs bare proxy {_median(rates, 'baseline'):,.0f}/s "
        "→ JetStream/memory "
        f"{ratio or 0:.2f} (runs "
        f"{', '.join(f'{r:.2f}' for r in closed_summary['ratio_jetstream_memory']['values'])}); "
        f"delivered/accepted while loaded: JetStream {_median(kept_up, 'jetstream'):.2f}, memory "
        f"{_median(kept_up, 'memory'):.2f}; CPU µs per delivery: JetStream gateway "
        f"{_median(cpu, 'jetstream'):,.0f} (+ nats-server "
        f"{_median(closed_summary['nats_cpu_us_per_delivery'], 'jetstream'):,.0f}), memory gateway "
        f"{_median(cpu, 'memory'):,.0f}; lost {closed_summary['lost']}"
    )
    added = open_summary["added_vs_baseline_us"]["p99"]["median"]
    added_memory = open_summary["added_vs_memory_us"]["p99"]["median"]
    p99 = open_summary["e2e_latency_us"]["p99"]
    ctx.say(
        f"bus open loop {cfg.open_rate:,.0f} events/s: end-to-end p99 JetStream "
        f"{_median(p99, 'jetstream') / 1000:.2f} ms, memory {_median(p99, 'memory') / 1000:.2f} ms, "
        f"bare proxy {_median(p99, 'baseline') / 1000:.2f} ms → added p99 "
        f"{(added or 0) / 1000:.2f} ms vs the proxy, "
        f"{(added_memory or 0) / 1000:.2f} ms vs the memory bus; lost {open_summary['lost']}"
    )
    goals = [
        goal(
            "ingest→deliver throughput, JetStream bus vs memory bus",
            f"≥ {GOAL_RATIO:.2f}",
            ratio,
            met=None if ratio is None else ratio >= GOAL_RATIO,
            unit="ratio",
            note="one local nats-server, stream replicas 1",
        ),
        goal(
            f"added p99 latency on the JetStream bus at {cfg.open_rate:,.0f} events/s "
            "(JetStream gateway p99 − bare proxy p99, end to end)",
            f"< {GOAL_ADDED_P99_MS:g} ms",
            None if added is None else added / 1000,
            met=None if added is None else added / 1000 < GOAL_ADDED_P99_MS,
            unit="ms",
            note="" if added_memory is None else f"{added_memory / 1000:.2f} ms of it over the memory bus",
        ),
    ]
    return {"closed": closed_summary, "open": open_summary, "goals": goals}


def _by_system_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        found.setdefault(run["system"], []).append(run)
    return found


def _median(spreads: dict[str, Any], system: str) -> float:
    found = spreads.get(system, {}).get("median")
    return float(found) if found is not None else 0.0
