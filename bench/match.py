"""match: ``RoutingTable.match`` per event, pure (no HTTP), and how it scales with subscriptions.

The table is compiled from generated EventSubscriptions: 10k over 1k types, filter dialects mixed evenly
(none, exact, prefix, suffix, all, any, not, sql, jsonLogic). Probe events pick a type at random and
carry the attributes and data the filters read. Baseline in the same run: the type-index lookup alone
(what any router pays before it evaluates a single filter).
"""

from __future__ import annotations

import datetime
import gc
import random
import time
from collections.abc import Mapping
from typing import Any

from bench.context import Context, envelope, goal
from bench.manifests import NAMESPACE, SOURCE, filtered_subscriptions, resources, type_name, types_for
from bench.stats import latency_summary, spread
from openconnector.routing.compiler import compile_table
from openconnector.routing.table import RoutingTable

NAME = "match"
GOAL_P99_US = 20.0

Event = tuple[Mapping[str, Any], Any]


def build_table(subscriptions: int, types: int) -> tuple[RoutingTable, float]:
    docs = list(filtered_subscriptions(subscriptions, types, "http://127.0.0.1:9/deliver"))
    found = resources(docs)
    begin = time.perf_counter()
    table = compile_table(found, {}, version=1)
    seconds = time.perf_counter() - begin
    broken = [r for r in table.results.values() if not r.ready]
    if broken:
        raise RuntimeError(f"{len(broken)} generated subscriptions do not compile: {broken[0].message}")
    return table, seconds


def probe_events(count: int, types: int, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(count):
        attributes = {
            "specversion": "1.0",
            "id": f"probe-{i}",
            "source": SOURCE,
            "type": type_name(rng.randrange(types)),
            "time": "2026-11-28T12:00:00.000Z",
            "subject": f"zaak-{rng.randrange(1000)}",
            "datacontenttype": "application/json",
        }
        data = {"status": rng.choice(("open", "open", "open", "gesloten")), "amount": rng.randrange(20)}
        events.append((attributes, data))
    return events


def time_match(table: RoutingTable, events: list[Event]) -> tuple[list[float], int, int]:
    """ns per ``match`` call; and the candidates and matches seen, as counts."""
    timings: list[float] = []
    matched = candidates = 0
    clock = time.perf_counter_ns
    for attributes, data in events:
        begin = clock()
        routes = table.match(NAMESPACE, attributes, data)
        timings.append(clock() - begin)
        matched += len(routes)
        candidates += len(table.subscriptions_by_namespace_type.get((NAMESPACE, attributes["type"]), ()))
    return timings, candidates, matched


def time_lookup(table: RoutingTable, events: list[Event]) -> list[float]:
    """The floor: find the candidates by type, evaluate nothing."""
    timings: list[float] = []
    index = table.subscriptions_by_namespace_type
    clock = time.perf_counter_ns
    for attributes, _ in events:
        begin = clock()
        list(index.get((NAMESPACE, attributes["type"]), ()))
        timings.append(clock() - begin)
    return timings


def _us(values_ns: list[float]) -> dict[str, float]:
    return latency_summary(v / 1000 for v in values_ns)


def measure_size(ctx: Context, subscriptions: int, types: int, events: int) -> dict[str, Any]:
    table, compile_s = build_table(subscriptions, types)
    probes = probe_events(events, types)
    time_match(table, probes[: min(1000, events)])  # warm caches and lazy compiled pieces
    reps: list[dict[str, Any]] = []
    for _ in range(ctx.config.repeats):
        gc.collect()
        match_ns, candidates, matched = time_match(table, probes)
        lookup_ns = time_lookup(table, probes)
        reps.append(
            {
                "match_us": _us(match_ns),
                "lookup_us": _us(lookup_ns),
                "candidates_per_event": candidates / len(probes),
                "matches_per_event": matched / len(probes),
            }
        )
    summary = {
        "subscriptions": subscriptions,
        "types": types,
        "events": events,
        "compile_s": compile_s,
        "match_us": {q: spread([r["match_us"][q] for r in reps]) for q in ("p50", "p99", "p99.9")},
        "lookup_us": {q: spread([r["lookup_us"][q] for r in reps]) for q in ("p50", "p99", "p99.9")},
        "ratio_p50": spread([r["match_us"]["p50"] / r["lookup_us"]["p50"] for r in reps]),
        "ratio_p99": spread([r["match_us"]["p99"] / r["lookup_us"]["p99"] for r in reps]),
        "candidates_per_event": reps[0]["candidates_per_event"],
        "matches_per_event": reps[0]["matches_per_event"],
        "reps": reps,
    }
    del table
    gc.collect()
    return summary


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    cfg = ctx.config
    main = measure_size(ctx, cfg.match_subscriptions, cfg.match_types, cfg.match_events)
    p50, p99 = main["match_us"]["p50"]["median"], main["match_us"]["p99"]["median"]
    ctx.say(
        f"match {cfg.match_subscriptions:,} subscriptions / {cfg.match_types:,} types: p50 {p50:.1f} µs, "
        f"p99 {p99:.1f} µs per event vs type lookup alone p50 "
        f"{main['lookup_us']['p50']['median']:.2f} µs, p99 {main['lookup_us']['p99']['median']:.2f} µs "
        f"→ ratio p99 {main['ratio_p99']['median']:.1f}×; {main['candidates_per_event']:.1f} candidates, "
        f"{main['matches_per_event']:.1f} matches per event; table compiled in {main['compile_s']:.2f} s"
    )
    scaling = []
    for count in cfg.scaling_subscriptions:
        if count == cfg.match_subscriptions and types_for(count) == cfg.match_types:
            point = main
        else:
            point = measure_size(ctx, count, types_for(count), cfg.match_events)
        scaling.append({k: v for k, v in point.items() if k != "reps"})
        ctx.say(
            f"match scaling {count:,} subscriptions ({types_for(count):,} types, "
            f"{point['candidates_per_event']:.0f} candidates/event): p50 "
            f"{point['match_us']['p50']['median']:.1f} µs, p99 {point['match_us']['p99']['median']:.1f} µs; "
            f"compile {point['compile_s'] * 1000:,.0f} ms"
        )
    goals = [
        goal(
            f"match p99 over {cfg.match_subscriptions:,} subscriptions",
            f"< {GOAL_P99_US:g} µs",
            p99,
            met=p99 < GOAL_P99_US,
            unit="µs",
        )
    ]
    return envelope(NAME, ctx, started, main=main, scaling=scaling, goals=goals)
