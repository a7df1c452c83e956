"""Percentiles and the median-and-spread summary of repeated runs. Pure functions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, linearly interpolated; 0.0 if empty."""
    if not ordered:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"q: must be within 0..100, got {q}")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def percentiles(values: Iterable[float], qs: Iterable[float]) -> dict[float, float]:
    ordered = sorted(values)
    return {q: percentile(ordered, q) for q in qs}


def latency_summary(values_us: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max (and the count) of latencies in microseconds."""
    ordered = sorted(values_us)
    summary = {f"p{q:g}": percentile(ordered, q) for q in (50, 90, 99, 99.9)}
    summary["max"] = float(ordered[-1]) if ordered else 0.0
    summary["n"] = float(len(ordered))
    return summary


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and count of one metric over repeated runs."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
        "values": [float(v) for v in values],
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def fmt_spread(s: dict[str, Any], digits: int = 2, unit: str = "") -> str:
    """``1.23 (1.10–1.31, n=3)``; ``—`` when nothing was measured."""
    if not s or s.get("median") is None:
        return "—"
    median, low, high = s["median"], s["min"], s["max"]
    if s.get("n", 0) <= 1:
        return f"{median:,.{digits}f}{unit}"
    return f"{median:,.{digits}f}{unit} ({low:,.{digits}f}–{high:,.{digits}f}, n={s['n']})"
