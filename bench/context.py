"""Sizes of a benchmark run, and what every benchmark gets: config, folders, a printer, the results."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import wrk_available


@dataclass(frozen=True)
class Config:
    """Knobs of one run; ``full`` is what ``make bench`` runs, ``tiny`` what the smoke test runs."""

    name: str
    repeats: int
    warmup_s: float
    duration_s: float
    connections: int
    payload_sizes: tuple[int, ...]
    open_rate: float
    open_duration_s: float
    fanout_subscriptions: int
    fanout_connections: int
    match_subscriptions: int
    match_types: int
    match_events: int
    scaling_subscriptions: tuple[int, ...]
    memory_subscriptions: tuple[int, ...]
    micro_iterations: int
    reconcile_resources: int
    reconcile_rate: float
    reconcile_steady_s: float
    reconcile_repeats: int
    profile_s: float


FULL = Config(
    name="full",
    repeats=5,
    warmup_s=1.0,
    duration_s=4.0,
    connections=32,
    payload_sizes=(1024, 16 * 1024, 64 * 1024),
    open_rate=1000.0,
    open_duration_s=5.0,
    fanout_subscriptions=100,
    fanout_connections=8,
    match_subscriptions=10_000,
    match_types=1_000,
    match_events=20_000,
    scaling_subscriptions=(1, 10, 100, 1_000, 10_000),
    memory_subscriptions=(0, 1_000, 10_000),
    micro_iterations=20_000,
    reconcile_resources=1_000,
    reconcile_rate=500.0,
    reconcile_steady_s=12.0,
    reconcile_repeats=3,
    profile_s=5.0,
)

TINY = Config(
    name="tiny",
    repeats=1,
    warmup_s=0.0,
    duration_s=0.5,
    connections=4,
    payload_sizes=(1024, 16 * 1024),
    open_rate=100.0,
    open_duration_s=0.5,
    fanout_subscriptions=3,
    fanout_connections=2,
    match_subscriptions=200,
    match_types=20,
    match_events=500,
    scaling_subscriptions=(1, 10, 100),
    memory_subscriptions=(0, 20),
    micro_iterations=200,
    reconcile_resources=10,
    reconcile_rate=20.0,
    reconcile_steady_s=1.0,
    reconcile_repeats=1,
    profile_s=1.0,
)

CONFIGS = {"full": FULL, "tiny": TINY}


@dataclass
class Context:
    config: Config
    results_dir: Path
    work_dir: Path
    loadgen: str = "auto"
    quiet: bool = False
    lines: list[str] = field(default_factory=list)
    # The event loops the HTTP benchmarks (ingest, ingress) run the gateway and its baseline on, both on
    # the same loop. The first is the gateway's default (``--event-loop``) and gets the full benchmark;
    # each other loop gets the 1 KB closed loop, reported next to it.
    loops: tuple[str, ...] = ("uvloop", "asyncio")

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def say(self, text: str) -> None:
        """A figure for the terminal (and the run's log): always a ratio or a count with its baseline."""
        self.lines.append(text)
        if not self.quiet:
            print(text, flush=True)


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "wrk": wrk_available(),
    }


def envelope(name: str, ctx: Context, started: datetime.datetime, **body: Any) -> dict[str, Any]:
    """The JSON every benchmark writes to bench/results/<name>.json."""
    return {
        "benchmark": name,
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "size": ctx.config.name,
        "config": asdict(ctx.config),
        "machine": machine(),
        **body,
    }


def goal(
    name: str, target: str, measured: float | None, *, met: bool | None, unit: str = "", note: str = ""
) -> dict[str, Any]:
    """One of the issue's goals: what it asks, what we measured, whether it holds, and why not."""
    return {"goal": name, "target": target, "measured": measured, "unit": unit, "met": met, "note": note}
