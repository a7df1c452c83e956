"""Cluster mode: the gateway's status and attempts endpoints are read with a Kubernetes token, like the
message API (TokenReview, then SubjectAccessReview: ``list`` per namespace and kind for the status view,
``get`` on the subscription for its attempts)."""

from __future__ import annotations

import kmock
import pytest

from tests.support.http import assert_problem, call
from tests.support.polling import eventually

from .conftest import StartOperator
from .kube import NAMESPACE, READER_TOKEN, Kubectl
from .specs import event_spec, subscription_spec

READER = {"Authorization": f"Bearer {READER_TOKEN}"}


@pytest.fixture
async def routed(kube: Kubectl, start_operator: StartOperator) -> str:
    operator = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create("EventSubscription", "audit", subscription_spec("http://127.0.0.1:9/hook"))
    await eventually(
        lambda: operator.resource_status("EventSubscription", "audit"), what="the subscription routed"
    )
    return operator.url


async def test_status_refuses_callers_without_an_accepted_token(routed: str) -> None:
    url = f"{routed}/api/v1alpha1/status"
    assert_problem(await call("GET", url), 401, "unauthenticated")
    assert_problem(
        await call("GET", url, headers={"Authorization": "Bearer stranger"}), 401, "unauthenticated"
    )
    answer = await call("GET", url, headers=READER)
    assert answer.status == 200, answer.body
    kinds = {(r["kind"], r["namespace"], r["name"]) for r in answer.json()["resources"]}
    assert {("Event", NAMESPACE, "zaak-created"), ("EventSubscription", NAMESPACE, "audit")} <= kinds


async def test_status_asks_list_per_namespace_and_kind_and_attempts_ask_get(
    routed: str, kube: Kubectl
) -> None:
    assert (await call("GET", f"{routed}/api/v1alpha1/status", headers=READER)).status == 200
    attempts = await call(
        "GET", f"{routed}/api/v1alpha1/subscriptions/{NAMESPACE}/audit/attempts", headers=READER
    )
    assert attempts.status == 200, attempts.body
    reviews = [
        r.data["spec"]["resourceAttributes"]
        for r in kube.requests()
        if r.method == kmock.method.POST and r.url.path.endswith("/subjectaccessreviews")
    ]
    lists = [a for a in reviews if a["verb"] == "list"]
    assert {(a["resource"], a["namespace"]) for a in lists} >= {
        ("events", NAMESPACE),
        ("eventsubscriptions", NAMESPACE),
    }
    assert all("name" not in a for a in lists)
    gets = [a for a in reviews if a["verb"] == "get"]
    assert {(a["resource"], a["namespace"], a.get("name")) for a in gets} == {
        ("eventsubscriptions", NAMESPACE, "audit")
    }
    assert_problem(
        await call("GET", f"{routed}/api/v1alpha1/subscriptions/{NAMESPACE}/audit/attempts"),
        401,
        "unauthenticated",
    )
