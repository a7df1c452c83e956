"""The test bed itself: a real apiserver at the pinned version, namespaces, RBAC, helm, CRDs, teardown."""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.polling import eventually_blocking

from .testbed import (
    STATE_ENV,
    Cluster,
    kubeconfig_for_token,
    mint_service_account_token,
    pinned_kubernetes_version,
    start_cluster,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = sorted((REPO_ROOT / "crds").glob("*.yaml"))


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_apiserver_reports_the_pinned_version(testbed: Cluster) -> None:
    version = _json(testbed.kubectl("version", "-o", "json"))

    assert version["serverVersion"]["gitVersion"] == pinned_kubernetes_version()
    major, minor = pinned_kubernetes_version().lstrip("v").split(".")[:2]
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == (major, minor)


def test_server_is_loopback_https_verified_by_the_testbed_ca(testbed: Cluster) -> None:
    assert testbed.server.startswith("https://127.0.0.1:")
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]

    assert "insecure-skip-tls-verify" not in cluster
    assert cluster["certificate-authority-data"]


def test_admin_identity_is_a_system_master(testbed: Cluster) -> None:
    review = _json(testbed.kubectl("auth", "whoami", "-o", "json"))

    assert "system:masters" in review["status"]["userInfo"]["groups"]


def test_namespace_is_created_and_stores_objects(testbed: Cluster, namespace: str) -> None:
    assert _json(testbed.kubectl("get", "namespace", namespace, "-o", "json"))["status"]["phase"] == "Active"

    testbed.kubectl("create", "configmap", "probe", "-n", namespace, "--from-literal=answer=42", check=True)
    stored = _json(testbed.kubectl("get", "configmap", "probe", "-n", namespace, "-o", "json"))

    assert stored["data"] == {"answer": "42"}
    assert stored["metadata"]["resourceVersion"]


def test_rbac_denies_an_unbound_service_account_until_a_role_is_bound(
    testbed: Cluster, namespace: str, tmp_path: Path
) -> None:
    testbed.kubectl("create", "serviceaccount", "probe", "-n", namespace, check=True)
    token = mint_service_account_token(testbed.kubeconfig, namespace, "probe", kubectl=testbed.tools.kubectl)
    as_probe = kubeconfig_for_token(
        testbed.kubeconfig, token, tmp_path / "probe.kubeconfig", namespace=namespace
    )

    whoami = _json(testbed.kubectl("auth", "whoami", "-o", "json", kubeconfig=as_probe))
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:probe"

    denied = testbed.kubectl("get", "secrets", "-n", namespace, kubeconfig=as_probe)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    can_i = testbed.kubectl("auth", "can-i", "list", "secrets", "-n", namespace, kubeconfig=as_probe)
    assert (can_i.returncode, can_i.stdout.strip()) == (1, "no")

    # The same token succeeds once bound: the denial above came from RBAC, not from a bad credential.
    testbed.kubectl(
        "create", "role", "secret-reader", "--verb=list", "--resource=secrets", "-n", namespace, check=True
    )
    testbed.kubectl(
        "create",
        "rolebinding",
        "probe-reads-secrets",
        "--role=secret-reader",
        f"--serviceaccount={namespace}:probe",
        "-n",
        namespace,
        check=True,
    )
    allowed = eventually_blocking(
        lambda: testbed.kubectl("get", "secrets", "-n", namespace, kubeconfig=as_probe),
        until=lambda result: result.returncode == 0,
        within=15.0,
    )
    assert allowed.returncode == 0, allowed.stderr
    cluster_wide = testbed.kubectl(
        "auth", "can-i", "list", "secrets", "--all-namespaces", kubeconfig=as_probe
    )
    assert cluster_wide.stdout.strip() == "no"


