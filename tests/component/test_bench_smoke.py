"""Every benchmark runs end to end at a tiny size and writes well-formed results (no timing asserted).

The benchmarks start real processes on 127.0.0.1 (gateway, baselines, sink, load generator); the
reconcile one also starts the loopback kube-apiserver test bed, so it is marked e2e.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.context import TINY, Context
from bench.run import BENCHMARKS, main, run_benchmarks, select


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _spread_ok(s: dict[str, Any]) -> None:
    assert s["n"] >= 1
    assert s["min"] <= s["median"] <= s["max"]
    assert len(s["values"]) == s["n"]


async def _run(name: str, tmp_path: Path, loadgen: str = "auto") -> dict[str, Any]:
    ctx = Context(TINY, tmp_path / "results", tmp_path / "work", loadgen, quiet=True)
    results = await run_benchmarks([name], ctx)
    written: dict[str, Any] = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert written == json.loads(json.dumps(results[name]))  # what was returned is what was written
    assert written["benchmark"] == name
    assert "error" not in written, written.get("traceback")
    assert written["size"] == "tiny"
    assert all(math.isfinite(x) for x in _numbers(written))
    assert written["log"], "every benchmark prints its figures"
    return written


def _goals_ok(result: dict[str, Any]) -> None:
    assert result["goals"]
    for g in result["goals"]:
        assert set(g) == {"goal", "target", "measured", "unit", "met", "note"}
        assert g["measured"] is not None
        assert g["met"] in (True, False)


async def test_ingest(tmp_path: Path) -> None:
    result = await _run("ingest", tmp_path)
    assert set(result["per_size"]) == {str(s) for s in TINY.payload_sizes}
    for size in result["per_size"].values():
        _spread_ok(size["ratio"])
        _spread_ok(size["cpu_ratio"])
        assert size["lost"] == {"gateway": 0, "baseline": 0}
    runs = result["closed_loop"]
    assert {r["system"] for r in runs} == {"gateway", "baseline"}
    assert all(r["accepted"] > 0 and r["errors"] == 0 for r in runs)
    assert all(r["delivered_total"] >= r["accepted"] for r in runs)  # wrk may end with some in flight
    open_runs = result["open_loop"]
    assert all(r["accepted"] == int(TINY.open_rate * TINY.open_duration_s) for r in open_runs)
    _spread_ok(result["open"]["added_us"]["p99"])
    _goals_ok(result)


async def test_ingress_with_the_python_load_generator(tmp_path: Path) -> None:
    result = await _run("ingress", tmp_path, loadgen="python")
    assert set(result["http"]) == {"binary", "structured"}
    assert all(r["tool"] == "python" and r["accepted"] > 0 for r in result["runs"])
    assert all(s["errors"] == {"gateway": 0, "baseline": 0} for s in result["http"].values())
    for mode in ("binary", "structured"):
        timings = result["micro"][mode]["ns_per_event"]
        assert set(timings) == {"json.loads", "orjson.loads", "parse_http", "parse_http+check_nlgov"}
        _spread_ok(timings["parse_http"])


async def test_fanout(tmp_path: Path) -> None:
    result = await _run("fanout", tmp_path)
    summary = result["summary"]
    assert summary["subscriptions"] == TINY.fanout_subscriptions
    _spread_ok(summary["ratio"])
    assert summary["lost"] == {"1": 0, str(TINY.fanout_subscriptions): 0}
    fanned = [r for r in result["runs"] if r["system"] == str(TINY.fanout_subscriptions)]
    assert all(r["delivered_total"] >= r["accepted"] * TINY.fanout_subscriptions for r in fanned)


async def test_match(tmp_path: Path) -> None:
    result = await _run("match", tmp_path)
    main_ = result["main"]
    assert main_["subscriptions"] == TINY.match_subscriptions
    assert main_["candidates_per_event"] == 10
    assert 0 < main_["matches_per_event"] <= main_["candidates_per_event"]
    assert [p["subscriptions"] for p in result["scaling"]] == list(TINY.scaling_subscriptions)
    _goals_ok(result)


async def test_memory(tmp_path: Path) -> None:
    result = await _run("memory", tmp_path)
    assert [s["subscriptions"] for s in result["sizes"]] == list(TINY.memory_subscriptions)
    assert all(s["peak_mb"]["median"] >= s["rss_mb"]["median"] > 0 for s in result["sizes"])
    breakdown = result["breakdown"]
    assert breakdown["subscriptions"] == TINY.memory_subscriptions[-1]
    assert len(breakdown["kib_per_subscription"]) == 4
    _goals_ok(result)


async def test_profile(tmp_path: Path) -> None:
    result = await _run("profile", tmp_path)
    assert set(result["scenarios"]) == {"webhook", "events", "proxy"}
    for name, scenario in result["scenarios"].items():
        frames = scenario["frames"]
        assert frames["self"]
        assert 0 < sum(f["share"] for f in frames["self"]) <= 1.0001
        assert math.isclose(sum(frames["owners"].values()), frames["sampled_s"], rel_tol=1e-6)
        # only the gateway runs the gateway's code
        assert bool(frames["gateway_functions"]) == (name != "proxy")
        assert scenario["tree"]
        assert scenario["load"]["delivered_total"] >= scenario["load"]["accepted"] > 0
    split = result["us_per_delivery_by_owner"]
    assert "openconnector (the gateway's own code)" in split["gateway_webhook"]
    assert "openconnector (the gateway's own code)" not in split["proxy"]


@pytest.mark.e2e
async def test_reconcile(tmp_path: Path) -> None:
    result = await _run("reconcile", tmp_path)
    (round_,) = result["rounds"]
    assert round_["apply"]["live"] == round_["apply"]["resources"] == TINY.reconcile_resources
    assert round_["apply"]["failures"] == 0
    assert round_["apply"]["status_patches"] >= TINY.reconcile_resources  # one per new resource at least
    assert round_["steady"]["delivered"] == round_["steady"]["accepted"] > 0
    assert round_["apply"]["watch_events"]["ADDED"] >= TINY.reconcile_resources
    _goals_ok(result)


def test_report_renders_from_results(tmp_path: Path) -> None:
    """The report and plots come from whatever results exist; a failed benchmark is shown as failed."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "fanout.json").write_text(json.dumps({"benchmark": "fanout", "error": "RuntimeError: boom"}))
    docs = tmp_path / "docs" / "benchmarks.md"
    assert main(["--only", "match", "--size", "tiny", "--quiet", "--results-dir", str(results),
                 "--docs", str(docs), "--img-dir", str(tmp_path / "docs" / "img")]) == 0  # fmt: skip
    text = docs.read_text()
    assert "## Goals" in text
    assert "## Matching" in text
    assert "`fanout` failed: `RuntimeError: boom`" in text
    assert "Not run yet." in text  # e.g. ingest, which was never run here
    plot = tmp_path / "docs" / "img" / "bench-match-scaling.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "(img/bench-match-scaling.png)" in text


def test_selection() -> None:
    assert select([], []) == list(BENCHMARKS)
    assert select(["memory", "match"], []) == ["match", "memory"]
    assert "reconcile" not in select([], ["reconcile"])
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        select(["nope"], [])
