"""``openconnector serve --bus jetstream`` as a real child process, plus the manifests it serves.

The gateway runs in its own process (its own session, so SIGKILL takes exactly it), pointed at a
generated manifest directory: one Event and one EventSubscription that delivers to a loopback
:class:`~tests.jetstream.countingsink.CountingSink`. Its port is fixed when it is created, so a restart
listens where the publisher already sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.jetstream.natscluster import HOST, free_ports

API = "openconnector.nl/v1alpha1"
EVENT_TYPE = "nl.test.jetstream.thing.happened"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:jetstream-test"
SUBSCRIPTION = "to-counting-sink"
STREAM = "OPENCONNECTOR"


def write_manifests(
    directory: Path,
    endpoint: str,
    *,
    delivery: Mapping[str, Any],
    content_mode: str = "binary",
) -> Path:
    """One Event (lax CloudEvents profile) and one subscription to ``endpoint`` with ``delivery``."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = [
        {
            "apiVersion": API,
            "kind": "Event",
            "metadata": {"name": "thing-happened"},
            "spec": {"type": EVENT_TYPE, "source": SOURCE, "profile": "cloudevents"},
        },
        {
            "apiVersion": API,
            "kind": "EventSubscription",
            "metadata": {"name": SUBSCRIPTION},
            "spec": {
                "eventType": EVENT_TYPE,
                "endpoint": endpoint,
                "contentMode": content_mode,
                "delivery": dict(delivery),
            },
        },
    ]
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


class GatewayProcess:
    def __init__(
        self,
        name: str,
        manifests: Path,
        nats_urls: str,
        log_dir: Path,
        *,
        replicas: int = 3,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.manifests = manifests
        self.nats_urls = nats_urls
        self.log = log_dir / f"gateway-{name}.log"
        self.replicas = replicas
        self.extra_args = list(extra_args)
        (self.port,) = free_ports(1)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "openconnector.cli", "--log-level", "INFO", "serve",
            "--manifests", str(self.manifests), "--host", HOST, "--port", str(self.port),
            "--drain-seconds", "1",
            "--bus", "jetstream", "--nats-url", self.nats_urls,
            "--jetstream-replicas", str(self.replicas),
            *self.extra_args,
        ]  # fmt: skip

    async def start(self, within: float = 60.0) -> float:
        """Start and wait for /readyz 200; returns the seconds that took."""
        self.spawn()
        return await self.wait_ready(within)

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"===== start {self.starts + 1}: {' '.join(self.argv())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1

    async def readyz(self) -> int | None:
        """The status /readyz answers, or None when nothing answers."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.url}/readyz") as reply,
            ):
                return reply.status
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def wait_readyz(self, status: int, within: float) -> float:
        """Until /readyz answers ``status``; returns the seconds that took."""
        began = time.monotonic()
        while True:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"gateway {self.name} exited {code}:\n{self.log_tail()}")
            if await self.readyz() == status:
                return time.monotonic() - began
            if time.monotonic() - began > within:
                raise RuntimeError(
                    f"gateway {self.name}: /readyz not {status} in {within:.0f}s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)

    async def wait_ready(self, within: float = 60.0) -> float:
        return await self.wait_readyz(200, within)

    def kill(self) -> None:
        """SIGKILL: nothing drained, nothing flushed, as when a pod is OOM-killed."""
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
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace").splitlines()
        return []

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"
