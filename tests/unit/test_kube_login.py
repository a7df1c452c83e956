"""Issue 16: `openconnector run` logs in with the official kubernetes client, as kubectl would, so a
kubeconfig whose user is an exec plugin (EKS, GKE, AKS) yields credentials. No request is sent here:
loading a kubeconfig runs the plugin but contacts no server (tests/e2e/test_exec_kubeconfig.py runs
the operator against the loopback apiserver with such a kubeconfig)."""

from __future__ import annotations

import logging
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import kopf
import pytest
import yaml
from packaging.requirements import Requirement

from openconnector.kube.operator import login_info

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = """\
import json
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "token-from-the-plugin"}}))
"""


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """$KUBECONFIG, read at login (the client itself reads it once, at import)."""
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_an_exec_plugin_kubeconfig_yields_the_plugins_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)],
            "interactiveMode": "Never"}}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    use_kubeconfig(monkeypatch, kubeconfig)
    info = login_info(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))
    assert info is not None
    assert info.server == "https://127.0.0.1:6443"
    assert info.token == "token-from-the-plugin"


def test_no_usable_kubeconfig_means_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_kubeconfig(monkeypatch, tmp_path / "missing")
    assert login_info(settings=kopf.OperatorSettings(), logger=logging.getLogger("test")) is None


def test_runtime_dependencies_are_the_ones_used() -> None:
    runtime = {
        Requirement(r).name
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    assert "kubernetes" in runtime  # used for login
    assert "cloudevents" not in runtime  # the SDK is only a test oracle: a dev dependency
    assert "lark" not in runtime  # never imported
    assert "cloudevents" in {
        Requirement(r).name for r in metadata.requires("openconnector-operator") or [] if "dev" in r
    }
