"""Fixtures for the e2e tier: a real etcd + kube-apiserver on loopback (see testbed.py).

Every test under tests/e2e is marked ``e2e``. The session fixture starts its own test bed, unless
``OPENCONNECTOR_TESTBED_STATE`` points at one that ``testbed.py up`` left running: then it attaches to that
one and leaves it running (fast local iteration). Provisioning problems fail the tests; nothing is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import chart_install, crds, operator
from .testbed import STATE_ENV, Cluster, ensure_tools, load_running, start_cluster

__all__ = ["chart_install", "crds", "operator"]  # fixtures shared by every e2e module

E2E_DIR = Path(__file__).resolve().parent
KEEP_ENV = "OPENCONNECTOR_TESTBED_KEEP"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The hook sees the whole session's items: mark only ours.
    for item in items:
        if Path(item.path).resolve().is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)
    # Audits of the whole run (the RBAC proof reads everything the operator did) go last, whatever
    # their file names and however the run was ordered or selected.
    items.sort(key=lambda item: item.get_closest_marker("audits_the_run") is not None)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Cluster]:
    """The running test bed: ``.kubeconfig``, ``.server``, ``.kubectl(*args)``, ``.helm(*args)``."""
    if os.environ.get(STATE_ENV):
        attached = load_running()
        if attached is not None:
            yield attached
            return
    audit_dir = Path(tempfile.mkdtemp(prefix="openconnector-audit-"))
    cluster = start_cluster(ensure_tools(), extra_apiserver_args=audit_args(audit_dir))
    cluster.audit_log = audit_dir / "audit.log"
    try:
        yield cluster
    finally:
        # Keeping the work dir (logs, kubeconfig) helps diagnose a failed run.
        keep = bool(os.environ.get(KEEP_ENV))
        cluster.stop(remove_workdir=not keep)
        if not keep:
            shutil.rmtree(audit_dir, ignore_errors=True)


def audit_args(directory: Path) -> list[str]:
    """Audit every request made by a ServiceAccount (the operator under the chart's identity), so the
    RBAC test can compare what the role grants with what was used."""
    policy = directory / "audit-policy.yaml"
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\n"
        "kind: Policy\n"
        "omitStages: [RequestReceived]\n"
        "rules:\n"
        "  - level: Metadata\n"
        "    userGroups: [system:serviceaccounts]\n"
        "  - level: None\n"
    )
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={directory / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


@pytest.fixture
def namespace(testbed: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards.

    No controller-manager runs, so nothing finalizes a deleted namespace: it stays Terminating with its
    objects, which is harmless because every test gets a unique name.
    """
    name = f"e2e-{_dns_label(request.node.name)[:44].strip('-')}-{uuid.uuid4().hex[:8]}"
    testbed.kubectl("create", "namespace", name, check=True)
    yield name
    testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
