"""``openconnector serve --manifests DIR`` live: edits to the directory take effect without a restart.

An edit is routed without a restart; these tests check that it is, and wait for it with a generous
ceiling (``CEILING``) that a busy two-core machine cannot break. How quickly (the promise: within a
second) is a speed claim and belongs to the benchmarks, measured against a baseline in the same run.
The status API, the attempt log, the probes and the metrics are checked on the same gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.support.http import Answer, assert_problem, call, post
from tests.support.polling import eventually
from tests.support.signing import standard_webhook_headers
from tests.support.sinks import Reply, Sink

API = "openconnector.nl/v1alpha1"
JSON = {"Content-Type": "application/json"}
EVENT_TYPE = "nl.example.webshop.order.paid"
EVENT_SOURCE = "urn:nld:oin:00000001823288444000:systeem:webshop"
OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_bmV3LXNpZ25pbmctc2VjcmV0LW9mLTMyLWJ5dGVz"
CEILING = 15.0  # seconds to wait for an edit to be routed before the test fails (not a budget)


# ----------------------------------------------------------------------------------------- helpers


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def secret(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-webhook"},
        "stringData": {"key": value},
    }


def open_consumer(endpoint: str, **spec: Any) -> dict[str, Any]:
    return resource(
        "Consumer", "open", {"endpoint": endpoint, "targetType": "source", "targetId": "api", **spec}
    )


def subscription(name: str, endpoint: str) -> dict[str, Any]:
    spec = {"eventType": EVENT_TYPE, "endpoint": endpoint, "delivery": {"retries": 0}}
    return resource("EventSubscription", name, spec)


def put(directory: Path, filename: str, *docs: Mapping[str, Any]) -> None:
    """Save a manifest file the way an editor does: the whole content at once."""
    (directory / filename).write_text(yaml.safe_dump_all(list(docs), sort_keys=False))


def initial_manifests(directory: Path, target: Sink) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    put(directory, "00-secret.yaml", secret(OLD_SECRET))
    put(directory, "10-source.yaml", resource("Source", "api", {"location": target.url_for("/api")}))
    put(
        directory,
        "20-orders.yaml",
        resource(
            "Consumer",
            "orders",
            {
                "endpoint": "orders",
                "targetType": "source",
                "targetId": "api",
                "auth": {"type": "hmac", "secretRefs": [{"name": "shop-webhook", "key": "key"}]},
            },
        ),
    )
    put(directory, "21-open.yaml", open_consumer("open/v1"))
    put(
        directory,
        "30-event.yaml",
        resource("Event", "order-paid", {"type": EVENT_TYPE, "source": EVENT_SOURCE}),
    )
    # Broken from the start: it must not keep the rest from routing.
    (directory / "15-broken.yaml").write_text("kind: Consumer\nspec: [unclosed\n")
    return directory


def event(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": EVENT_SOURCE,
            "type": EVENT_TYPE,
            "data": {"order": 1},
        }
    )


async def send_event(gw: StandaloneGateway, event_id: str) -> Answer:
    return await post(f"{gw.url}/events", event(event_id), {"Content-Type": "application/cloudevents+json"})


_ids = iter(range(1_000_000))


async def signed_post(gw: StandaloneGateway, secret_value: str) -> Answer:
    body = b'{"order": 1}'
    headers = standard_webhook_headers((secret_value,), f"msg_{next(_ids)}", int(time.time()), body)
    return await post(f"{gw.url}/webhooks/orders", body, {**JSON, **headers})


async def endpoint_status(gw: StandaloneGateway, endpoint: str) -> int:
    """Whether an endpoint is routed, without side effects: the OPTIONS handshake (200 or 404)."""
    return (await call("OPTIONS", f"{gw.url}/webhooks/{endpoint}")).status


async def resources(gw: StandaloneGateway) -> dict[tuple[str, str], dict[str, Any]]:
    """GET /api/v1alpha1/status as {(kind, name): resource entry}."""
    answer = await call("GET", f"{gw.url}/api/v1alpha1/status")
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    return {(r["kind"], r["name"]): r for r in answer.json()["resources"]}


def ready(entry: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in entry["status"]["conditions"] if c["type"] == "Ready")


async def routed(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check`` holds (an edit was applied), for at most CEILING seconds."""
    await eventually(check, within=CEILING, every=0.02, what=getattr(check, "__name__", "the edit"))


async def _pause() -> None:
    await asyncio.sleep(0.02)


async def watching(gw: StandaloneGateway, directory: Path) -> None:
    """Wait until the directory watcher runs. It starts after start_gateway returns, and an edit made
    before that is lost (see test_an_edit_right_after_start_is_applied), so every test first makes a
    probe edit, repeated until the gateway reports it, and removes it again."""
    probe = directory / "99-watch-probe.yaml"
    probe_event = resource("Event", "watch-probe", {"type": "nl.example.watch.probe", "source": EVENT_SOURCE})
    deadline = time.monotonic() + 10
    while ("Event", "watch-probe") not in await resources(gw):
        assert time.monotonic() < deadline, "the manifest watcher never picked up a change"
        put(directory, probe.name, probe_event)
        for _ in range(5):
            await _pause()
            if ("Event", "watch-probe") in await resources(gw):
                break
    probe.unlink()

    async def probe_gone() -> bool:
        return ("Event", "watch-probe") not in await resources(gw)

    await routed(probe_gone)


