"""ingest→deliver: webhook → targetless Consumer → Event → 1 subscriber on a loopback sink.

Baseline, in the same run: a bare aiohttp server that parses the same body and forwards it to the same
sink (``bench.servers proxy``). Both are separate processes; the load generator is a third, the sink a
fourth. Runs alternate gateway and baseline, so slow drift of a shared machine hits both alike.

* closed loop, per payload size (the scaling plot): deliveries/s at the sink while the load ran, the
  gateway's as a ratio of the baseline's; response and end-to-end latency percentiles;
* open loop at a fixed rate (1,000 events/s): end-to-end latency from the intended send time to the
  sink; the gateway's added latency is its percentile minus the baseline's.
"""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.context import Context, envelope, goal
from bench.harness import Proc, SinkClient, cpu_seconds, start_baseline, start_gateway, start_sink, stop_all
from bench.loadgen import LoadSpec, run_load
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.stats import latency_summary, spread

NAME = "ingest"
GOAL_RATIO = 0.70
GOAL_ADDED_P99_MS = 5.0
# Per payload size (bytes): the throughput ratio to reach; sizes not listed share GOAL_RATIO.
GOAL_RATIO_BY_SIZE = {64 * 1024: 0.50}
GOAL_CPU_TIMES = 1.5  # gateway CPU per delivered event at most this many times the proxy's
GOAL_RESPONSE_P99_TIMES = 10.0  # closed-loop response p99 at most this many times the proxy's


async def measure(
    ctx: Context,
    sink: SinkClient,
    spec: LoadSpec,
    *,
    fanout: int = 1,
    drain_s: float = 20.0,
    pid: int | None = None,
) -> dict[str, Any]:
    """One load run against one system: the load generator's report plus what reached the sink, and,
    given the system's ``pid``, the CPU time it spent (a cost per event that no clock skews)."""
    await sink.reset()
    cpu_before = cpu_seconds(pid) if pid else 0.0
    load = await run_load(spec, ctx.loadgen)
    in_window = await sink.count()
    accepted = int(load["ok"])
    drain_began = time.monotonic()
    delivered = await sink.wait_count(accepted * fanout, drain_s)
    drained_s = time.monotonic() - drain_began
    cpu = cpu_seconds(pid) - cpu_before if pid else None
    stats = await sink.stats()
    duration = float(load["duration_s"]) or spec.duration
    return {
        "tool": load["tool"],
        "url": spec.url,
        "fmt": spec.fmt,
        "size": spec.size,
        "connections": spec.connections,
        "rate": spec.rate,
        "duration_s": duration,
        "requests": int(load["requests"]),
        "accepted": accepted,
        "errors": int(load["errors"]),
        "delivered_in_window": in_window,
        "delivered_total": delivered,
        # After the load stopped: how long the rest took to arrive (a backlog shows here).
        "drain_s": drained_s,
        "drained_per_s": (delivered - in_window) / drained_s if delivered > in_window and drained_s else None,
        "expected_deliveries": accepted * fanout,
        "lost": max(0, accepted * fanout - delivered),
        "accepted_per_s": accepted / duration,
        "delivered_per_s": in_window / duration,
        "response_latency_us": load["latency_us"],
        "e2e_latency_us": latency_summary(ns / 1000 for ns in stats["latencies_ns"]),
        "late": int(load.get("late", 0)),
        "cpu_s": cpu,
        "cpu_us_per_request": cpu * 1e6 / accepted if cpu is not None and accepted else None,
        "cpu_us_per_delivery": cpu * 1e6 / delivered if cpu is not None and delivered else None,
    }


def order(rep: int, systems: list[str]) -> list[str]:
    """ABBA: alternate which system goes first, so neither always runs on a warmer machine."""
    return systems if rep % 2 == 0 else list(reversed(systems))


def _get(run: Mapping[str, Any], path: str) -> float | None:
    """``run["a"]["b"]`` for ``path`` "a/b" (percentile names contain dots); None when unmeasured."""
    value: Any = run
    for part in path.split("/"):
        value = value[part]
    return None if value is None else float(value)


def _selected(runs: list[dict[str, Any]], key: str, match: Mapping[str, Any]) -> Iterator[tuple[Any, float]]:
    for run in runs:
        if all(run.get(k) == v for k, v in match.items()):
            value = _get(run, key)
            if value is not None:
                yield run, value


