"""The operator under test: a real `openconnector run` process against the loopback test bed.

Fixtures here are imported by the e2e test modules. Tests are async (their loopback sinks live on the
test's event loop), so kubectl runs in a thread: a blocking subprocess would freeze the sinks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from .testbed import Cluster, TestbedError

ROOT = Path(__file__).resolve().parents[2]
OPENCONNECTOR = Path(sys.executable).parent / "openconnector"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    """`openconnector run` as a child process, with its log kept for failure messages."""

    def __init__(self, cluster: Cluster, workdir: Path, *, kubeconfig: Path | None = None,
                 namespaces: Sequence[str] = (), status_interval: float = 1.0) -> None:  # fmt: skip
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.namespaces = tuple(namespaces)
        self.status_interval = status_interval
        self.log_path = workdir / "operator.log"
        self.port = 0
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        argv = [
            str(OPENCONNECTOR), "run", "--host", "127.0.0.1", "--port", str(self.port), "--health-port", "0",
            "--status-interval", str(self.status_interval), "--drain-seconds", "2",
        ]  # fmt: skip
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                raise TestbedError(f"the operator exited with {self._popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TestbedError(f"the operator was not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        os.killpg(self._popen.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def crds(testbed: Cluster) -> None:
    """Our CRDs, applied exactly as a user would, and Established."""
    testbed.kubectl("apply", "-f", ROOT / "crds", check=True)
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", ROOT / "crds", check=True)


@pytest.fixture(scope="session")
def operator(
    testbed: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(testbed, tmp_path_factory.mktemp("operator"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def kubectl(cluster: Cluster, *args: str | Path, input: str | None = None,
                  check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return await asyncio.to_thread(cluster.kubectl, *args, input=input, check=check)


async def apply(cluster: Cluster, namespace: str, *documents: dict[str, Any]) -> None:
    await kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))


async def get_json(cluster: Cluster, namespace: str, *what: str) -> Any:
    result = await kubectl(cluster, "get", "-n", namespace, *what, "-o", "json")
    return orjson.loads(result.stdout)


async def eventually(check: Any, *, within: float = 10.0, every: float = 0.2, what: str = "condition") -> Any:
    """Poll an async check until it returns something truthy; fail with its last value after ``within``."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {within} s; last value: {last!r}")
        await asyncio.sleep(every)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None
