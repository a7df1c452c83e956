"""Issue 16: `openconnector run` logs in as kubectl does, so a kubeconfig whose user is an exec plugin
(EKS, GKE and AKS kubeconfigs are) works. Kopf's own kubeconfig reader knows only tokens and
certificates; the official ``kubernetes`` client runs the plugin. The plugin here is a small script
that prints an ExecCredential with a token the loopback apiserver accepts, and counts its runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.polling import eventually

from .harness import OperatorProcess, apply, condition, get_json, kubectl
from .testbed import Cluster

PLUGIN = """\
import json, sys
with open(sys.argv[1], "a") as runs:
    runs.write("run\\n")
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": sys.argv[2]},
}))
"""


def exec_kubeconfig(testbed: Cluster, directory: Path) -> tuple[Path, Path]:
    """A kubeconfig for the test bed whose user is an exec plugin; returns it and the plugin's run log."""
    current = yaml.safe_load(testbed.kubeconfig.read_text())
    cluster: dict[str, Any] = current["clusters"][0]["cluster"]
    plugin = directory / "credential-plugin.py"
    plugin.write_text(PLUGIN)
    runs = directory / "plugin-runs.log"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": "exec-user", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), str(runs), testbed.admin_token],
            "interactiveMode": "Never",
        }}}],
        "contexts": [{"name": "exec", "context": {"cluster": "testbed", "user": "exec-user"}}],
        "current-context": "exec",
    }  # fmt: skip
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, runs


async def test_run_works_with_an_exec_plugin_kubeconfig(
    testbed: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    kubeconfig, runs = exec_kubeconfig(testbed, tmp_path)
    process = OperatorProcess(testbed, tmp_path, kubeconfig=kubeconfig, namespaces=[namespace])
    process.start()
    try:
        assert runs.read_text().count("run") >= 1  # the plugin supplied the credentials
        # A resource created after the start: Kopf's watch sees it and our client writes its status,
        # both with the plugin's token.
        event = {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "Event",
            "metadata": {"name": "exec-login"},
            "spec": {
                "type": "nl.example.exec.login",
                "source": "urn:nld:oin:00000001823288444000:systeem:e2e",
            },
        }
        await apply(testbed, namespace, event)

        async def ready() -> Any:
            ready = condition(await get_json(testbed, namespace, "ocevent", "exec-login"), "Ready")
            return ready if ready and ready["status"] == "True" else None

        await eventually(ready, within=30, what=f"Ready=True written by the operator\n{process.log_tail()}")
    finally:
        process.stop()
    # No Kopf login error in the log.
    log = process.log_path.read_text(errors="replace")
    assert "LoginError" not in log
    assert "Traceback" not in log, process.log_tail()


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator must use only the kubeconfig given to it.
    monkeypatch.delenv("KUBECONFIG", raising=False)


async def test_kubectl_accepts_the_same_kubeconfig(testbed: Cluster, tmp_path: Path) -> None:
    kubeconfig, runs = exec_kubeconfig(testbed, tmp_path)
    result = await kubectl(testbed, "--kubeconfig", str(kubeconfig), "get", "namespaces", "-o", "name")
    assert "namespace/default" in result.stdout
    assert runs.read_text().count("run") >= 1
