"""A/B of two versions of the gateway at the same time: CPU per delivered event, throughput, response p99.

    git archive 163bcd0 operator | tar -x -C /tmp/old
    python -m bench.ab_before_after /tmp/old/operator [NAME=OPERATOR_DIR ...]

The old version runs from ``OLD_OPERATOR_DIR`` (first on its PYTHONPATH), the new one from this checkout,
next to the bare proxy; all take turns (order alternating) under the ingest benchmark's 1 KB closed loop.
Old, new and proxy run on asyncio's loop (the code compared on the same loop); ``new-uvloop`` and
``proxy-uvloop`` add the gateway's default loop (``--event-loop uvloop``) and the proxy on it. Each
``NAME=OPERATOR_DIR`` adds a version in between (one that knows ``--event-loop``), also on asyncio's loop.
Not part of ``make bench``: it needs the old trees. Prints JSON medians.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.context import CONFIGS, Context
from bench.harness import Proc, SinkClient, start_baseline, start_gateway, start_sink, stop_all
from bench.ingest import measure
from bench.loadgen import LoadSpec
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir

REPEATS = 4


async def compare(old_operator: str, between: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """``between``: more versions by name (their operator directories), which know ``--event-loop`` and run
    on asyncio's loop like ``old``, ``new`` and ``proxy``."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    ctx = Context(CONFIGS["full"], scratch / "results", scratch, "auto", True)
    procs: list[Proc] = []
    systems: dict[str, Proc] = {}
    try:
        sink = await start_sink(ctx.log_dir)
        procs.append(sink)
        forward = f"{sink.url}/deliver/baseline"
        manifests = write_dir(
            scratch / "manifests", ingest_manifests(sink.url, max_concurrency=ctx.config.connections)
        )
        os.environ["PYTHONPATH"] = old_operator
        try:  # the old version knows no --event-loop: it runs on asyncio's loop
            systems["old"], _ = await start_gateway(manifests, ctx.log_dir, name="old")
        finally:
            del os.environ["PYTHONPATH"]
        procs.append(systems["old"])
        for name, operator_dir in (between or {}).items():
            os.environ["PYTHONPATH"] = operator_dir
            try:
                systems[name], _ = await start_gateway(manifests, ctx.log_dir, name=name, loop="asyncio")
            finally:
                del os.environ["PYTHONPATH"]
            procs.append(systems[name])
        for loop, suffix in (("asyncio", ""), ("uvloop", "-uvloop")):
            systems["new" + suffix], _ = await start_gateway(manifests, ctx.log_dir, name="new", loop=loop)
            procs.append(systems["new" + suffix])
            systems["proxy" + suffix] = await start_baseline("proxy", ctx.log_dir, forward=forward, loop=loop)
            procs.append(systems["proxy" + suffix])
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in systems}
        for rep in range(REPEATS):
            for name in list(systems) if rep % 2 == 0 else list(reversed(systems)):
                proc = systems[name]
                path = "/ingest" if name.startswith("proxy") else f"/webhooks/{INGEST_ENDPOINT}"
                spec = LoadSpec(proc.url + path, "json", 1024, 32, 4.0)
                found = await measure(ctx, SinkClient(sink), spec, pid=proc.pid)
                p99_ms = float(found["response_latency_us"]["p99"]) / 1000
                rows[name].append((found["cpu_us_per_delivery"] or 0.0, found["delivered_per_s"], p99_ms))
    finally:
        stop_all(procs)
    return {
        name: {
            "cpu_us_per_delivery": statistics.median(r[0] for r in runs),
            "deliveries_per_s": statistics.median(r[1] for r in runs),
            "response_p99_ms": statistics.median(r[2] for r in runs),
            "runs": len(runs),
        }
        for name, runs in rows.items()
    }


def main() -> int:
    between = dict(arg.partition("=")[::2] for arg in sys.argv[2:])
    if len(sys.argv) < 2 or not all(between.values()):
        print(__doc__)
        return 2
    print(json.dumps(asyncio.run(compare(sys.argv[1], between)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
