"""CloudEvents ingress: binary and structured POSTs to /events, and the codec's cost per event.

HTTP: the gateway (an Event defines the type; no subscription, so this is ingress alone: parse, core
and NL GOV checks, accept) against a bare aiohttp server that parses the JSON body and answers 202.

Micro (in process, no HTTP): ``openconnector.ce.parse_http`` of a 1 KB event in each mode, next to bare
``json.loads`` (and ``orjson.loads``) of the same body, in the same run.
"""

from __future__ import annotations

import datetime
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench.context import Context, envelope, goal
from bench.harness import Proc, SinkClient, start_baseline, start_gateway, start_sink, stop_all
from bench.ingest import by_system, measure, order, paired_ratios
from bench.loadgen import LoadSpec
from bench.manifests import ingest_manifests, write_dir
from bench.payloads import sample_body
from bench.stats import spread
from openconnector.ce import check_nlgov, parse_http

NAME = "ingress"
MODES = ("binary", "structured")
GOAL_RATIO = 0.60


async def run(ctx: Context) -> dict[str, Any]:
    """Both modes on every loop of ``ctx.loops`` (gateway and baseline on the same loop); the first loop
    (the gateway's default) fills the main figures, the others ``other_loops`` and goals named by loop."""
    started = datetime.datetime.now(datetime.UTC)
    micro = micro_benchmark(ctx)
    primary = ctx.loops[0]
    found: dict[str, dict[str, Any]] = {}
    for loop in ctx.loops:
        procs: list[Proc] = []
        with tempfile.TemporaryDirectory(prefix="bench-ingress-") as scratch:
            try:
                # No subscription: nothing reaches the sink; measure() still reads its (zero) count.
                sink = await start_sink(ctx.log_dir)
                procs.append(sink)
                accept = await start_baseline("accept", ctx.log_dir, loop=loop)
                procs.append(accept)
                docs = ingest_manifests(sink.url, subscriptions=0)
                gateway, _ = await start_gateway(
                    write_dir(Path(scratch) / "manifests", docs), ctx.log_dir, loop=loop
                )
                procs.append(gateway)
                found[loop] = await _http(ctx, SinkClient(sink), gateway, accept, loop)
            finally:
                stop_all(procs)
    http = found.pop(primary)
    for loop, other in found.items():
        http["goals"] += [
            {
                **g,
                "goal": f"{g['goal']}, both on the {loop} loop",
                "note": f"the gateway's --event-loop {loop}",
            }
            for g in other["goals"]
        ]
    return envelope(NAME, ctx, started, micro=micro, loop=primary, other_loops=found, **http)