def by_system(runs: list[dict[str, Any]], key: str, **match: Any) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for run, value in _selected(runs, key, match):
        grouped.setdefault(run["system"], []).append(value)
    return grouped


def _pairs(runs: list[dict[str, Any]], key: str, match: Mapping[str, Any]) -> list[dict[str, float]]:
    """One ``{system: value}`` per repetition (the systems of a repetition ran back to back)."""
    pairs: dict[int, dict[str, float]] = {}
    for run, value in _selected(runs, key, match):
        pairs.setdefault(run["rep"], {})[run["system"]] = value
    return list(pairs.values())


def paired_ratios(runs: list[dict[str, Any]], key: str, a: str, b: str, **match: Any) -> list[float]:
    """``a/b`` per repetition."""
    return [p[a] / p[b] for p in _pairs(runs, key, match) if a in p and b in p and p[b]]


def paired_differences(runs: list[dict[str, Any]], key: str, a: str, b: str, **match: Any) -> list[float]:
    """``a−b`` per repetition."""
    return [p[a] - p[b] for p in _pairs(runs, key, match) if a in p and b in p]


async def run(ctx: Context) -> dict[str, Any]:
    """The full benchmark on the first of ``ctx.loops`` (the gateway's default event loop), then the 1 KB
    closed loop on each other loop; gateway and proxy always share a loop."""
    started = datetime.datetime.now(datetime.UTC)
    primary, *others = ctx.loops
    result: dict[str, Any] = {"loop": primary}
    other_loops: dict[str, Any] = {}
    for loop in ctx.loops:
        procs: list[Proc] = []
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
            try:
                sink = await start_sink(ctx.log_dir)
                procs.append(sink)
                proxy = await start_baseline(
                    "proxy", ctx.log_dir, forward=f"{sink.url}/deliver/baseline", loop=loop
                )
                procs.append(proxy)
                manifests = write_dir(
                    Path(scratch) / "manifests",
                    ingest_manifests(sink.url, max_concurrency=ctx.config.connections),
                )
                gateway, ready_s = await start_gateway(manifests, ctx.log_dir, loop=loop)
                procs.append(gateway)
                if loop == primary:
                    result.update(await _run_systems(ctx, SinkClient(sink), gateway, proxy, loop))
                    result["gateway_ready_s"] = ready_s
                else:
                    other_loops[loop] = await _run_other_loop(ctx, SinkClient(sink), gateway, proxy, loop)
            finally:
                stop_all(procs)
    result["other_loops"] = other_loops
    for loop in others:
        result["goals"] += other_loops[loop]["goals"]
    return envelope(NAME, ctx, started, **result)


def _urls(gateway: Proc, proxy: Proc) -> tuple[dict[str, str], dict[str, int]]:
    urls = {"gateway": f"{gateway.url}/webhooks/{INGEST_ENDPOINT}", "baseline": f"{proxy.url}/ingest"}
    return urls, {"gateway": gateway.pid, "baseline": proxy.pid}


async def _closed_loop(
    ctx: Context, sink: SinkClient, gateway: Proc, proxy: Proc, sizes: tuple[int, ...], loop: str
) -> list[dict[str, Any]]:
    """Warm-up, then the closed loop per payload size, gateway and proxy alternating (ABBA)."""
    cfg = ctx.config
    urls, pids = _urls(gateway, proxy)
    systems = ["gateway", "baseline"]
    if cfg.warmup_s > 0:
        for system in systems:
            spec = LoadSpec(urls[system], "json", 1024, cfg.connections, cfg.warmup_s)
            await measure(ctx, sink, spec)
    closed: list[dict[str, Any]] = []
    for size in sizes:
        for rep in range(cfg.repeats):
            for system in order(rep, systems):
                spec = LoadSpec(urls[system], "json", size, cfg.connections, cfg.duration_s)
                result = await measure(ctx, sink, spec, pid=pids[system])
                closed.append({"system": system, "rep": rep, "loop": loop, **result})
        _say_closed(ctx, closed, size, loop)
    return closed


