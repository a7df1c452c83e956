"""The chart with several replicas: HPA, PodDisruptionBudget, spread over nodes, Lease RBAC, NOTES."""

from __future__ import annotations

import kubernetes_validate
import pytest
from tests.chart.test_chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    NOT_BUILT_IN,
    RELEASE,
    Helm,
    Manifest,
    helm,
    of_kind,
    one,
)

__all__ = ["helm"]  # the fixture, shared with test_chart.py

HA = ("--set", "replicaCount=3", "--set", "autoscaling.enabled=true", "--set", "bus.type=jetstream",
      "--set", "bus.jetstream.url=nats://nats.nats.svc:4222")  # fmt: skip


@pytest.fixture(scope="module")
def ha_render(helm: Helm) -> list[Manifest]:
    return helm.template(*HA)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_three_replicas_with_jetstream_and_the_hpa_render_valid_objects(
    helm: Helm, kube_version: str
) -> None:
    manifests = helm.template("--include-crds", *HA, kube_version=kube_version)
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in NOT_BUILT_IN:
            continue
        kubernetes_validate.validate(manifest, kube_version, strict=True)
    kinds = {m["kind"] for m in manifests}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Deployment"} <= kinds


def test_several_replicas_get_a_budget_that_never_blocks_a_drain(ha_render: list[Manifest]) -> None:
    deployment = one(ha_render, "Deployment")
    pdb = one(ha_render, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    hpa = one(ha_render, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_several_replicas_are_spread_over_nodes(helm: Helm, ha_render: list[Manifest]) -> None:
    pod = one(ha_render, "Deployment")["spec"]["template"]
    (spread,) = pod["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    single = one(helm.template(), "Deployment")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in single
    assert of_kind(helm.template(), "PodDisruptionBudget") == []
    forced_off = helm.template("--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=false")
    assert of_kind(forced_off, "PodDisruptionBudget") == []


def test_each_pod_knows_its_name_and_namespace_and_drains_within_the_grace_period(
    ha_render: list[Manifest],
) -> None:
    pod = one(ha_render, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name"
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = next(float(a.split("=", 1)[1]) for a in container["args"] if a.startswith("--drain-seconds="))
    assert pod["terminationGracePeriodSeconds"] > sleep + drain
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_only_new_grant_is_leases_in_the_release_namespace(ha_render: list[Manifest]) -> None:
    (role,) = [r for r in of_kind(ha_render, "Role") if r["metadata"]["name"].endswith("-leases")]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "delete"],
        }
    ]
    cluster_rules = [r for c in of_kind(ha_render, "ClusterRole") for r in c["rules"]]
    assert all("coordination.k8s.io" not in r["apiGroups"] for r in cluster_rules)


def test_notes_say_what_a_pod_loss_costs_with_the_memory_bus(helm: Helm) -> None:
    memory = helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--set",
        "replicaCount=2",
    )
    assert memory.returncode == 0, memory.stderr
    assert "loses every delivery it had accepted and not yet made" in memory.stdout
    durable = helm.run("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, *HA)
    assert durable.returncode == 0, durable.stderr
    assert "loses every delivery" not in durable.stdout
    assert "redelivered to another replica" in durable.stdout
