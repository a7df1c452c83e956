"""The message API's refusals that protect what a subscription receives, on both buses: resend and
replay on a paused subscription (409 not-routed, nothing sent), pull cursors that name their
subscription and never reach past what its pulls handed out, and RFC 3339 times."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from openconnector.delivery.jetstream import JetStreamSettings
from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import StandaloneGateway, start_standalone
from tests.component.conftest import StartGateway
from tests.component.natsserver import NatsServer
from tests.component.test_messages_api import AUTH, CE, NS, OTHER, TOKEN, event, manifests
from tests.component.test_messages_api import bus as bus  # the same buses: memory, and a nats-server
from tests.support.http import Answer, assert_problem, call, post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

JSON = {**AUTH, "Content-Type": "application/json"}


def documents(ok: Sink, failing: Sink, *, paused: bool = False) -> list[dict[str, Any]]:
    """The manifests of test_messages_api in two namespaces, plus a second pull subscription; with
    ``paused`` the push subscriptions of NS are ``spec.status: paused``."""
    docs = manifests(ok, failing) + manifests(ok, failing, OTHER)
    second = {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": "EventSubscription",
        "metadata": {"name": "pulled-too", "namespace": NS},
        "spec": {"eventType": docs[1]["spec"]["type"], "endpoint": f"{ok.url}/pulled-too", "style": "pull"},
    }
    docs.append(second)
    if paused:
        for doc in docs:
            meta = doc["metadata"]
            if meta["namespace"] == NS and meta["name"] in ("ok", "failing"):
                doc["spec"]["status"] = "paused"
    return docs


@dataclass
class World:
    gw: StandaloneGateway
    ok: Sink
    failing: Sink
    directory: Path

    def sub(self, name: str, namespace: str = NS) -> str:
        return f"{self.gw.url}/api/v1alpha1/subscriptions/{namespace}/{name}"

    async def get(self, url: str) -> Answer:
        return await call("GET", url, headers=AUTH)

    async def publish(self, *ids: str, namespace: str = NS) -> None:
        for event_id in ids:
            answer = await post(f"{self.gw.url}/namespaces/{namespace}/events", event(event_id), CE)
            assert answer.status == 202, answer.body

    async def messages(self, name: str, namespace: str = NS) -> list[dict[str, Any]]:
        answer = await self.get(f"{self.sub(name, namespace)}/messages")
        assert answer.status == 200, answer.body
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    async def pull(self, name: str, query: str = "", namespace: str = NS) -> Answer:
        return await self.get(f"{self.sub(name, namespace)}/pull?limit=10{query}")

    def write(self, *, paused: bool) -> None:
        text = yaml.safe_dump_all(documents(self.ok, self.failing, paused=paused))
        (self.directory / "all.yaml").write_text(text)


@pytest.fixture
async def world(tmp_path: Path, start_gateway: StartGateway, bus: dict[str, Any]) -> AsyncIterator[World]:
    async with Sink() as ok, Sink(default=Reply(500, body=b"broken")) as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        found = World(None, ok, failing, directory)  # type: ignore[arg-type]
        found.write(paused=False)
        found.gw = await start_gateway(directory, api_token=TOKEN, **bus)
        ready = await eventually(
            lambda: call("GET", f"{found.gw.url}/readyz"), until=lambda a: a.status == 200
        )
        assert ready.status == 200
        yield found


def ids(answer: Answer) -> list[str]:
    assert answer.status == 200, answer.body
    return [item["id"] for item in answer.json()]


def forged(fields: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")


# ------------------------------------------------------------------------------------------ paused


async def phase(world: World, name: str) -> str | None:
    listed = (await world.get(f"{world.gw.url}/api/v1alpha1/subscriptions")).json()["items"]
    found = next(item for item in listed if item["namespace"] == NS and item["name"] == name)
    return None if found["phase"] is None else str(found["phase"])


async def test_resend_and_replay_on_a_paused_subscription_are_409_and_send_nothing(world: World) -> None:
    await world.publish("p-1", "p-2")
    await eventually(
        lambda: world.messages("ok"), until=lambda items: sum(m["status"] == "delivered" for m in items) == 2
    )
    await eventually(
        lambda: world.messages("failing"),
        until=lambda items: sum(m["status"] == "dropped" for m in items) == 2,
    )
    before = {name: await world.messages(name) for name in ("ok", "failing")}
    sent = (len(world.ok.requests), len(world.failing.requests))

    world.write(paused=True)
    assert world.gw.reload() is True
    assert await eventually(lambda: phase(world, "ok"), until=lambda p: p == "Paused") == "Paused"
    assert await eventually(lambda: phase(world, "failing"), until=lambda p: p == "Paused") == "Paused"

    for name in ("ok", "failing"):
        message = before[name][0]["id"]
        resend = await call("POST", f"{world.sub(name)}/messages/{message}/resend", headers=AUTH)
        problem = assert_problem(resend, 409, "not-routed")
        assert "paused" in problem["detail"]
        replay = await post(
            f"{world.sub(name)}/replay",
            orjson.dumps({"since": "2000-01-01T00:00:00Z", "statuses": ["delivered", "dropped"]}),
            JSON,
        )
        assert_problem(replay, 409, "not-routed")

    await asyncio.sleep(0.5)  # what was queued would have been delivered (and recorded) by now
    assert (len(world.ok.requests), len(world.failing.requests)) == sent
    for name in ("ok", "failing"):
        after = await world.messages(name)
        assert [(m["id"], m["status"], m["attemptCount"]) for m in after] == [
            (m["id"], m["status"], m["attemptCount"]) for m in before[name]
        ]

    # Active again: the same calls are taken and delivered.
    world.write(paused=False)
    assert world.gw.reload() is True
    await eventually(lambda: phase(world, "ok"), until=lambda p: p == "Active")
    resend = await call("POST", f"{world.sub('ok')}/messages/{before['ok'][0]['id']}/resend", headers=AUTH)
    assert resend.status == 202, resend.body
    await world.ok.wait_for(sent[0] + 1)


# -------------------------------------------------------------------------------------------- pull


async def test_a_pull_cursor_works_only_for_its_own_subscription(world: World) -> None:
    await world.publish("c-1", "c-2")
    await world.publish("o-1", namespace=OTHER)
    first = await eventually(lambda: world.pull("pulled"), until=lambda a: len(a.json()) == 2)
    assert ids(first) == ["c-1", "c-2"]
    cursor = first.headers["Next-Cursor"]
    other = await eventually(
        lambda: world.pull("pulled", namespace=OTHER), until=lambda a: len(a.json()) == 1
    )
    assert ids(other) == ["o-1"]
    assert ids(await world.pull("pulled-too")) == ["c-1", "c-2"]

    # Another subscription's cursor (same name in another namespace, another name in this one): refused,
    # as a cursor this API never handed out, and nothing of theirs is acknowledged.
    problem = assert_problem(await world.pull("pulled", f"&cursor={cursor}", OTHER), 400, "invalid-cursor")
    assert problem["detail"] == "cursor: not a cursor this API handed out"
    assert_problem(await world.pull("pulled-too", f"&cursor={cursor}"), 400, "invalid-cursor")
    assert ids(await world.pull("pulled", namespace=OTHER)) == ["o-1"]
    assert ids(await world.pull("pulled-too")) == ["c-1", "c-2"]
    assert all(m["status"] == "pending" for m in await world.messages("pulled-too"))

    # Its own subscription takes it: the two events it returned are acknowledged.
    assert ids(await world.pull("pulled", f"&cursor={cursor}")) == []
    delivered = [m["eventId"] for m in await world.messages("pulled") if m["status"] == "delivered"]
    assert sorted(delivered) == ["c-1", "c-2"]


async def test_a_cursor_beyond_what_was_handed_out_is_refused(world: World) -> None:
    await world.publish("b-1")
    first = await eventually(lambda: world.pull("pulled"), until=lambda a: len(a.json()) == 1)
    handed_out = orjson.loads(base64.urlsafe_b64decode(first.headers["Next-Cursor"] + "=="))
    path = f"{NS}/pulled"
    for bad in (
        forged({**handed_out, "s": handed_out["s"] + 10**9}),
        forged({"k": "pull", "p": path, "s": 2**62}),
        forged({"k": "pull", "s": handed_out["s"]}),  # the old form, naming no subscription
        forged({"k": "list", "p": path, "s": handed_out["s"]}),
    ):
        assert_problem(await world.pull("pulled", f"&cursor={bad}"), 400, "invalid-cursor")
    # Nothing was acknowledged, and what comes later is pulled too.
    assert ids(await world.pull("pulled")) == ["b-1"]
    await world.publish("b-2")
    later = await eventually(lambda: world.pull("pulled"), until=lambda a: len(a.json()) == 2)
    assert ids(later) == ["b-1", "b-2"]
    acknowledging = await world.pull("pulled", f"&cursor={later.headers['Next-Cursor']}")
    assert ids(acknowledging) == []
    # The cursor of an empty batch is good for the next poll.
    assert ids(await world.pull("pulled", f"&cursor={acknowledging.headers['Next-Cursor']}")) == []
    statuses = {m["eventId"]: m["status"] for m in await world.messages("pulled")}
    assert statuses == {"b-1": "delivered", "b-2": "delivered"}


async def test_a_fresh_subscription_takes_the_cursor_of_its_empty_batch(world: World) -> None:
    empty = await world.pull("pulled-too")
    assert ids(empty) == []
    assert ids(await world.pull("pulled-too", f"&cursor={empty.headers['Next-Cursor']}")) == []
    await world.publish("f-1")
    found = await eventually(lambda: world.pull("pulled-too"), until=lambda a: len(a.json()) == 1)
    assert ids(found) == ["f-1"]


async def test_a_pull_cursor_from_before_a_memory_restart_is_refused(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    """On the memory bus the log starts empty: an old cursor would otherwise hide the new events."""
    async with Sink() as ok, Sink() as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        (directory / "all.yaml").write_text(yaml.safe_dump_all(documents(ok, failing)))
        first = await start_gateway(directory, api_token=TOKEN)
        url = f"{first.url}/api/v1alpha1/subscriptions/{NS}/pulled/pull"
        for event_id in ("m-1", "m-2", "m-3"):
            await post(f"{first.url}/namespaces/{NS}/events", event(event_id), CE)
        pulled = await eventually(lambda: call("GET", url, headers=AUTH), until=lambda a: len(a.json()) == 3)
        cursor = pulled.headers["Next-Cursor"]
        await first.stop()

        second = await start_gateway(directory, api_token=TOKEN)
        url = f"{second.url}/api/v1alpha1/subscriptions/{NS}/pulled/pull"
        assert_problem(await call("GET", f"{url}?cursor={cursor}", headers=AUTH), 400, "invalid-cursor")
        await post(f"{second.url}/namespaces/{NS}/events", event("m-4"), CE)
        again = await eventually(lambda: call("GET", url, headers=AUTH), until=lambda a: len(a.json()) == 1)
        assert ids(again) == ["m-4"]


async def test_on_jetstream_a_cursor_handed_out_before_a_restart_still_acknowledges(tmp_path: Path) -> None:
    with NatsServer() as server:
        jetstream = JetStreamSettings(servers=(server.url,), stream="S12RESTART", publish_timeout=2.0)
        settings = GatewaySettings(
            port=0, drain_seconds=1.0, api_token=TOKEN, bus="jetstream", jetstream=jetstream
        )
        async with Sink() as ok, Sink() as failing:
            directory = tmp_path / "m"
            directory.mkdir()
            (directory / "all.yaml").write_text(yaml.safe_dump_all(documents(ok, failing)))
            first = await start_standalone([directory], settings, watch=False)
            try:
                await eventually(lambda: call("GET", f"{first.url}/readyz"), until=lambda a: a.status == 200)
                for event_id in ("k-1", "k-2"):
                    await post(f"{first.url}/namespaces/{NS}/events", event(event_id), CE)
                url = f"{first.url}/api/v1alpha1/subscriptions/{NS}/pulled/pull"
                pulled = await eventually(
                    lambda: call("GET", url, headers=AUTH), until=lambda a: len(a.json()) == 2
                )
                cursor = pulled.headers["Next-Cursor"]
            finally:
                await first.stop()

            second = await start_standalone([directory], settings, watch=False)
            try:
                url = f"{second.url}/api/v1alpha1/subscriptions/{NS}/pulled/pull"
                # Asked at once: the new process reads the log back first (or waits a little for it).
                acknowledging = await call("GET", f"{url}?cursor={cursor}", headers=AUTH)
                assert ids(acknowledging) == []
                await post(f"{second.url}/namespaces/{NS}/events", event("k-3"), CE)
                rest = await eventually(
                    lambda: call("GET", url, headers=AUTH), until=lambda a: len(a.json()) == 1
                )
                assert ids(rest) == ["k-3"]
            finally:
                await second.stop()


# ----------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    "since", ["2026-01-01t00:00:00z", "2026-01-01T00:00:00z", "2026-01-01T01:00:00.5%2B01:00"]
)
async def test_rfc3339_times_in_either_case_are_taken(world: World, since: str) -> None:
    await world.publish("t-1")
    await eventually(lambda: world.messages("ok"), until=lambda items: len(items) == 1)
    answer = await world.get(f"{world.sub('ok')}/messages?since={since}&until=2999-01-01t00:00:00Z")
    assert answer.status == 200, answer.body
    assert [m["eventId"] for m in answer.json()["items"]] == ["t-1"]
    replay = await post(
        f"{world.sub('failing')}/replay", orjson.dumps({"since": since.replace("%2B", "+")}), JSON
    )
    assert replay.status == 202, replay.body


@pytest.mark.parametrize(
    "since",
    [
        "2026-W01-1T00:00Z",
        "20260101T000000Z",
        "2026-01-01T00:00Z",
        "2026-01-01%2000:00:00Z",
        "2026-01-01T00:00:00%2B0100",
        "2026-01-01",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
    ],
)
async def test_other_iso_8601_forms_are_refused(world: World, since: str) -> None:
    for name in ("since", "until"):
        answer = await world.get(f"{world.sub('ok')}/messages?{name}={since}")
        assert_problem(answer, 400, "invalid-filter")
    body = orjson.dumps({"since": since.replace("%20", " ").replace("%2B", "+")})
    assert_problem(await post(f"{world.sub('failing')}/replay", body, JSON), 400, "invalid-filter")
