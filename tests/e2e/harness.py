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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from .testbed import Cluster, TestbedError, kubeconfig_for_token, mint_service_account_token

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
                 namespaces: Sequence[str] = (), status_interval: float = 1.0, drain_seconds: float = 2.0,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.namespaces = tuple(namespaces)
        self.status_interval = status_interval
        self.drain_seconds = drain_seconds
        self.extra_args = tuple(extra_args)
        # The status shards' Leases live where the chart grants them (a pod gets this from the downward API).
        self.env = {"POD_NAMESPACE": RELEASE_NAMESPACE, **(env or {})}
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
            "--status-interval", str(self.status_interval), "--drain-seconds", str(self.drain_seconds),
        ]  # fmt: skip
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        argv += self.extra_args
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
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


CHART = ROOT / "charts" / "openconnector-operator"
RELEASE = "openconnector"
RELEASE_NAMESPACE = "openconnector-system"


@dataclass(frozen=True)
class ChartInstall:
    """The Helm chart rendered and applied to the test bed (no pods run: there is no kubelet)."""

    documents: list[dict[str, Any]]
    service_account: str
    namespace: str
    kubeconfig: Path  # authenticates as the chart's ServiceAccount (TokenRequest API)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def cluster_role_rules(self) -> list[dict[str, Any]]:
        roles = [d for d in self.documents if d.get("kind") == "ClusterRole"]
        return [rule for role in roles for rule in role.get("rules", [])]

    def role_rules(self) -> list[dict[str, Any]]:
        """Namespaced grants (the status shards' Leases in the release namespace)."""
        roles = [d for d in self.documents if d.get("kind") == "Role"]
        return [rule for role in roles for rule in role.get("rules", [])]


@pytest.fixture(scope="session")
def chart_install(testbed: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory) -> ChartInstall:
    """helm template | kubectl apply --dry-run=server, then for real; a token for its ServiceAccount."""
    rendered = testbed.helm("template", RELEASE, CHART, "--namespace", RELEASE_NAMESPACE, check=True).stdout
    testbed.kubectl("create", "namespace", RELEASE_NAMESPACE, check=True)
    testbed.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=True)
    testbed.kubectl("apply", "-f", "-", input=rendered, check=True)
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    account = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]["name"]
    # RBAC is enforced from an informer cache: wait until the new binding is seen, as a pod started
    # later would find it, so the RBAC proof does not count a propagation race as a missing rule.
    user = f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}"
    deadline = time.monotonic() + 30
    while (
        testbed.kubectl("auth", "can-i", "create", "events", "-n", "default", "--as", user).stdout.strip()
        != "yes"
    ):
        if time.monotonic() > deadline:
            raise TestbedError(f"the chart's role binding for {user} did not take effect within 30 s")
        time.sleep(0.2)
    token = mint_service_account_token(testbed.kubeconfig, RELEASE_NAMESPACE, account)
    kubeconfig = kubeconfig_for_token(
        testbed.kubeconfig, token, tmp_path_factory.mktemp("chart-identity") / "kubeconfig"
    )
    return ChartInstall(documents, account, RELEASE_NAMESPACE, kubeconfig)


@pytest.fixture(scope="session")
def operator(
    testbed: Cluster, chart_install: ChartInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator under test, running with nothing but the Helm chart's ServiceAccount and role."""
    process = OperatorProcess(
        testbed, tmp_path_factory.mktemp("operator"), kubeconfig=chart_install.kubeconfig
    )
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


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None
