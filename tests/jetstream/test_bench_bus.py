"""The JetStream-vs-memory benchmark runs end to end at a tiny size and writes well-formed results (its
figures are the benchmark's business; nothing here is timed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from bench.context import TINY, Context
from bench.report import merge_partial, render
from bench.run import run_benchmarks

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(180)]


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int | float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return False


async def test_bus_benchmark_compares_jetstream_memory_and_the_proxy(tmp_path: Path) -> None:
    ctx = Context(TINY, tmp_path / "results", tmp_path / "work", "python", quiet=True)
    await run_benchmarks(["bus"], ctx)
    result: dict[str, Any] = json.loads((tmp_path / "results" / "bus.json").read_text())
    assert "error" not in result, result.get("traceback")
    assert _finite(result)
    runs = result["closed_loop"] + result["open_loop"]
    assert {r["system"] for r in runs} == {"memory", "jetstream", "baseline"}
    assert all(r["accepted"] > 0 and r["errors"] == 0 and r["lost"] == 0 for r in runs)
    assert result["closed"]["ratio_jetstream_memory"]["n"] == TINY.repeats
    assert result["open"]["added_vs_baseline_us"]["p99"]["n"] == TINY.repeats
    assert [g["met"] in (True, False) for g in result["goals"]] == [True, True]
    assert all(r["nats_cpu_us_per_delivery"] for r in result["closed_loop"] if r["system"] == "jetstream")
    text = render({"bus": result}, {}, tmp_path / "benchmarks.md")
    assert "## Durable bus: JetStream vs memory" in text
    assert "one local `nats-server -js`" in text


def test_a_partial_report_keeps_the_other_sections() -> None:
    header = "| goal | target | measured (median) | verdict | note |\n|---|---|---|---|---|\n"
    old = (
        f"# Benchmarks\n\nLast run: then.\n\n## Goals\n\n{header}"
        "| old goal | ≥ 1 | 2 | ✅ met |  |\n| bus goal | ≥ 1 | 0.1 | ❌ missed |  |\n\n"
        "### Where we fall short\n\n- **ingest→deliver: slow.** Because.\n- **durable bus: slow.** Old.\n\n"
        "## ingest → deliver\n\nold ingest figures\n\n## Durable bus: JetStream vs memory\n\nold bus\n"
    )
    new = (
        f"# Benchmarks\n\nLast run: now.\n\n## Goals\n\n{header}"
        "| bus goal | ≥ 1 | 2 | ✅ met |  |\n\n"
        "### Where we fall short\n\nEvery measured goal is met.\n\n"
        "## ingest → deliver\n\nNot run yet.\n\n## Durable bus: JetStream vs memory\n\nnew bus\n"
    )
    merged = merge_partial(new, old, {"bus"})
    assert "Last run: then.\n\nLast partial run: now." in merged
    assert "| old goal | ≥ 1 | 2 | ✅ met |  |\n| bus goal | ≥ 1 | 2 | ✅ met |  |" in merged
    assert "0.1" not in merged
    assert "- **ingest→deliver: slow.** Because." in merged
    assert "durable bus: slow" not in merged, "the bus ran and met its goals: its old finding is gone"
    assert "old ingest figures" in merged
    assert "new bus" in merged
    assert "old bus" not in merged