def _write_chart(root: Path, chart_yaml: str) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(chart_yaml)
    (root / "values.yaml").write_text("greeting: hello\n")
    (root / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-greeting\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    return root


def test_helm_lints_renders_and_installs_a_chart(testbed: Cluster, namespace: str, tmp_path: Path) -> None:
    chart = _write_chart(
        tmp_path / "probe",
        "apiVersion: v2\nname: probe\ndescription: e2e probe chart\nversion: 0.1.0\nappVersion: '1.0'\n",
    )

    lint = testbed.helm("lint", chart)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    rendered = testbed.helm("template", "demo", chart, "--namespace", namespace, "--set", "greeting=hoi")
    assert rendered.returncode == 0, rendered.stderr
    configmaps = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc and doc["kind"] == "ConfigMap"]
    assert [(cm["metadata"]["name"], cm["data"]) for cm in configmaps] == [
        ("demo-greeting", {"greeting": "hoi"})
    ]

    install = testbed.helm("install", "demo", chart, "--namespace", namespace, "--set", "greeting=hoi")
    assert install.returncode == 0, install.stdout + install.stderr
    stored = _json(testbed.kubectl("get", "configmap", "demo-greeting", "-n", namespace, "-o", "json"))
    assert stored["data"] == {"greeting": "hoi"}


def test_helm_lint_rejects_a_chart_without_a_version(testbed: Cluster, tmp_path: Path) -> None:
    chart = _write_chart(tmp_path / "broken", "apiVersion: v2\nname: broken\n")

    lint = testbed.helm("lint", chart)

    assert lint.returncode != 0
    assert "version" in (lint.stdout + lint.stderr).lower()


if CRD_FILES:
    # Defined only when crds/ has files: an empty crds/ yields no test rather than a skipped or vacuous one.

    @pytest.mark.parametrize("crd_file", CRD_FILES, ids=[path.name for path in CRD_FILES])
    def test_repository_crd_is_established_and_served(testbed: Cluster, crd_file: Path) -> None:
        crds = [
            doc
            for doc in yaml.safe_load_all(crd_file.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"
        ]
        assert crds, f"{crd_file.name} holds no CustomResourceDefinition"

        # Server-side apply: large schemas would overflow the client-side last-applied annotation.
        applied = testbed.kubectl(
            "apply", "--server-side", "--field-manager=openconnector-e2e", "-f", crd_file
        )
        assert applied.returncode == 0, applied.stderr

        for crd in crds:
            name = crd["metadata"]["name"]
            waited = testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
            assert waited.returncode == 0, waited.stderr
            group, names = crd["spec"]["group"], crd["spec"]["names"]
            for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                # Other e2e tests may already have objects of this kind: check the served list type only.
                listed = eventually_blocking(
                    functools.partial(
                        testbed.kubectl, "get", "--raw", f"/apis/{group}/{version}/{names['plural']}"
                    ),
                    until=lambda result: result.returncode == 0,
                    within=15.0,
                )
                body = _json(listed)
                list_kind = names.get("listKind", f"{names['kind']}List")
                assert (body["apiVersion"], body["kind"]) == (f"{group}/{version}", list_kind)
                assert isinstance(body["items"], list)


def test_stop_ends_only_the_testbeds_own_processes(testbed: Cluster) -> None:
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        cluster = start_cluster(testbed.tools)
        pids = [process.pid for process in cluster.processes]
        assert cluster.is_running()
        assert cluster.workdir.is_dir()

        cluster.stop()

        assert not cluster.is_running()
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        assert not cluster.workdir.exists()
        assert bystander.poll() is None
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()


def test_cli_up_env_down_round_trip(testbed: Cluster, tmp_path: Path) -> None:
    script = Path(__file__).with_name("testbed.py")
    env = {**os.environ, STATE_ENV: str(tmp_path / "state.json")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    up = cli("up")
    assert up.returncode == 0, up.stderr
    try:
        exports = {
            name: shlex.split(value)[0]
            for name, value in (line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
        }
        kubeconfig = Path(exports["KUBECONFIG"])
        assert exports[STATE_ENV] == str(tmp_path / "state.json")
        assert cli("env").stdout == up.stdout
        version = _json(testbed.kubectl("version", "-o", "json", kubeconfig=kubeconfig))
        assert version["serverVersion"]["gitVersion"] == pinned_kubernetes_version()
        pids = [process["pid"] for process in json.loads((tmp_path / "state.json").read_text())["processes"]]
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "state.json").exists()
    assert not kubeconfig.exists()
    assert all(not _is_live(pid) for pid in pids)
    assert cli("env").returncode == 1


def _is_live(pid: int) -> bool:
    """A pid that exists and is not a zombie waiting for its (re)parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}