@pytest.fixture
async def target() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def live(tmp_path: Path, start_gateway: StartGateway, target: Sink) -> tuple[StandaloneGateway, Path]:
    directory = initial_manifests(tmp_path / "manifests", target)
    gw = await start_gateway(directory, watch=True)
    await watching(gw, directory)
    return gw, directory


# ---------------------------------------------------------------------------------------- edits


async def test_editing_a_file_changes_routing_without_a_restart(live: tuple[StandaloneGateway, Path]) -> None:
    gw, directory = live
    assert await endpoint_status(gw, "open/v1") == 200

    put(directory, "21-open.yaml", open_consumer("open/v2"))

    async def moved() -> bool:
        return await endpoint_status(gw, "open/v2") == 200 and await endpoint_status(gw, "open/v1") == 404

    await routed(moved)
    answer = await post(f"{gw.url}/webhooks/open/v2", b"{}", JSON)
    assert answer.status == 200, answer.body


async def test_deleting_a_consumer_file_makes_its_endpoint_404(live: tuple[StandaloneGateway, Path]) -> None:
    gw, directory = live
    assert await endpoint_status(gw, "open/v1") == 200

    (directory / "21-open.yaml").unlink()

    async def gone() -> bool:
        return await endpoint_status(gw, "open/v1") == 404

    await routed(gone)
    assert_problem(await post(f"{gw.url}/webhooks/open/v1", b"{}", JSON), 404, "unknown-endpoint")
    assert ("Consumer", "open") not in await resources(gw)


async def test_adding_a_subscription_starts_deliveries(live: tuple[StandaloneGateway, Path]) -> None:
    gw, directory = live
    before = await send_event(gw, "evt-before")
    assert before.status == 202, before.body
    assert before.json()["deliveries"] == 0

    async with Sink() as subscriber:
        put(directory, "40-subscription.yaml", subscription("to-subscriber", subscriber.url))

        async def delivering() -> bool:
            answer = await send_event(gw, f"evt-{next(_ids)}")
            assert answer.status == 202, answer.body
            return bool(answer.json()["deliveries"] == 1)

        await routed(delivering)
        delivered = orjson.loads((await subscriber.wait_for(1))[0].body)
        assert delivered["type"] == EVENT_TYPE
        assert delivered["id"] != "evt-before"


async def test_rotating_a_secret_switches_signatures_without_a_restart(
    live: tuple[StandaloneGateway, Path], target: Sink
) -> None:
    gw, directory = live
    port = gw.port
    assert (await signed_post(gw, OLD_SECRET)).status == 200

    put(directory, "00-secret.yaml", secret(NEW_SECRET))

    async def rotated() -> bool:
        return (await signed_post(gw, NEW_SECRET)).status == 200

    await routed(rotated)
    assert_problem(await signed_post(gw, OLD_SECRET), 401, "unauthorized")
    assert gw.port == port


async def test_a_broken_file_does_not_stop_the_others_from_routing(
    live: tuple[StandaloneGateway, Path], target: Sink
) -> None:
    gw, directory = live
    # 15-broken.yaml was broken from the start, and the rest routes.
    assert (await post(f"{gw.url}/webhooks/open/v1", b"{}", JSON)).status == 200

    (directory / "25-also-broken.yaml").write_text("apiVersion: [\n\t- nope")
    put(directory, "21-open.yaml", open_consumer("open/v3"))

    async def moved() -> bool:
        return await endpoint_status(gw, "open/v3") == 200

    await routed(moved)
    assert (await signed_post(gw, OLD_SECRET)).status == 200


async def test_an_edit_right_after_start_is_applied(
    tmp_path: Path, start_gateway: StartGateway, target: Sink
) -> None:
    directory = initial_manifests(tmp_path / "manifests", target)
    gw = await start_gateway(directory, watch=True)

    put(directory, "21-open.yaml", open_consumer("open/v2"))

    async def moved() -> bool:
        return await endpoint_status(gw, "open/v2") == 200

    await routed(moved)


# ------------------------------------------------------------------------------------- status


