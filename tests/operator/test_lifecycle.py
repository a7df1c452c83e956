"""The operator process around the handlers: credentials, threads, shutdown."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import kmock
import orjson
import pytest

from openconnector.kube.operator import OperatorCore
from tests.support.http import call
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

from .conftest import StartOperator
from .kube import NAMESPACE, Kubectl
from .specs import cloud_event, event_spec, subscription_spec


async def test_operator_calls_use_the_kubeconfig_credentials(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """The operator's own client (initial LIST, status PATCH, Events) logs in as Kopf does."""
    await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create(
        "Consumer", "broken", {"endpoint": "x", "mappingId": "missing", "event": "zaak-created"}
    )
    await eventually(lambda: kube.core_events(name="broken"), what="a Warning Event")
    await eventually(lambda: kube.status_patches("Consumer", "broken"), what="a status patch")
    # Neither Kopf's requests nor the test's own (kmock's client): what is left is the operator's client.
    own = [r for r in kube.requests() if not r.headers.get("User-Agent", "").startswith(("kopf/", "kmock/"))]
    lists = [r for r in own if r.method == kmock.method.GET and r.params.get("limit") == "500"]
    patches = [r for r in own if r.method == kmock.method.PATCH]
    # (The status shards' Leases are POSTed too: kube/lease.py.)
    posts = [r for r in own if r.method == kmock.method.POST and "/leases" not in r.url.path]
    assert {r.url.path for r in lists} >= {"/apis/openconnector.nl/v1alpha1/consumers", "/api/v1/secrets"}
    assert kube.object_path("Consumer", "broken") + "/status" in {r.url.path for r in patches}
    assert {r.url.path for r in posts} == {f"/api/v1/namespaces/{NAMESPACE}/events"}
    assert {r.headers.get("Authorization") for r in lists + patches + posts} == {"Bearer test-token"}
    assert {r.headers.get("Content-Type") for r in patches} == {"application/merge-patch+json"}
    assert {r.params.get("fieldManager") for r in patches} == {"openconnector-operator"}


async def test_watch_events_are_handled_on_the_gateway_loop(
    kube: Kubectl, start_operator: StartOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store and the reconciler belong to the gateway's loop; Kopf must not call them from a thread."""
    threads: list[int] = []
    original = OperatorCore.on_object

    def recording(self: OperatorCore, event_type: str | None, body: Any) -> None:
        threads.append(threading.get_ident())
        original(self, event_type, body)

    monkeypatch.setattr(OperatorCore, "on_object", recording)
    op = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create_secret("credentials", {"token": "t"})
    await op.wait_observed("Event", "zaak-created", 1)
    await eventually(lambda: len(threads) >= 2, what="watch events handled")
    assert set(threads) == {threading.get_ident()}


async def test_shutdown_lets_deliveries_in_flight_finish(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """Stopping Kopf must not cut off the gateway: what is in flight or queued is delivered while draining."""
    release = asyncio.Event()
    async with Sink(default=Reply(gate=release)) as subscriber:
        op = await start_operator(status_interval=3600)
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        await op.wait_observed("EventSubscription", "notifier", 1)
        await op.publish(cloud_event(id_="in-flight"))
        await subscriber.wait_for(1)  # the subscriber holds the answer back

        await op.stop_kopf()
        answer = await op.publish(cloud_event(id_="after-kopf"))  # the gateway serves until it drains
        assert (answer.status, answer.json()["deliveries"]) == (202, 1)
        release.set()
        await op.stop()

        assert [orjson.loads(r.body)["id"] for r in await subscriber.wait_for(2)] == [
            "in-flight",
            "after-kopf",
        ]
        status = kube.status("EventSubscription", "notifier")
        assert (status["delivered"], status["dropped"]) == (2, 0)


async def test_without_kopf_scanning_nothing_cluster_scoped_is_read(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """--no-kopf-scanning: Kopf neither lists CRDs nor namespaces (RBAC without cluster-scoped reads)."""
    op = await start_operator("--no-kopf-scanning")
    await kube.create("Event", "zaak-created", event_spec())
    await op.wait_observed("Event", "zaak-created", 1)
    paths = {r.url.path for r in kube.requests()}
    assert "/apis/apiextensions.k8s.io/v1/customresourcedefinitions" not in paths
    assert "/api/v1/namespaces" not in paths


async def test_a_namespaced_operator_reads_and_routes_only_its_namespace(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """--namespace (with a Role, not a ClusterRole): every read is namespaced, other namespaces are ignored.
    Scanning is off only because kmock cannot serve Kopf's namespace listing (a path-parsing bug)."""
    kube.preload("Event", "elsewhere-before", event_spec("nl.vng.other.created"), namespace="other")
    op = await start_operator("--namespace", NAMESPACE, "--no-kopf-scanning")
    await kube.create("Event", "elsewhere-after", event_spec("nl.vng.other.updated"), namespace="other")
    await kube.create("Event", "zaak-created", event_spec())
    await op.wait_observed("Event", "zaak-created", 1)

    view = await op.status_view()
    assert [(r["namespace"], r["name"]) for r in view["resources"]] == [(NAMESPACE, "zaak-created")]
    listed = {
        r.url.path
        for r in kube.requests()
        if r.method == kmock.method.GET and r.resource is not None and r.resource.plural and r.name is None
    }
    assert listed
    assert all(
        path.startswith(
            (f"/api/v1/namespaces/{NAMESPACE}/", f"/apis/openconnector.nl/v1alpha1/namespaces/{NAMESPACE}/")
        )
        for path in listed
    ), listed
    assert kube.status_patches("Event", "elsewhere-after", namespace="other") == []


async def test_metrics_port_serves_prometheus_apart_from_the_gateway(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    with socket.socket() as probe:  # a free loopback port for --metrics-port
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    op = await start_operator("--metrics-port", str(metrics_port))
    metrics = await call("GET", f"http://127.0.0.1:{metrics_port}/metrics")
    assert metrics.status == 200
    assert b"openconnector_" in metrics.body
    assert (await call("GET", f"{op.url}/metrics")).status == 404
