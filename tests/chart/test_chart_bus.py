"""The chart's event bus values: memory by default, JetStream on request, rendered into the CLI's flags.

Rendered offline with the helm binary of the test bed (as in test_chart.py); the container's arguments
are parsed by the real ``openconnector`` argument parser, so a flag the CLI does not know fails here,
and the Deployment is validated strictly against the Kubernetes schema.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
from tests.chart.test_chart import KUBE_VERSIONS, Helm, Manifest, helm

from openconnector.cli import build_parser

KUBE_VERSION = KUBE_VERSIONS[-1]
NATS = "nats://nats.nats.svc:4222"
JETSTREAM = ("--set", "bus.type=jetstream", "--set", f"bus.jetstream.url={NATS}")

__all__ = ["helm"]  # the fixture, shared with test_chart.py


def rendered_deployment(helm: Helm, *args: str) -> Manifest:
    """The chart's Deployment with ``args``, validated strictly against the newest Kubernetes version."""
    (deployment,) = helm.template(
        "--show-only", "templates/deployment.yaml", *args, kube_version=KUBE_VERSION
    )
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    return deployment


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
    deployment = rendered_deployment(helm)
    args = args_of(deployment)
    assert build_parser().parse_args(args).bus == "memory"
    assert not [a for a in args if a.startswith(("--nats", "--jetstream"))]
    assert {v["name"] for v in pod_of(deployment)["volumes"]} == {"tmp"}


def test_jetstream_passes_every_setting_as_its_flag(helm: Helm) -> None:
    args = args_of(rendered_deployment(helm, *JETSTREAM))
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
        rendered_deployment(helm,
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
    deployment = rendered_deployment(helm,
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
    deployment = rendered_deployment(helm, *JETSTREAM, "--set", "bus.jetstream.tlsSecret=nats-ca")
    parsed = build_parser().parse_args(args_of(deployment))
    assert mounted_file(deployment, parsed.nats_tls_ca) == ("nats-ca", "ca.crt")
    assert (parsed.nats_tls_cert, parsed.nats_tls_key) == (None, None)


def test_jetstream_settings_are_ignored_with_the_memory_bus(helm: Helm) -> None:
    deployment = rendered_deployment(helm,
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
    deployment = rendered_deployment(helm, *JETSTREAM, "--set", "replicaCount=2")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