async def _http(ctx: Context, sink: SinkClient, gateway: Proc, accept: Proc, loop: str) -> dict[str, Any]:
    cfg = ctx.config
    urls = {"gateway": f"{gateway.url}/events", "baseline": f"{accept.url}/events"}
    pids = {"gateway": gateway.pid, "baseline": accept.pid}
    systems = ["gateway", "baseline"]
    runs: list[dict[str, Any]] = []
    if cfg.warmup_s > 0:
        for system in systems:
            await measure(
                ctx, sink, _spec(urls[system], "structured", cfg.warmup_s, cfg.connections), fanout=0
            )
    for mode in MODES:
        for rep in range(cfg.repeats):
            for system in order(rep, systems):
                spec = _spec(urls[system], mode, cfg.duration_s, cfg.connections)
                result = await measure(ctx, sink, spec, fanout=0, pid=pids[system])
                runs.append({"system": system, "rep": rep, "mode": mode, "loop": loop, **result})
    summary: dict[str, Any] = {}
    for mode in MODES:
        rates = by_system(runs, "accepted_per_s", mode=mode)
        ratios = paired_ratios(runs, "accepted_per_s", "gateway", "baseline", mode=mode)
        errors = {s: int(sum(v)) for s, v in by_system(runs, "errors", mode=mode).items()}
        summary[mode] = {
            "accepted_per_s": {s: spread(v) for s, v in rates.items()},
            "ratio": spread(ratios),
            "cpu_us_per_request": {
                s: spread(v) for s, v in by_system(runs, "cpu_us_per_request", mode=mode).items()
            },
            "cpu_ratio": spread(paired_ratios(runs, "cpu_us_per_request", "baseline", "gateway", mode=mode)),
            "response_latency_us": {
                q: {s: spread(v) for s, v in by_system(runs, f"response_latency_us/{q}", mode=mode).items()}
                for q in ("p50", "p99", "p99.9")
            },
            "errors": errors,
        }
        cpu = paired_ratios(runs, "cpu_us_per_request", "gateway", "baseline", mode=mode)
        ctx.say(
            f"CloudEvents ingress {mode} ({loop} loop): gateway "
            f"{statistics.median(rates.get('gateway', [0])):,.0f} events/s vs bare aiohttp accept "
            f"{statistics.median(rates.get('baseline', [0])):,.0f}/s → "
            f"ratio {summary[mode]['ratio']['median'] or 0:.2f}; CPU per request gateway ÷ baseline "
            f"{statistics.median(cpu) if cpu else 0:.2f}×; refused {errors}"
        )
    goals = [
        goal(
            f"CloudEvents ingress ({mode}) vs bare aiohttp accept-only server",
            f"≥ {GOAL_RATIO:.2f}",
            summary[mode]["ratio"]["median"],
            met=None
            if summary[mode]["ratio"]["median"] is None
            else summary[mode]["ratio"]["median"] >= GOAL_RATIO,
            unit="ratio",
        )
        for mode in MODES
    ]
    return {"runs": runs, "http": summary, "goals": goals}


def _spec(url: str, mode: str, duration: float, connections: int) -> LoadSpec:
    return LoadSpec(url, mode, 1024, connections, duration)


# ---------------------------------------------------------------------------------------------- micro


def per_call_ns(fn: Callable[[], object], iterations: int, repeats: int) -> list[float]:
    """Mean ns per call, once per repeat (a tight loop, GC left on as in the gateway)."""
    results = []
    for _ in range(repeats):
        begin = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter_ns() - begin) / iterations)
    return results


def _parse_and_check(headers: Mapping[str, str], body: bytes) -> object:
    return check_nlgov(parse_http("POST", headers, body).events[0])


def micro_benchmark(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    repeats = max(cfg.repeats, 3)
    found: dict[str, Any] = {}
    gc.collect()
    for mode in MODES:
        headers, body = sample_body(mode, 1024)
        parse_http("POST", headers, body)  # fail now, not inside the timing loop, if the sample is bad
        event = parse_http("POST", headers, body).events[0]
        assert not check_nlgov(event), check_nlgov(event)
        cases: dict[str, Callable[[], object]] = {
            "json.loads": partial(json.loads, body),
            "orjson.loads": partial(orjson.loads, body),
            "parse_http": partial(parse_http, "POST", headers, body),
            "parse_http+check_nlgov": partial(_parse_and_check, headers, body),
        }
        timings = {name: spread(per_call_ns(fn, cfg.micro_iterations, repeats)) for name, fn in cases.items()}
        base = timings["json.loads"]["median"]
        ratios = {name: t["median"] / base for name, t in timings.items()}
        found[mode] = {"body_bytes": len(body), "ns_per_event": timings, "ratio_vs_json_loads": ratios}
        ctx.say(
            f"parse {mode} 1 KB event: parse_http {timings['parse_http']['median'] / 1000:.1f} µs, "
            f"+NL GOV {timings['parse_http+check_nlgov']['median'] / 1000:.1f} µs vs json.loads "
            f"{base / 1000:.1f} µs → ratio {ratios['parse_http']:.1f}× "
            f"(+NL GOV {ratios['parse_http+check_nlgov']:.1f}×; orjson.loads {ratios['orjson.loads']:.2f}×)"
        )
    return found
