"""The chart's event bus values: memory by default, JetStream on request, rendered into the CLI's flags.

Rendered offline with the helm binary of the test bed (as in test_chart.py); the container's arguments
are parsed by the real ``openconnector`` argument parser, so a flag the CLI does not know fails here,
and the Deployment is validated strictly against the Kubernetes schema.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from openconnector.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "openconnector-operator"
RELEASE = "oc"
NAMESPACE = "openconnector-system"
KUBE_VERSION = "1.37.0"
NATS = "nats://nats.nats.svc:4222"
JETSTREAM = ("--set", "bus.type=jetstream", "--set", f"bus.jetstream.url={NATS}")
Manifest = dict[str, Any]


def _testbed_helm() -> Path:
    """helm from tests/e2e/testbed.py (extracted once into the test bed cache), loaded by path."""
    name = "openconnector_chart_bus_testbed"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "e2e" / "testbed.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    binary: Path = module.ensure_helm()
    return binary


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: Mapping[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binary), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
        return subprocess.run(
            command, env=dict(self.env), capture_output=True, text=True, timeout=120, check=False
        )

    def deployment(self, *args: str) -> Manifest:
        done = self.run("--kube-version", KUBE_VERSION, "--show-only", "templates/deployment.yaml", *args)
        assert done.returncode == 0, done.stderr
        (deployment,) = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        assert isinstance(deployment, dict)
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
        return deployment

    def refused(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode != 0, f"helm template {' '.join(args)} rendered, but should have been refused"
        return done.stderr


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return Helm(_testbed_helm(), env)


def pod_of(deployment: Manifest) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def args_of(deployment: Manifest) -> list[str]:
    (container,) = pod_of(deployment)["containers"]
    return list(container["args"])


def mounted_file(deployment: Manifest, path: str) -> tuple[str, str]:
    """(Secret name, key) that the container sees at ``path``; fails when nothing is mounted there."""
    pod = pod_of(deployment)
    (container,) = pod["containers"]
    file = PurePosixPath(path)
    for mount in container["volumeMounts"]:
        if file.parent == PurePosixPath(mount["mountPath"]):
            assert mount.get("readOnly") is True, mount
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            secret = volume["secret"]
            items = {item["path"]: item["key"] for item in secret.get("items", [])}
            return secret["secretName"], items.get(file.name, file.name) if items else file.name
    raise AssertionError(f"nothing is mounted at {file.parent}")


def test_default_is_the_memory_bus_with_nothing_to_mount(helm: Helm) -> None:
    deployment = helm.deployment()
    args = args_of(deployment)
    assert build_parser().parse_args(args).bus == "memory"
    assert not [a for a in args if a.startswith(("--nats", "--jetstream"))]
    assert {v["name"] for v in pod_of(deployment)["volumes"]} == {"tmp"}


def test_jetstream_passes_every_setting_as_its_flag(helm: Helm) -> None:
    args = args_of(helm.deployment(*JETSTREAM))
    parsed = build_parser().parse_args(args)
    assert parsed.bus == "jetstream"
    assert parsed.nats_url == NATS
    assert parsed.nats_creds is None
    assert parsed.jetstream_replicas == 3
    assert parsed.jetstream_storage == "file"
    assert parsed.jetstream_stream == "OPENCONNECTOR"
    # The defaults of values.yaml, as the CLI receives them (it parses the durations itself).
    assert {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--jetstream-")} == {
        "--jetstream-stream": "OPENCONNECTOR",
        "--jetstream-replicas": "3",
        "--jetstream-storage": "file",
        "--jetstream-max-bytes": "-1",
        "--jetstream-max-age": "168h",
        "--jetstream-duplicate-window": "2m",
    }


def test_jetstream_limits_are_rendered_exactly(helm: Helm) -> None:
    args = args_of(
        helm.deployment(
            *JETSTREAM,
            "--set", "bus.jetstream.replicas=1",
            "--set", "bus.jetstream.storage=memory",
            "--set", "bus.jetstream.maxBytes=10737418240",  # 10 GiB: no float notation in the flag
            "--set", "bus.jetstream.maxAge=P14D",
            "--set", "bus.jetstream.duplicateWindow=PT10M",
            "--set", "bus.jetstream.stream=TENANT_A",
        )
    )  # fmt: skip
    parsed = build_parser().parse_args(args)
    assert (parsed.jetstream_replicas, parsed.jetstream_storage) == (1, "memory")
    assert parsed.jetstream_stream == "TENANT_A"
    assert "--jetstream-max-bytes=10737418240" in args
    assert "--jetstream-max-age=P14D" in args
    assert "--jetstream-duplicate-window=PT10M" in args


def test_credentials_and_tls_secrets_are_mounted_where_the_flags_point(helm: Helm) -> None:
    deployment = helm.deployment(
        *JETSTREAM,
        "--set", "bus.jetstream.credentialsSecret=nats-user",
        "--set", "bus.jetstream.credentialsKey=user.creds",
        "--set", "bus.jetstream.tlsSecret=nats-client-tls",
        "--set", "bus.jetstream.tlsClientCert=true",
    )  # fmt: skip
    parsed = build_parser().parse_args(args_of(deployment))
    assert mounted_file(deployment, parsed.nats_creds) == ("nats-user", "user.creds")
    assert mounted_file(deployment, parsed.nats_tls_ca) == ("nats-client-tls", "ca.crt")
    assert mounted_file(deployment, parsed.nats_tls_cert) == ("nats-client-tls", "tls.crt")
    assert mounted_file(deployment, parsed.nats_tls_key) == ("nats-client-tls", "tls.key")


def test_tls_without_a_client_certificate_passes_only_the_ca(helm: Helm) -> None:
    deployment = helm.deployment(*JETSTREAM, "--set", "bus.jetstream.tlsSecret=nats-ca")
    parsed = build_parser().parse_args(args_of(deployment))
    assert mounted_file(deployment, parsed.nats_tls_ca) == ("nats-ca", "ca.crt")
    assert (parsed.nats_tls_cert, parsed.nats_tls_key) == (None, None)


def test_jetstream_settings_are_ignored_with_the_memory_bus(helm: Helm) -> None:
    deployment = helm.deployment(
        "--set", f"bus.jetstream.url={NATS}", "--set", "bus.jetstream.credentialsSecret=nats-user"
    )  # fmt: skip
    assert build_parser().parse_args(args_of(deployment)).bus == "memory"
    assert {v["name"] for v in pod_of(deployment)["volumes"]} == {"tmp"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--set", "bus.type=jetstream"], "bus.type=jetstream needs bus.jetstream.url"),
        (
            [*JETSTREAM, "--set", "bus.jetstream.tlsClientCert=true"],
            "tlsClientCert needs bus.jetstream.tlsSecret",
        ),
        (["--set", "bus.type=kafka"], "type"),
        (["--set", "bus.jetstream.storage=disk"], "storage"),
        (["--set", "bus.jetstream.replicas=0"], "replicas"),
        (["--set", "bus.jetstream.maxAge=7 days"], "maxAge"),
        (["--set", "bus.jetstream.duplicateWindow=2"], "duplicateWindow"),
        (["--set", "bus.jetstream.url=http://nats:4222"], "url"),
        (["--set", "bus.jetstream.stream=my.stream"], "stream"),
        (["--set", "bus.jetstream.replica=3"], "replica"),
    ],
)
def test_bad_bus_values_are_refused(helm: Helm, settings: list[str], message: str) -> None:
    assert message in helm.refused(*settings)


def test_the_jetstream_bus_runs_with_several_replicas(helm: Helm) -> None:
    # Status shards exist (issue 13): with the shared consumers, replicas share the deliveries.
    deployment = helm.deployment(*JETSTREAM, "--set", "replicaCount=2")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
