"""fan-out: 1 event → 100 subscriptions into one loopback sink; deliveries/s against 1 subscription.

Two gateways (1 and N subscriptions of the ingest event, each to its own path of the same sink) take the
same closed-loop webhook load in alternating runs. The figure is deliveries/s at the sink with N
subscriptions as a ratio of deliveries/s with one: 1.0 means fan-out costs no more per delivery than a
single subscriber does; N would mean a delivery costs nothing beside the ingest.
"""

from __future__ import annotations

import datetime
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.context import Context, envelope
from bench.harness import Proc, SinkClient, start_gateway, start_sink, stop_all
from bench.ingest import by_system, measure, order, paired_ratios
from bench.loadgen import LoadSpec
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.stats import spread

NAME = "fanout"


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    cfg = ctx.config
    fan = cfg.fanout_subscriptions
    systems = ["1", str(fan)]
    procs: list[Proc] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch:
        try:
            sink_proc = await start_sink(ctx.log_dir)
            procs.append(sink_proc)
            sink = SinkClient(sink_proc)
            urls: dict[str, str] = {}
            pids: dict[str, int] = {}
            for system in systems:
                docs = ingest_manifests(sink_proc.url, subscriptions=int(system))
                gateway, _ = await start_gateway(write_dir(Path(scratch) / system, docs), ctx.log_dir)
                procs.append(gateway)
                urls[system] = f"{gateway.url}/webhooks/{INGEST_ENDPOINT}"
                pids[system] = gateway.pid
            if cfg.warmup_s > 0:
                for system in systems:
                    spec = LoadSpec(urls[system], "json", 1024, cfg.fanout_connections, cfg.warmup_s)
                    await measure(ctx, sink, spec, fanout=int(system))
            for rep in range(cfg.repeats):
                for system in order(rep, systems):
                    spec = LoadSpec(urls[system], "json", 1024, cfg.fanout_connections, cfg.duration_s)
                    result = await measure(ctx, sink, spec, fanout=int(system), drain_s=30, pid=pids[system])
                    runs.append({"system": system, "rep": rep, **result})
        finally:
            stop_all(procs)
    deliveries = by_system(runs, "delivered_per_s")
    events = by_system(runs, "accepted_per_s")
    ratios = paired_ratios(runs, "delivered_per_s", str(fan), "1")
    lost = {s: int(sum(v)) for s, v in by_system(runs, "lost").items()}
    ctx.say(
        f"fan-out 1 event → {fan} subscriptions: {statistics.median(deliveries.get(str(fan), [0])):,.0f} "
        f"deliveries/s ({statistics.median(events.get(str(fan), [0])):,.0f} events/s) vs 1 subscription "
        f"{statistics.median(deliveries.get('1', [0])):,.0f} deliveries/s → ratio "
        f"{statistics.median(ratios) if ratios else 0:.2f}; lost {lost}"
    )
    summary = {
        "subscriptions": fan,
        "cpu_us_per_delivery": {s: spread(v) for s, v in by_system(runs, "cpu_us_per_delivery").items()},
        "deliveries_per_s": {s: spread(v) for s, v in deliveries.items()},
        "events_per_s": {s: spread(v) for s, v in events.items()},
        "ratio": spread(ratios),
        "lost": lost,
    }
    return envelope(NAME, ctx, started, runs=runs, summary=summary)