async def _run_other_loop(
    ctx: Context, sink: SinkClient, gateway: Proc, proxy: Proc, loop: str
) -> dict[str, Any]:
    """The 1 KB closed loop on another event loop: its ratios and goals, named with the loop."""
    size = ctx.config.payload_sizes[0]
    closed = await _closed_loop(ctx, sink, gateway, proxy, (size,), loop)
    ratio = spread(paired_ratios(closed, "delivered_per_s", "gateway", "baseline", size=size))
    median = ratio["median"]
    goals = [
        goal(
            f"ingest→deliver throughput vs the proxy, {size // 1024} KB, both on the {loop} loop",
            f"≥ {GOAL_RATIO:.2f}",
            median,
            met=None if median is None else median >= GOAL_RATIO,
            unit="ratio",
            note=f"the gateway's --event-loop {loop}",
        ),
        *(
            {**g, "goal": f"{g['goal']}, both on the {loop} loop"}
            for g in _cost_goals(closed, size)
            if g["goal"].startswith("CPU")
        ),
    ]
    per_size = {
        str(size): {
            "delivered_per_s": {
                s: spread(v) for s, v in by_system(closed, "delivered_per_s", size=size).items()
            },
            "ratio": ratio,
            "cpu_us_per_delivery": {
                s: spread(v) for s, v in by_system(closed, "cpu_us_per_delivery", size=size).items()
            },
            "cpu_ratio": spread(
                paired_ratios(closed, "cpu_us_per_delivery", "baseline", "gateway", size=size)
            ),
        }
    }
    return {"closed_loop": closed, "per_size": per_size, "goals": goals}


async def _run_systems(
    ctx: Context, sink: SinkClient, gateway: Proc, proxy: Proc, loop: str
) -> dict[str, Any]:
    cfg = ctx.config
    urls, pids = _urls(gateway, proxy)
    systems = ["gateway", "baseline"]
    closed = await _closed_loop(ctx, sink, gateway, proxy, cfg.payload_sizes, loop)

    open_runs: list[dict[str, Any]] = []
    for rep in range(cfg.repeats):
        for system in order(rep, systems):
            spec = LoadSpec(
                urls[system], "json", 1024, 256, cfg.open_duration_s, rate=cfg.open_rate,
                max_requests=int(cfg.open_rate * cfg.open_duration_s),
            )  # fmt: skip
            result = await measure(ctx, sink, spec, pid=pids[system])
            open_runs.append({"system": system, "rep": rep, **result})
    summary = _summarise(ctx, closed, open_runs)
    return {"closed_loop": closed, "open_loop": open_runs, **summary}


def _say_closed(ctx: Context, closed: list[dict[str, Any]], size: int, loop: str) -> None:
    rates = by_system(closed, "delivered_per_s", size=size)
    ratios = paired_ratios(closed, "delivered_per_s", "gateway", "baseline", size=size)
    lost = sum(r["lost"] for r in closed if r["size"] == size and r["system"] == "gateway")
    cpu = paired_ratios(closed, "cpu_us_per_delivery", "gateway", "baseline", size=size)
    ctx.say(
        f"ingest→deliver {size // 1024} KB closed loop ({loop} loop): gateway "
        f"{statistics.median(rates.get('gateway', [0])):,.0f} deliveries/s vs baseline "
        f"{statistics.median(rates.get('baseline', [0])):,.0f}/s → ratio "
        f"{statistics.median(ratios) if ratios else 0:.2f} (runs {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"CPU per delivery gateway ÷ proxy {statistics.median(cpu) if cpu else 0:.2f}×; lost {lost}"
    )


