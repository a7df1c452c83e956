"""``python -m bench.run``: run the benchmarks, write bench/results/*.json and docs/benchmarks.md.

    python -m bench.run                          # everything, full size (what `make bench` runs)
    python -m bench.run --only match --only memory
    python -m bench.run --skip reconcile         # e.g. where no kube-apiserver can be built
    python -m bench.run --size tiny --no-docs    # seconds; what the smoke test runs

A benchmark that fails is recorded as such (its JSON says why) and the others still run; the exit code
is 1 when any failed. Goals that are missed do not fail the run: the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bench import bus, fanout, ingest, ingress, match, memory, messages, profiling, reconcile, replicas
from bench.context import CONFIGS, Context, envelope
from bench.harness import REPO
from bench.report import write_report

Benchmark = Callable[[Context], Awaitable[dict[str, Any]]]

# In run order: pure first, then HTTP, then the apiserver (slowest to set up, most likely unavailable).
BENCHMARKS: dict[str, Benchmark] = {
    "match": match.run,
    "ingress": ingress.run,
    "ingest": ingest.run,
    "bus": bus.run,
    "fanout": fanout.run,
    "memory": memory.run,
    "messages": messages.run,
    "profile": profiling.run,
    "reconcile": reconcile.run,
    "replicas": replicas.run,
}

DEFAULT_RESULTS = REPO / "bench" / "results"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DEFAULT_IMG = REPO / "docs" / "img"


def select(only: Sequence[str], skip: Sequence[str]) -> list[str]:
    for name in (*only, *skip):
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if (not only or name in only) and name not in skip]


async def run_benchmarks(names: Sequence[str], ctx: Context) -> dict[str, dict[str, Any]]:
    """Run each benchmark, write its JSON as soon as it finishes; a failure is recorded, not raised."""
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        ctx.say(f"== {name}")
        began = time.monotonic()
        started = datetime.datetime.now(datetime.UTC)
        try:
            result = await BENCHMARKS[name](ctx)
        except Exception as error:
            ctx.say(f"!! {name} failed: {type(error).__name__}: {error}")
            result = envelope(
                name,
                ctx,
                started,
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc().splitlines()[-30:],
            )
        result["elapsed_s"] = time.monotonic() - began
        result["log"] = [line for line in ctx.lines if not line.startswith("==")][-40:]
        ctx.lines.clear()
        (ctx.results_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        results[name] = result
        ctx.say(f"   {name} took {result['elapsed_s']:.0f} s")
    return results


def goal_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for result in results.values():
        for g in result.get("goals", []):
            verdict = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
            measured = "—" if g["measured"] is None else f"{g['measured']:.3g} {g['unit']}".strip()
            lines.append(f"  [{verdict:>12}] {g['goal']}: {measured} (goal {g['target']})")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave NAME out")
    parser.add_argument("--size", choices=sorted(CONFIGS), default="full", help="full (default) or tiny")
    parser.add_argument("--repeats", type=int, help="override the number of repetitions")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="the Markdown report to write")
    parser.add_argument("--img-dir", type=Path, default=DEFAULT_IMG, help="where the PNG plots go")
    parser.add_argument("--no-docs", action="store_true", help="write only the JSON results")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--loop", action="append", choices=["uvloop", "asyncio"], default=[],
        help="event loop of the gateway and baselines in ingest and ingress (repeatable; the first is "
        "measured in full, the others at 1 KB; default: uvloop, then asyncio)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = select(args.only, args.skip)
    except ValueError as error:
        parser.error(str(error))
    config = CONFIGS[args.size]
    if args.repeats:
        config = dataclasses.replace(config, repeats=args.repeats, reconcile_repeats=args.repeats)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        ctx = Context(config, args.results_dir, Path(work), args.loadgen, args.quiet)
        if args.loop:
            ctx.loops = tuple(dict.fromkeys(args.loop))
        results = asyncio.run(run_benchmarks(names, ctx))
    if not args.no_docs:
        written = write_report(args.results_dir, args.docs, args.img_dir)
        ctx.say(f"wrote {args.docs} and {len(written)} plot(s) in {args.img_dir}")
    ctx.say(f"goals ({time.monotonic() - began:.0f} s in total):")
    for line in goal_lines(results):
        ctx.say(line)
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        ctx.say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
