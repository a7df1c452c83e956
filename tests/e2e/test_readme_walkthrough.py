"""README's "run the operator against a cluster" walk-through, on the loopback test bed (issue 16).

The steps a new user takes: CRDs applied, examples/ applied to a namespace, a signed webhook delivered to
the subscriber, `kubectl get` saying how it went, the subscription paused, a typo in a filter refused by
`kubectl apply`, a filter the apiserver cannot judge reported in status and in the operator's log, a
subscription suspended by autoPauseAfter resuming when its spec changes, and everything deleted again.
The operator is the session's `openconnector run` (the chart's ServiceAccount, every namespace).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import yaml

from openconnector.consumers.standard_webhooks import standard_webhook_headers
from tests.component.client import call, post
from tests.component.sinks import Reply, Sink
from tests.support.polling import eventually

from .harness import ROOT, OperatorProcess, apply, condition, get_json, kubectl
from .testbed import Cluster

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # examples/00-secrets.yaml
PAYLOAD = (ROOT / "examples" / "payloads" / "zaak-webhook.json").read_bytes()
TYPE = "nl.vng.zgw.zaken.zaak.created"
API = "openconnector.nl/v1alpha1"


def examples_for(subscriber: Sink, register: Sink, namespace: str) -> str:
    """examples/ as `kubectl apply -f examples/` sends it, pointed at this test's loopback sinks, with the
    Consumer's endpoint made unique: one gateway serves every namespace, and endpoints are unique per
    gateway (other tests apply the examples too)."""
    text = "\n---\n".join(p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml")))
    return (
        text.replace("http://127.0.0.1:9000", f"http://127.0.0.1:{subscriber.port}")
        .replace("http://127.0.0.1:9100", f"http://127.0.0.1:{register.port}")
        .replace("endpoint: zaaksysteem/zaken", f"endpoint: {namespace}/zaken")
    )


def subscription(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "EventSubscription", "metadata": {"name": name},
            "spec": {"eventType": TYPE, "endpoint": url, **spec}}  # fmt: skip


async def send_webhook(operator: OperatorProcess, endpoint: str, msg_id: str) -> int:
    headers = standard_webhook_headers((SECRET,), msg_id, int(time.time()), PAYLOAD)
    answer = await post(
        f"{operator.url}/webhooks/{endpoint}", PAYLOAD, {**headers, "Content-Type": "application/json"}
    )
    return answer.status


async def table(testbed: Cluster, namespace: str, kind: str) -> list[dict[str, str]]:
    """`kubectl get <kind>` as the user reads it: one dict per row, by column header (a category such as
    `openconnector` prints one table per kind, separated by blank lines)."""
    out = (await kubectl(testbed, "get", kind, "-n", namespace)).stdout
    rows: list[dict[str, str]] = []
    for section in out.strip().split("\n\n"):
        header, *lines = section.splitlines()
        # Columns by position: an empty cell (no phase yet, no Healthy condition) prints as blanks.
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        names = header.split()
        for line in lines:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            rows.append(dict(zip(names, cells, strict=True)))
    return rows


async def status_of(testbed: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (await get_json(testbed, namespace, kind, name)).get("status") or {}
    return status


async def test_readme_walkthrough(testbed: Cluster, operator: OperatorProcess, namespace: str) -> None:
    async with Sink() as subscriber, Sink(Reply(201, body=b'{"id": "ZAAK-1"}')) as register:
        examples, endpoint = examples_for(subscriber, register, namespace), f"{namespace}/zaken"
        # kubectl apply -n demo -f examples/
        await kubectl(testbed, "apply", "-n", namespace, "-f", "-", input=examples)

        seen: list[dict[str, str]] = []

        async def all_ready() -> Any:
            seen[:] = await table(testbed, namespace, "openconnector")
            return len(seen) == 5 and all(r.get("READY") == "True" for r in seen)

        try:
            await eventually(all_ready, within=20, what="every example resource READY True")
        except AssertionError as error:
            raise AssertionError(f"{error}: {seen}") from None

        # Deliver: a signed webhook becomes a zaak.created CloudEvent at the subscriber.
        assert await send_webhook(operator, endpoint, "msg_walkthrough_1") == 201
        (delivered,) = await subscriber.wait_for(1, within=10)
        assert orjson.loads(delivered.body)["type"] == TYPE

        async def delivered_row() -> Any:
            (row,) = await table(testbed, namespace, "eventsubscriptions")
            return row if row.get("DELIVERED") == "1" else None

        row = await eventually(delivered_row, within=10, what="DELIVERED 1 in kubectl get evsub")
        assert (row["STATUS"], row["READY"], row["HEALTHY"], row["REASON"]) == (
            "Active", "True", "Unknown", "NotEnoughAttempts",
        )  # fmt: skip

        # Pause: kubectl patch ... status: paused
        await kubectl(testbed, "patch", "-n", namespace, "eventsubscription", "zaak-created-to-notifier",
                      "--type=merge", "-p", '{"spec": {"status": "paused"}}')  # fmt: skip

        async def paused() -> Any:
            return (await status_of(testbed, namespace, "evsub", "zaak-created-to-notifier")).get(
                "phase"
            ) == "Paused"

        await eventually(paused, within=10, what="phase Paused")

        # A typo in a filter is refused by the apiserver at apply time, and nothing is stored.
        typo = subscription("typo", "http://127.0.0.1:1/x", filters=[{"sqll": "source LIKE 'urn:nld:%'"}])
        refused = await kubectl(testbed, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(typo),
                                check=False)  # fmt: skip
        assert refused.returncode != 0
        assert "spec.filters[0]" in refused.stderr, refused.stderr
        missing = await kubectl(testbed, "get", "-n", namespace, "evsub", "typo", check=False)
        assert missing.returncode != 0

        # A filter only the compiler can judge (CESQL syntax): stored, not ready, and it says why.
        await apply(
            testbed, namespace, subscription("bad-sql", "http://127.0.0.1:1/x", filters=[{"sql": "type ="}])
        )

        async def bad_sql_row() -> Any:
            rows = {r["NAME"]: r for r in await table(testbed, namespace, "eventsubscriptions")}
            row = rows.get("bad-sql", {})
            return row if row.get("READY") == "False" else None

        row = await eventually(bad_sql_row, within=10, what="bad-sql READY False")
        assert row["REASON"] == "InvalidFilter"
        ready = condition(await get_json(testbed, namespace, "evsub", "bad-sql"), "Ready")
        assert ready is not None
        assert ready["message"].startswith("spec.filters[0].sql: ")

        async def logged() -> Any:
            return f"EventSubscription/{namespace}/bad-sql not ready: InvalidFilter: spec.filters[0].sql" in (
                operator.log_path.read_text(errors="replace")
            )

        await eventually(logged, within=10, what="the not-ready line in the operator's log")
        log = operator.log_path.read_text(errors="replace")
        assert "Handler 'on_event' succeeded" not in log  # DEBUG, not INFO

        # Delete: the webhook endpoint is gone, and so are the resources.
        await kubectl(testbed, "delete", "-n", namespace, "-f", "-", input=examples)

        async def endpoint_gone() -> Any:
            return (await call("OPTIONS", f"{operator.url}/webhooks/{endpoint}")).status == 404

        await eventually(endpoint_gone, within=10, what="the Consumer's endpoint answering 404")
        rows = await table(testbed, namespace, "openconnector")
        assert [r["NAME"] for r in rows] == ["eventsubscription.openconnector.nl/bad-sql"]


async def test_auto_pause_lasts_until_the_spec_changes(
    testbed: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    event = {"apiVersion": API, "kind": "Event", "metadata": {"name": "zaak-created"},
             "spec": {"type": TYPE, "source": "urn:nld:oin:00000001823288444000:systeem:e2e"}}  # fmt: skip
    async with Sink(default=Reply(500)) as sink:
        url = f"http://127.0.0.1:{sink.port}/in"
        await apply(
            testbed,
            namespace,
            event,
            subscription("flaky", url, delivery={"retries": 0, "autoPauseAfter": 2}),
        )

        async def routed() -> Any:
            ready = condition(await get_json(testbed, namespace, "evsub", "flaky"), "Ready")
            return ready is not None and ready["status"] == "True"

        await eventually(routed, within=15, what="flaky Ready")
        body = {"specversion": "1.0", "type": TYPE, "source": "urn:nld:oin:00000001823288444000:systeem:e2e"}
        for n in (1, 2):
            answer = await post(f"{operator.url}/namespaces/{namespace}/events",
                                orjson.dumps({**body, "id": f"e{n}"}),
                                {"Content-Type": "application/cloudevents+json"})  # fmt: skip
            assert answer.status == 202, answer.body
            await sink.wait_for(n)

        async def phase(expected: str, generation: int) -> Any:
            status = await status_of(testbed, namespace, "evsub", "flaky")
            return (
                status
                if (status.get("phase"), status.get("observedGeneration")) == (expected, generation)
                else None
            )

        status = await eventually(
            lambda: phase("Suspended", 1), within=15, what="Suspended by autoPauseAfter"
        )
        healthy = condition({"status": status}, "Healthy")
        assert healthy is not None
        assert (healthy["status"], healthy["reason"]) == ("False", "AutoPaused")

        sink.default = Reply(200)
        await kubectl(testbed, "patch", "-n", namespace, "evsub", "flaky", "--type=merge",
                      "-p", '{"spec": {"delivery": {"autoPauseAfter": 5}}}')  # fmt: skip
        await eventually(lambda: phase("Active", 2), within=15, what="Active again at generation 2")
        answer = await post(f"{operator.url}/namespaces/{namespace}/events",
                            orjson.dumps({**body, "id": "e3"}),
                            {"Content-Type": "application/cloudevents+json"})  # fmt: skip
        assert answer.status == 202
        await sink.wait_for(3)
