"""The message API's access control on a real kube-apiserver (TokenReview + SubjectAccessReview): a user
who may only `get` EventSubscriptions in namespace A reads A's messages, cannot resend them, and does
not even learn that namespace B's subscription exists."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support.http import Answer, assert_problem, call, post
from tests.support.polling import eventually
from tests.support.sinks import Sink

from .harness import OperatorProcess, apply, condition, get_json, kubectl
from .testbed import Cluster, TestbedError, mint_service_account_token

TYPE = "nl.example.message.logged"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:e2e"


@pytest.fixture
def other_namespace(testbed: Cluster) -> Iterator[str]:
    name = f"e2e-messages-b-{uuid.uuid4().hex[:8]}"
    testbed.kubectl("create", "namespace", name, check=True)
    yield name
    testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def documents(url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "Event",
            "metadata": {"name": "logged"},
            "spec": {"type": TYPE, "source": SOURCE},
        },
        {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "EventSubscription",
            "metadata": {"name": "sub"},
            "spec": {"eventType": TYPE, "endpoint": url},
        },
    ]


def reader_rbac(namespace: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "message-reader"},
            "rules": [
                {"apiGroups": ["openconnector.nl"], "resources": ["eventsubscriptions"], "verbs": ["get"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "message-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "message-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    ]


async def reader_token(testbed: Cluster, namespace: str) -> str:
    await apply(testbed, namespace, *reader_rbac(namespace))
    user = f"system:serviceaccount:{namespace}:reader"
    deadline = time.monotonic() + 30
    while (await kubectl(testbed, "auth", "can-i", "get", "eventsubscriptions.openconnector.nl", "-n",
                         namespace, "--as", user, check=False)).stdout.strip() != "yes":  # fmt: skip
        if time.monotonic() > deadline:
            raise TestbedError(f"the role binding for {user} did not take effect within 30 s")
        await asyncio.sleep(0.2)
    return await asyncio.to_thread(mint_service_account_token, testbed.kubeconfig, namespace, "reader")


async def wait_routed(testbed: Cluster, namespace: str) -> None:
    async def ready() -> Any:
        cond = condition(await get_json(testbed, namespace, "eventsubscription", "sub"), "Ready")
        return cond if cond and cond["status"] == "True" else None

    await eventually(ready, within=20, what=f"{namespace}/sub Ready=True")


async def publish(operator: OperatorProcess, namespace: str, event_id: str) -> None:
    body = orjson.dumps({"specversion": "1.0", "id": event_id, "type": TYPE, "source": SOURCE, "data": {}})
    answer = await post(
        f"{operator.url}/namespaces/{namespace}/events",
        body,
        {"Content-Type": "application/cloudevents+json"},
    )
    assert answer.status == 202, answer.body


async def test_get_reads_own_namespace_only_and_update_is_needed_to_resend(
    testbed: Cluster, operator: OperatorProcess, namespace: str, other_namespace: str
) -> None:
    async with Sink() as sink:
        for ns in (namespace, other_namespace):
            await apply(testbed, ns, *documents(f"{sink.url}/{ns}"))
        token = await reader_token(testbed, namespace)
        for ns in (namespace, other_namespace):
            await wait_routed(testbed, ns)
            await publish(operator, ns, f"logged-{ns}")
        await sink.wait_for(2)
        reader = {"Authorization": f"Bearer {token}"}
        api = f"{operator.url}/api/v1alpha1"

        async def own_messages() -> Answer:
            return await call("GET", f"{api}/subscriptions/{namespace}/sub/messages", headers=reader)

        answer = await eventually(
            own_messages, until=lambda a: a.status == 200 and len(a.json()["items"]) == 1
        )
        [message] = answer.json()["items"]
        assert message["eventId"] == f"logged-{namespace}"

        resend = await call("POST", f"{api}/subscriptions/{namespace}/sub/messages/{message['id']}/resend",
                            headers=reader)  # fmt: skip
        assert_problem(resend, 403, "forbidden")
        hidden = await call("GET", f"{api}/subscriptions/{other_namespace}/sub/messages", headers=reader)
        assert_problem(hidden, 404, "unknown-subscription")
        by_event = await call("GET", f"{api}/events/logged-{other_namespace}/messages", headers=reader)
        assert by_event.json()["items"] == []
        listed = await call("GET", f"{api}/subscriptions", headers=reader)
        assert {(i["namespace"], i["name"]) for i in listed.json()["items"]} == {(namespace, "sub")}
        assert_problem(
            await call("GET", f"{api}/subscriptions/{namespace}/sub/messages"), 401, "unauthenticated"
        )
        forged = {"Authorization": "Bearer not-a-kubernetes-token"}
        assert_problem(await call("GET", f"{api}/subscriptions", headers=forged), 401, "unauthenticated")

        admin = {"Authorization": f"Bearer {testbed.admin_token}"}
        resent = await call("POST", f"{api}/subscriptions/{namespace}/sub/messages/{message['id']}/resend",
                            headers=admin)  # fmt: skip
        assert resent.status == 202, resent.body
        await sink.wait_for(3)
