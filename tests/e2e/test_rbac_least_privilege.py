"""RBAC proof: the operator ran every e2e test with only the chart's ServiceAccount, was never refused,
and the chart's role grants nothing it did not use. Marked ``audits_the_run``: the e2e conftest runs it after
every other test, whatever the file names."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from .harness import ChartInstall, OperatorProcess
from .testbed import Cluster


def requests_by(cluster: Cluster, username: str) -> list[dict[str, Any]]:
    assert cluster.audit_log is not None, "the test bed was started without an audit log"
    events = [orjson.loads(line) for line in cluster.audit_log.read_text().splitlines() if line.strip()]
    return [e for e in events if e.get("user", {}).get("username") == username and "objectRef" in e]


def permission(event: dict[str, Any]) -> tuple[str, str, str]:
    ref = event["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), resource, event["verb"]


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.audits_the_run
def test_the_operator_was_never_refused_and_used_every_grant(
    testbed: Cluster, operator: OperatorProcess, chart_install: ChartInstall
) -> None:
    requests = requests_by(testbed, chart_install.username)
    assert requests, "the operator made no requests under the chart's identity"
    # Authorization denials only: a 403 from admission (e.g. an Event posted into a namespace that is
    # being deleted, as test namespaces are) is not a missing permission.
    refused = Counter(
        permission(e)
        for e in requests
        if e.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid"
    )
    assert refused == Counter(), f"requests the chart's role does not allow: {refused}"
    used = {permission(e) for e in requests}
    grants = granted(chart_install.cluster_role_rules() + chart_install.role_rules())
    assert grants, "the chart rendered no ClusterRole rules"
    unused = grants - used
    assert unused == set(), f"the chart grants permissions the operator never used: {sorted(unused)}"