def _summarise(ctx: Context, closed: list[dict[str, Any]], open_runs: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = ctx.config
    per_size: dict[str, Any] = {}
    for size in cfg.payload_sizes:
        per_size[str(size)] = {
            "delivered_per_s": {
                s: spread(v) for s, v in by_system(closed, "delivered_per_s", size=size).items()
            },
            "accepted_per_s": {
                s: spread(v) for s, v in by_system(closed, "accepted_per_s", size=size).items()
            },
            "ratio": spread(paired_ratios(closed, "delivered_per_s", "gateway", "baseline", size=size)),
            "cpu_us_per_delivery": {
                s: spread(v) for s, v in by_system(closed, "cpu_us_per_delivery", size=size).items()
            },
            # baseline CPU / gateway CPU per delivery: the throughput ratio the cores would allow
            "cpu_ratio": spread(
                paired_ratios(closed, "cpu_us_per_delivery", "baseline", "gateway", size=size)
            ),
            "response_latency_us": {
                q: {s: spread(v) for s, v in by_system(closed, f"response_latency_us/{q}", size=size).items()}
                for q in ("p50", "p99", "p99.9")
            },
            "e2e_latency_us": {
                q: {s: spread(v) for s, v in by_system(closed, f"e2e_latency_us/{q}", size=size).items()}
                for q in ("p50", "p99", "p99.9")
            },
            "lost": {s: int(sum(v)) for s, v in by_system(closed, "lost", size=size).items()},
        }
    open_summary: dict[str, Any] = {
        "rate": cfg.open_rate,
        "e2e_latency_us": {
            q: {s: spread(v) for s, v in by_system(open_runs, f"e2e_latency_us/{q}").items()}
            for q in ("p50", "p99", "p99.9")
        },
        "added_us": {
            q: spread(paired_differences(open_runs, f"e2e_latency_us/{q}", "gateway", "baseline"))
            for q in ("p50", "p99", "p99.9")
        },
        "lost": {s: int(sum(v)) for s, v in by_system(open_runs, "lost").items()},
        "late": {s: int(sum(v)) for s, v in by_system(open_runs, "late").items()},
        "errors": {s: int(sum(v)) for s, v in by_system(open_runs, "errors").items()},
    }
    added_p99 = open_summary["added_us"]["p99"]["median"]
    base_p99 = open_summary["e2e_latency_us"]["p99"].get("baseline", {}).get("median")
    gw_p99 = open_summary["e2e_latency_us"]["p99"].get("gateway", {}).get("median")
    ctx.say(
        f"ingest→deliver open loop {cfg.open_rate:,.0f} events/s: end-to-end p99 gateway "
        f"{(gw_p99 or 0) / 1000:.2f} ms vs baseline {(base_p99 or 0) / 1000:.2f} ms → added p99 "
        f"{(added_p99 or 0) / 1000:.2f} ms; added p50 "
        f"{(open_summary['added_us']['p50']['median'] or 0) / 1000:.2f} ms; lost {open_summary['lost']}"
    )
    first = str(cfg.payload_sizes[0])
    ratio_1k = per_size[first]["ratio"]["median"]
    goals = [
        goal(
            "ingest→deliver throughput vs bare aiohttp accept-and-forward proxy",
            f"≥ {GOAL_RATIO:.2f}",
            ratio_1k,
            met=None if ratio_1k is None else ratio_1k >= GOAL_RATIO,
            unit="ratio",
            note=f"{int(first) // 1024} KB",
        ),
        *_size_goals(per_size, cfg.payload_sizes[1:]),
        *_cost_goals(closed, cfg.payload_sizes[0]),
        goal(
            f"added p99 latency at {cfg.open_rate:,.0f} events/s (gateway p99 − baseline p99, end to end)",
            f"< {GOAL_ADDED_P99_MS:g} ms",
            None if added_p99 is None else added_p99 / 1000,
            met=None if added_p99 is None else added_p99 / 1000 < GOAL_ADDED_P99_MS,
            unit="ms",
        ),
    ]
    return {"per_size": per_size, "open": open_summary, "goals": goals}


def _size_goals(per_size: Mapping[str, Any], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    found = []
    for size in sizes:
        target = GOAL_RATIO_BY_SIZE.get(size, GOAL_RATIO)
        ratio = per_size[str(size)]["ratio"]["median"]
        found.append(
            goal(
                f"ingest→deliver throughput vs the proxy, {size // 1024} KB payload",
                f"≥ {target:.2f}",
                ratio,
                met=None if ratio is None else ratio >= target,
                unit="ratio",
            )
        )
    return found


def _cost_goals(closed: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """CPU per delivered event and the closed-loop response p99, gateway ÷ proxy per repetition."""
    cpu = paired_ratios(closed, "cpu_us_per_delivery", "gateway", "baseline", size=size)
    p99 = paired_ratios(closed, "response_latency_us/p99", "gateway", "baseline", size=size)
    cpu_times = statistics.median(cpu) if cpu else None
    p99_times = statistics.median(p99) if p99 else None
    return [
        goal(
            f"CPU per delivered event, gateway ÷ proxy ({size // 1024} KB, closed loop)",
            f"≤ {GOAL_CPU_TIMES:g}×",
            cpu_times,
            met=None if cpu_times is None else cpu_times <= GOAL_CPU_TIMES,
            unit="×",
        ),
        goal(
            f"response p99 under the closed loop, gateway ÷ proxy ({size // 1024} KB)",
            f"≤ {GOAL_RESPONSE_P99_TIMES:g}×",
            p99_times,
            met=None if p99_times is None else p99_times <= GOAL_RESPONSE_P99_TIMES,
            unit="×",
            note="the sender must not starve behind delivery work",
        ),
    ]
