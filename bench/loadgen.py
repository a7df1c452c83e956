"""Load generators, always in a process of their own: wrk (preferred, C) or an aiohttp client process.

Both stamp every body with CLOCK_MONOTONIC (see bench.payloads) and report, as one JSON object:
``tool``, ``requests`` (completed), ``ok`` (2xx), ``errors`` (non-2xx, socket errors, timeouts),
``duration_s`` and ``latency_us`` (response latency percentiles). Every run is bounded in time and, for
the Python generator, in request count too.

``python -m bench.loadgen closed|open URL ...`` runs the Python generator; :func:`run_load` picks one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import RESULT_PREFIX, run_json_process
from bench.manifests import type_name
from bench.payloads import BodyTemplate, template
from bench.stats import percentiles


@dataclass(frozen=True)
class LoadSpec:
    """One load run. ``rate`` 0 is closed loop (``connections`` requests in flight, as fast as answered);
    a positive ``rate`` is open loop: requests leave on a fixed schedule whatever the answers do."""

    url: str
    fmt: str = "json"
    size: int = 1024
    connections: int = 32
    duration: float = 5.0
    rate: float = 0.0
    max_requests: int = 2_000_000
    types: int = 0  # > 0: cycle the CloudEvents type over bench.manifests.type_name(0..types-1)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def choose_tool(preference: str, spec: LoadSpec) -> str:
    """wrk for closed loops when installed (cheaper per request than any Python client); open loops and
    per-request type cycling always use the Python generator, which keeps an exact schedule."""
    if preference == "python" or spec.rate > 0 or spec.types > 0:
        return "python"
    if preference == "wrk" and not wrk_available():
        raise RuntimeError("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    return "wrk" if wrk_available() else "python"


async def run_load(spec: LoadSpec, preference: str = "auto") -> dict[str, Any]:
    """Run one bounded load in a separate process and return its JSON report."""
    tool = choose_tool(preference, spec)
    if tool == "wrk":
        return await _run_wrk(spec)
    argv = [
        sys.executable, "-m", "bench.loadgen", "open" if spec.rate > 0 else "closed", spec.url,
        "--fmt", spec.fmt, "--size", str(spec.size), "--connections", str(spec.connections),
        "--duration", str(spec.duration), "--rate", str(spec.rate),
        "--max-requests", str(spec.max_requests), "--types", str(spec.types),
    ]  # fmt: skip
    return await run_json_process(argv, spec.duration + 60)


# ----------------------------------------------------------------------------------------------- wrk


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def wrk_script(tpl: BodyTemplate, path: str) -> str:
    headers = {"Content-Type": tpl.content_type, **tpl.headers}
    header_lines = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    return f"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local seq = 0
local path = {_lua_string(path)}
local headers = {{ {header_lines} }}
local prefix, middle, suffix = {_lua_string(tpl.prefix)}, {_lua_string(tpl.middle)}, {_lua_string(tpl.suffix)}

request = function()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, as time.monotonic_ns() in the sink
  seq = seq + 1
  local t = string.format("%d", tonumber(ts.tv_sec) * 1000000000 + tonumber(ts.tv_nsec))
  return wrk.format("POST", path, headers, prefix .. t .. middle .. seq .. suffix)
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    '{RESULT_PREFIX}{{"tool":"wrk","requests":%d,"ok":%d,"errors":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"duration_s":%.6f,"latency_us":{{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,' ..
    '"max":%d,"mean":%.1f}}}}\\n',
    summary.requests, summary.requests - e.status, errors, e.status,
    e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


async def _run_wrk(spec: LoadSpec) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(spec.url)
    path = parts.path or "/"
    base = f"{parts.scheme}://{parts.netloc}"
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        script = Path(scratch) / "load.lua"
        script.write_text(wrk_script(template(spec.fmt, spec.size), path))
        seconds = max(1, round(spec.duration))
        argv = [
            "wrk", "-t1", f"-c{spec.connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(script), base + path,
        ]  # fmt: skip
        return await run_json_process(argv, seconds + 60)


# ------------------------------------------------------------------------------- the Python generator


class _Recorder:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.ok = 0
        self.errors = 0
        self.status: dict[str, int] = {}

    def record(self, status: int | None, latency_s: float) -> None:
        self.latencies_us.append(latency_s * 1e6)
        key = str(status) if status is not None else "error"
        self.status[key] = self.status.get(key, 0) + 1
        if status is not None and 200 <= status < 300:
            self.ok += 1
        else:
            self.errors += 1

    def report(self, duration: float, late: int = 0) -> dict[str, Any]:
        pct = percentiles(self.latencies_us, (50, 90, 99, 99.9))
        lat = {f"p{k:g}": v for k, v in pct.items()}
        lat["max"] = max(self.latencies_us, default=0.0)
        lat["mean"] = sum(self.latencies_us) / len(self.latencies_us) if self.latencies_us else 0.0
        return {
            "tool": "python",
            "requests": len(self.latencies_us),
            "ok": self.ok,
            "errors": self.errors,
            "status": self.status,
            "late": late,
            "duration_s": duration,
            "latency_us": lat,
        }


def _templates(fmt: str, size: int, types: int) -> list[BodyTemplate]:
    if types > 0:
        return [template(fmt, size, type_name(i)) for i in range(types)]
    return [template(fmt, size)]


async def _send(
    session: aiohttp.ClientSession, url: str, tpl: BodyTemplate, t_ns: int, seq: int, rec: _Recorder
) -> None:
    headers = {"Content-Type": tpl.content_type, **tpl.headers}
    status: int | None = None
    try:
        async with session.post(url, data=tpl.render(t_ns, seq), headers=headers) as reply:
            await reply.read()
            status = reply.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        status = None
    rec.record(status, (time.monotonic_ns() - t_ns) / 1e9)


async def closed_loop(args: argparse.Namespace) -> dict[str, Any]:
    templates = _templates(args.fmt, args.size, args.types)
    rec = _Recorder()
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=10)
    counter = iter(range(args.max_requests))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        deadline = started + args.duration

        async def worker() -> None:
            for seq in counter:
                if time.monotonic() >= deadline:
                    return
                tpl = templates[seq % len(templates)]
                await _send(session, args.url, tpl, time.monotonic_ns(), seq, rec)

        await asyncio.gather(*(worker() for _ in range(args.connections)))
        return rec.report(time.monotonic() - started)


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    """A fixed schedule; latency counts from the *intended* send time, so a stalled system cannot hide
    its stall by slowing the generator down (no coordinated omission)."""
    templates = _templates(args.fmt, args.size, args.types)
    rec = _Recorder()
    total = min(args.max_requests, int(args.rate * args.duration))
    interval_ns = int(1e9 / args.rate)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=10)
    tasks: set[asyncio.Task[None]] = set()
    late = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start_ns = time.monotonic_ns() + 50_000_000
        for seq in range(total):
            due = start_ns + seq * interval_ns
            wait = (due - time.monotonic_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.005:
                late += 1
            task = asyncio.create_task(
                _send(session, args.url, templates[seq % len(templates)], due, seq, rec)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        return rec.report((time.monotonic_ns() - start_ns) / 1e9, late)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("url")
    parser.add_argument("--fmt", default="json")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--types", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.", "http://localhost")):
        parser.error("load is only ever sent to loopback addresses")
    if args.mode == "open" and args.rate <= 0:
        parser.error("open loop needs --rate > 0")
    runner = open_loop if args.mode == "open" else closed_loop
    report = asyncio.run(runner(args))
    sys.stdout.write(RESULT_PREFIX + json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing is left to flush, and it can take seconds


if __name__ == "__main__":
    sys.exit(main())
