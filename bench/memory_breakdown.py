"""Where a standalone gateway's memory per subscription goes, step by step, in a fresh process.

``python -m bench.memory_breakdown --subscriptions N`` walks the standalone pipeline for N generated
subscriptions and prints, as JSON, the RSS growth of each step (after a full GC): loading the manifests,
compiling the routing table, installing it in the gateway (delivery targets and lanes) and the first
health tick (which keeps no per-subscription series: the gauges are computed when scraped). RSS is what
the kernel charges; memory freed by one step and reused by the next makes later steps look cheaper, so
the figures are approximate, the order fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import RESULT_PREFIX, rss_kib
from bench.manifests import filtered_subscriptions, ingest_manifests, types_for, write_dir
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.manifests import load_manifests
from openconnector.routing.compiler import compile_table


def _rss() -> int:
    gc.collect()
    return rss_kib(os.getpid())["VmRSS"]


async def breakdown(count: int) -> dict[str, Any]:
    steps: dict[str, float] = {}
    keep: list[Any] = []

    def step(name: str, action: Callable[[], Any]) -> Any:
        before = _rss()
        result = action()
        keep.append(result)
        steps[name] = (_rss() - before) / max(count, 1)
        return result

    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as scratch:
        docs = ingest_manifests("http://127.0.0.1:9", subscriptions=0)
        docs += filtered_subscriptions(count, types_for(count), "http://127.0.0.1:9/deliver")
        directory = write_dir(Path(scratch), docs)
        del docs
        gateway = Gateway(GatewaySettings(port=0))
        await gateway.start()
        start_kib = _rss()
        # What the store keeps: the resources (the parsed documents are let go, as ``serve`` does).
        loaded = step(
            "load manifests (specs kept in the store)", lambda: tuple(load_manifests([directory]).resources)
        )
        resources = {r.key: r for r in loaded}
        table = step("compile the routing table", lambda: compile_table(resources, {}, version=1))
        step("install: delivery targets and lanes", lambda: gateway.install(table))
        step("first health tick (the per-subscription gauges are computed at scrape time)", gateway.tick)
        total = (_rss() - start_kib) / max(count, 1)
        await gateway.close()
    return {"subscriptions": count, "kib_per_subscription": steps, "total_kib_per_subscription": total}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_breakdown")
    parser.add_argument("--subscriptions", type=int, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(breakdown(args.subscriptions))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
