"""Instructions per request on ``/events``: the gateway against the bare accept server, counted by valgrind.

    python -m bench.instructions                       # binary and structured, 2,000 requests each
    python -m bench.instructions --gateway-operator /tmp/old/operator --mode binary   # another version

Throughput ratios on two shared, noisy cores move by ±0.05 between runs (docs/benchmarks.md). This counts
instead what does not depend on the clock: the user-space instructions each server executes per request
(callgrind's ``Ir``; the kernel's share, the same socket calls for both, is not counted). Each server runs
under ``valgrind --tool=callgrind`` with counting off; after a warm-up the count is switched on
(``callgrind_control -i on``) for exactly ``--requests`` requests from a client in this process, then
dumped. Two runs of the same tree agree to well under 1 %, so a change of a few hundred instructions per
request shows, which a throughput A/B cannot resolve. Not part of ``make bench`` (it needs valgrind, and a
server under valgrind starts in about half a minute). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Proc, free_port, spawn, stop_all, wait_http
from bench.manifests import ingest_manifests, write_dir
from bench.payloads import sample_body

MODES = ("binary", "structured")
CONNECTIONS = 4


def callgrind_total(text: str) -> int:
    """The instruction count of a callgrind dump (its ``totals:`` line, else ``summary:``)."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("totals", "summary") and value.strip():
            found[key] = int(value.split()[0])
    if not found:
        raise ValueError("not a callgrind dump: no totals or summary line")
    return found.get("totals", found.get("summary", 0))


def under_callgrind(argv: Sequence[str], out_file: Path) -> list[str]:
    """``argv`` run by callgrind with counting off until ``callgrind_control -i on``."""
    return [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}", *argv,
    ]  # fmt: skip


async def send(url: str, mode: str, requests: int) -> None:
    """Exactly ``requests`` 1 KB CloudEvents to ``url``; raises unless every one is answered 202."""
    headers, body = sample_body(mode, 1024)
    remaining = iter(range(requests))
    refused: list[int] = []
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for _ in remaining:
                async with session.post(url, data=body, headers=headers) as reply:
                    await reply.read()
                    if reply.status != 202:
                        refused.append(reply.status)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    if refused:
        raise RuntimeError(f"{len(refused)} of {requests} requests were not accepted: {sorted(set(refused))}")


def _last_dump(out_file: Path) -> str | None:
    """The text of the last dump ``callgrind_control -d`` wrote next to ``out_file`` (``<name>.<n>``)."""
    dumps = [p for p in out_file.parent.glob(f"{out_file.name}.*") if p.suffix[1:].isdigit()]
    return max(dumps, key=lambda p: int(p.suffix[1:])).read_text() if dumps else None


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=60)


async def count(
    name: str,
    argv: Sequence[str],
    port: int,
    mode: str,
    requests: int,
    work: Path,
    pythonpath: str | None = None,
) -> float:
    """Instructions per request of the server ``argv`` (listening on ``port``) under ``mode``'s load;
    ``pythonpath``: put first on its path (another version's package, for an A/B of two trees)."""
    out_file = work / f"callgrind-{name}-{mode}.out"
    command = under_callgrind(argv, out_file)
    if pythonpath:  # outside valgrind: it does not follow an exec
        command = ["env", f"PYTHONPATH={pythonpath}", *command]
    proc: Proc = spawn(f"{name}-{mode}", command, port, work)
    try:
        await wait_http(proc, "/healthz", within=300)
        url = f"{proc.url}/events"
        await send(url, mode, 300)  # warm: first-use caches, lazily bound metrics, the loop's buffers
        _control(proc.pid, "-i", "on")
        await send(url, mode, requests)
        _control(proc.pid, "-i", "off")
        _control(proc.pid, "-d")
        dumped = _last_dump(out_file)
        if dumped is None:
            raise RuntimeError(f"callgrind wrote no dump for {name}:\n{proc.log_tail()}")
        return callgrind_total(dumped) / requests
    finally:
        stop_all([proc])


def gateway_argv(manifests: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "openconnector.cli", "--log-level", "WARNING", "serve", "--manifests",
        str(manifests), "--host", "127.0.0.1", "--port", str(port), "--event-loop", "uvloop",
    ]  # fmt: skip


def baseline_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.servers", "accept", "--port", str(port), "--loop", "uvloop"]


async def run(modes: Sequence[str], requests: int, gateway_operator: str | None) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError("valgrind is missing: apt-get install -y valgrind")
    found: dict[str, Any] = {"requests": requests, "loop": "uvloop", "modes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        work = Path(scratch)
        # No subscription, as in the ingress benchmark: parse, checks, accept.
        manifests = write_dir(work / "manifests", ingest_manifests("http://127.0.0.1:9", subscriptions=0))
        for mode in modes:
            port = free_port()
            argv = gateway_argv(manifests, port)
            gateway = await count("gateway", argv, port, mode, requests, work, gateway_operator)
            port = free_port()
            baseline = await count("baseline", baseline_argv(port), port, mode, requests, work)
            found["modes"][mode] = {
                "gateway": round(gateway),
                "baseline": round(baseline),
                "gateway_per_baseline": gateway / baseline,
            }
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--mode", action="append", choices=MODES, default=[], help="default: both")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--gateway-operator", help="measure the gateway of this operator/ directory instead")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.mode or MODES, args.requests, args.gateway_operator))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