async def test_status_names_the_field_of_an_invalid_resource(live: tuple[StandaloneGateway, Path]) -> None:
    gw, directory = live
    put(directory, "21-open.yaml", open_consumer("open/v1", maxBodyBytes=0))
    put(
        directory,
        "50-bad.yaml",
        resource(
            "EventSubscription",
            "bad-filter",
            {"eventType": EVENT_TYPE, "endpoint": "http://127.0.0.1:9/x", "filters": [{"sql": "type = "}]},
        ),
        resource("Consumer", "no-source", {"endpoint": "x", "targetType": "source", "targetId": "missing"}),
    )

    async def refused() -> bool:
        found = await resources(gw)
        return all(
            key in found and ready(found[key])["status"] == "False"
            for key in [("Consumer", "open"), ("EventSubscription", "bad-filter"), ("Consumer", "no-source")]
        )

    await routed(refused)
    found = await resources(gw)
    expected = {
        ("Consumer", "open"): ("InvalidSpec", "spec.maxBodyBytes"),
        ("EventSubscription", "bad-filter"): ("InvalidFilter", "spec.filters[0].sql"),
        ("Consumer", "no-source"): ("SourceNotFound", "spec.targetId"),
    }
    for key, (reason, field) in expected.items():
        condition = ready(found[key])
        assert condition["reason"] == reason, condition
        assert field in condition["message"], condition
    assert found[("Consumer", "open")]["origin"].startswith(str(directory / "21-open.yaml"))
    assert ready(found[("Consumer", "orders")])["status"] == "True"
    # An invalid Consumer serves nothing.
    assert_problem(await post(f"{gw.url}/webhooks/open/v1", b"{}", JSON), 404, "unknown-endpoint")


async def test_status_and_attempts_report_deliveries(live: tuple[StandaloneGateway, Path]) -> None:
    gw, directory = live
    async with Sink() as happy, Sink(default=Reply(400, body=b"no thanks")) as grumpy:
        put(
            directory,
            "40-subscriptions.yaml",
            subscription("to-happy", happy.url),
            subscription("to-grumpy", grumpy.url),
        )

        async def subscribed() -> bool:
            found = await resources(gw)
            return ("EventSubscription", "to-happy") in found and ("EventSubscription", "to-grumpy") in found

        await routed(subscribed)
        answer = await send_event(gw, "evt-1")
        assert answer.json() == {"accepted": 1, "deliveries": 2}
        await happy.wait_for(1)
        await grumpy.wait_for(1)

        async def counted() -> bool:
            found = await resources(gw)
            happy_status = found[("EventSubscription", "to-happy")]["status"]
            grumpy_status = found[("EventSubscription", "to-grumpy")]["status"]
            return bool(happy_status["delivered"] == 1 and grumpy_status["failed"] == 1)

        await routed(counted)
        found = await resources(gw)
        happy_status = found[("EventSubscription", "to-happy")]["status"]
        assert happy_status["failed"] == 0
        assert happy_status["lastDelivery"]["statusCode"] == 200
        assert happy_status["phase"] == "Active"
        assert happy_status["url"] == happy.url
        grumpy_status = found[("EventSubscription", "to-grumpy")]["status"]
        assert grumpy_status["delivered"] == 0
        assert grumpy_status["lastError"]["statusCode"] == 400
        assert found[("Event", "order-paid")]["status"]["received"] == 1

        happy_attempts = await call("GET", f"{gw.url}/api/v1alpha1/subscriptions/default/to-happy/attempts")
        assert happy_attempts.status == 200
        assert happy_attempts.content_type == "application/json"
        [attempt] = happy_attempts.json()["attempts"]
        assert attempt["eventId"] == "evt-1"
        assert attempt["statusCode"] == 200
        assert attempt["outcome"] == "success"
        grumpy_attempts = await call("GET", f"{gw.url}/api/v1alpha1/subscriptions/default/to-grumpy/attempts")
        [attempt] = grumpy_attempts.json()["attempts"]
        assert (attempt["eventId"], attempt["statusCode"], attempt["outcome"]) == ("evt-1", 400, "permanent")

        unknown = await call("GET", f"{gw.url}/api/v1alpha1/subscriptions/default/nope/attempts")
        assert_problem(unknown, 404, "unknown-subscription")


async def test_probes_and_metrics(live: tuple[StandaloneGateway, Path]) -> None:
    gw, _ = live
    assert (await send_event(gw, "evt-m")).status == 202
    assert (await post(f"{gw.url}/webhooks/open/v1", b"{}", JSON)).status == 200

    readyz = await call("GET", f"{gw.url}/readyz")
    assert readyz.status == 200
    assert readyz.json()["status"] == "ready"
    assert readyz.json()["routingTableVersion"] >= 1
    healthz = await call("GET", f"{gw.url}/healthz")
    assert healthz.status == 200

    metrics = await call("GET", f"{gw.url}/metrics")
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    text = metrics.body.decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"
    }
    assert samples['openconnector_events_received_total{mode="structured"}'] == 1
    assert samples['openconnector_events_emitted_total{type="nl.example.webshop.order.paid"}'] == 1
    assert samples['openconnector_webhooks_received_total{consumer="open",namespace="default"}'] == 1
    assert samples['openconnector_webhooks_forwarded_total{consumer="open",namespace="default"}'] == 1
    assert samples["openconnector_routing_table_version"] >= 1
    assert samples['openconnector_routing_resources{kind="Consumer",ready="true"}'] == 2
