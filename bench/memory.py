"""memory: RSS of a standalone gateway process with 0, 1k and 10k subscriptions.

Each size runs ``openconnector serve`` on a generated manifest directory (the ingest Event and Consumer
plus N filtered subscriptions, dialects mixed as in the match benchmark); once /readyz answers, VmRSS and
VmHWM (peak) are read from /proc/<pid>/status. Baseline in the same run: an idle bare aiohttp server
process (``bench.servers accept``), what any aiohttp service costs before it holds anything.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.context import Context, envelope, goal
from bench.harness import rss_kib, run_json_process, start_baseline, start_gateway
from bench.manifests import filtered_subscriptions, ingest_manifests, types_for, write_dir
from bench.stats import spread

NAME = "memory"
GOAL_MB = 150.0
SETTLE_S = 0.5


async def _gateway_rss(ctx: Context, directory: Path) -> dict[str, float]:
    proc, ready_s = await start_gateway(directory, ctx.log_dir, within=300)
    try:
        await asyncio.sleep(SETTLE_S)
        found = rss_kib(proc.pid)
    finally:
        proc.stop()
    return {"rss_mb": found["VmRSS"] / 1024, "peak_mb": found["VmHWM"] / 1024, "ready_s": ready_s}


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    cfg = ctx.config
    # RSS hardly varies between runs; three are plenty even when the timing benchmarks repeat more.
    repeats = max(1, min(3, cfg.repeats))
    baseline_runs = []
    for _ in range(repeats):
        proc = await start_baseline("accept", ctx.log_dir)
        try:
            await asyncio.sleep(SETTLE_S)
            baseline_runs.append(rss_kib(proc.pid)["VmRSS"] / 1024)
        finally:
            proc.stop()
    baseline = spread(baseline_runs)
    sizes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        for count in cfg.memory_subscriptions:
            docs = ingest_manifests("http://127.0.0.1:9", subscriptions=0)
            docs += filtered_subscriptions(count, types_for(count), "http://127.0.0.1:9/deliver")
            directory = write_dir(Path(scratch) / str(count), docs)
            runs = [await _gateway_rss(ctx, directory) for _ in range(repeats)]
            sizes.append(
                {
                    "subscriptions": count,
                    "rss_mb": spread([r["rss_mb"] for r in runs]),
                    "peak_mb": spread([r["peak_mb"] for r in runs]),
                    "ready_s": spread([r["ready_s"] for r in runs]),
                    "ratio_vs_bare_aiohttp": spread([r["rss_mb"] / baseline["median"] for r in runs]),
                }
            )
    zero = sizes[0]["rss_mb"]["median"]
    for size in sizes:
        count = size["subscriptions"]
        size["kib_per_subscription"] = (size["rss_mb"]["median"] - zero) * 1024 / count if count else None
        per_sub = f"; {size['kib_per_subscription']:.1f} KiB per subscription" if count else ""
        ctx.say(
            f"memory {count:,} subscriptions: RSS {size['rss_mb']['median']:.0f} MB (peak "
            f"{size['peak_mb']['median']:.0f} MB) vs bare aiohttp process {baseline['median']:.0f} MB → "
            f"ratio {size['ratio_vs_bare_aiohttp']['median']:.1f}×{per_sub}; ready in "
            f"{size['ready_s']['median']:.1f} s"
        )
    largest = sizes[-1]
    argv = [sys.executable, "-m", "bench.memory_breakdown", "--subscriptions", str(largest["subscriptions"])]
    breakdown = await run_json_process(argv, 300)
    parts = breakdown["kib_per_subscription"]
    ctx.say(
        f"memory per subscription at {largest['subscriptions']:,}: "
        + "; ".join(f"{name} {kib:.1f} KiB" for name, kib in parts.items())
        + f" (total {breakdown['total_kib_per_subscription']:.1f} KiB)"
    )
    measured = largest["rss_mb"]["median"]
    goals = [
        goal(
            f"RSS with {largest['subscriptions']:,} subscriptions",
            f"< {GOAL_MB:g} MB",
            measured,
            met=measured < GOAL_MB,
            unit="MB",
            note=f"peak during load {largest['peak_mb']['median']:.0f} MB",
        )
    ]
    return envelope(NAME, ctx, started, baseline_mb=baseline, sizes=sizes, breakdown=breakdown, goals=goals)
