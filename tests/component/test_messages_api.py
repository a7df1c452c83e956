"""The message log API (issue 14) on both buses: records, redaction, pagination, resend, replay, pull,
and every refusal as problem+json."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from openconnector.delivery.jetstream import JetStreamSettings
from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.component.natsserver import NatsServer
from tests.support.http import Answer, assert_problem, call, post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

NS = "team-a"
OTHER = "team-b"
TYPE = "nl.example.thing.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:test"
CE = {"Content-Type": "application/cloudevents+json"}
TOKEN = "api-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SUBSCRIBER_TOKEN = "subscriber-secret-value"
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_streams = itertools.count(1)


@pytest.fixture(params=["memory", "jetstream"])
def bus(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "memory":
        yield {"bus": "memory"}
        return
    with NatsServer() as server:
        settings = JetStreamSettings(servers=(server.url,), stream=f"M{next(_streams)}", publish_timeout=2.0)
        yield {"bus": "jetstream", "jetstream": settings}


def manifests(ok: Sink, failing: Sink, namespace: str = NS) -> list[dict[str, Any]]:
    meta = {"namespace": namespace}

    def subscription(name: str, sink: Sink, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "EventSubscription",
            "metadata": {"name": name, **meta},
            "spec": {"eventType": TYPE, "endpoint": f"{sink.url}/{name}", **spec},
        }

    fast = {"retries": 1, "backoffDelay": "PT0.05S", "backoffMax": "PT0.1S", "timeout": "PT5S"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", **meta},
            "stringData": {"token": SUBSCRIBER_TOKEN, "signing": SIGNING},
        },
        {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "Event",
            "metadata": {"name": "thing", **meta},
            "spec": {"type": TYPE, "source": SOURCE},
        },
        subscription(
            "ok",
            ok,
            headers={"X-Plain": "visible"},
            auth={
                "type": "bearer",
                "secretRef": {"name": "creds", "key": "token"},
                "signingSecretRef": {"name": "creds", "key": "signing"},
            },
            delivery=fast,
        ),
        subscription("failing", failing, delivery=fast),
        subscription("pulled", ok, style="pull"),
    ]


def event(event_id: str, **extra: Any) -> bytes:
    body = {"specversion": "1.0", "id": event_id, "type": TYPE, "source": SOURCE, "data": {"n": event_id}}
    return orjson.dumps(body | extra)


@dataclass
class Setup:
    gw: StandaloneGateway
    ok: Sink
    failing: Sink

    @property
    def api(self) -> str:
        return f"{self.gw.url}/api/v1alpha1"

    def sub(self, name: str, namespace: str = NS) -> str:
        return f"{self.api}/subscriptions/{namespace}/{name}"

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Answer:
        return await call("GET", url, headers=AUTH if headers is None else headers)

    async def publish(self, *ids: str) -> None:
        for event_id in ids:
            answer = await post(f"{self.gw.url}/namespaces/{NS}/events", event(event_id), CE)
            assert answer.status == 202, answer.body

    async def message_of(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        query = f"?status={status}" if status else ""
        answer = await self.get(f"{self.sub(name)}/messages{query}")
        assert answer.status == 200, answer.body
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


@pytest.fixture
async def setup(tmp_path: Path, start_gateway: StartGateway, bus: dict[str, Any]) -> AsyncIterator[Setup]:
    failing_reply = Reply(500, headers={"X-Why": "broken", "Set-Cookie": "s=1"}, body=b"nope, broken")
    async with Sink() as ok, Sink(default=failing_reply) as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        docs = manifests(ok, failing) + manifests(ok, failing, OTHER)
        (directory / "all.yaml").write_text(yaml.safe_dump_all(docs))
        gw = await start_gateway(directory, api_token=TOKEN, **bus)
        ready = await eventually(lambda: call("GET", f"{gw.url}/readyz"), until=lambda a: a.status == 200)
        assert ready.status == 200
        yield Setup(gw, ok, failing)


async def test_messages_record_delivery_with_redacted_request_headers(setup: Setup) -> None:
    await setup.publish("e-1")
    await setup.ok.wait_for(1)
    items = await eventually(lambda: setup.message_of("ok", "delivered"), until=lambda items: len(items) == 1)
    listed = items[0]
    assert listed["eventId"] == "e-1"
    assert listed["type"] == TYPE
    assert listed["namespace"] == NS
    assert listed["subscription"] == "ok"
    answer = await setup.get(f"{setup.sub('ok')}/messages/{listed['id']}")
    assert answer.status == 200
    message = answer.json()
    assert message["status"] == "delivered"
    [attempt] = message["attempts"]
    assert attempt["responseStatus"] == 200
    headers = attempt["requestHeaders"]
    assert headers["Authorization"] == "[redacted]"
    assert headers["webhook-signature"] == "[redacted]"
    assert headers["X-Plain"] == "visible"
    assert SUBSCRIBER_TOKEN not in answer.body.decode()
    # What the subscriber really got carried the secret the log hides.
    assert setup.ok.requests[0].headers["Authorization"] == f"Bearer {SUBSCRIBER_TOKEN}"


async def test_failed_message_keeps_attempts_with_response_excerpt(setup: Setup) -> None:
    await setup.publish("e-fail")
    items = await eventually(
        lambda: setup.message_of("failing", "failed"), until=lambda items: len(items) == 1
    )
    message = (await setup.get(f"{setup.sub('failing')}/messages/{items[0]['id']}")).json()
    assert message["status"] == "dropped"
    assert [a["number"] for a in message["attempts"]] == [1, 2]
    first = message["attempts"][0]
    assert first["responseStatus"] == 500
    assert first["retryInSeconds"] is not None
    assert first["responseBodyExcerpt"] == "nope, broken"
    assert first["responseHeaders"]["X-Why"] == "broken"
    assert first["responseHeaders"]["Set-Cookie"] == "[redacted]"


async def test_pagination_walks_every_message_once_newest_first(setup: Setup) -> None:
    ids = [f"p-{n:02d}" for n in range(23)]
    await setup.publish(*ids)
    await eventually(lambda: setup.message_of("ok", "delivered"), until=lambda items: len(items) == 23)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = f"{setup.sub('ok')}/messages?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = (await setup.get(url)).json()
        seen.extend(item["eventId"] for item in body["items"])
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 5
    assert seen == list(reversed(ids))


async def test_time_filter_and_messages_of_one_event(setup: Setup) -> None:
    await setup.publish("t-1")
    await eventually(lambda: setup.message_of("ok", "delivered"), until=lambda items: len(items) == 1)
    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    answer = await setup.get(f"{setup.sub('ok')}/messages?since={future.replace('+', '%2B')}")
    assert answer.json()["items"] == []
    by_event = (await setup.get(f"{setup.api}/events/t-1/messages")).json()["items"]
    assert sorted(item["subscription"] for item in by_event) == ["failing", "ok", "pulled"]
    assert {item["namespace"] for item in by_event} == {NS}


async def test_resend_adds_an_attempt_to_the_same_message(setup: Setup) -> None:
    await setup.publish("r-1")
    [item] = await eventually(
        lambda: setup.message_of("ok", "delivered"), until=lambda items: len(items) == 1
    )
    answer = await call("POST", f"{setup.sub('ok')}/messages/{item['id']}/resend", headers=AUTH)
    assert answer.status == 202, answer.body
    await setup.ok.wait_for(2)

    async def attempts() -> list[Any]:
        message = (await setup.get(f"{setup.sub('ok')}/messages/{item['id']}")).json()
        return list(message["attempts"]) if message["status"] == "delivered" else []

    found = await eventually(attempts, until=lambda found: len(found) == 2)
    assert [a["responseStatus"] for a in found] == [200, 200]
    assert [orjson.loads(r.body)["id"] for r in setup.ok.requests] == ["r-1", "r-1"]


async def test_replay_resends_failed_messages_since_a_time(setup: Setup) -> None:
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
    await setup.publish("f-1", "f-2")
    await eventually(lambda: setup.message_of("failing", "dropped"), until=lambda items: len(items) == 2)
    requests_before = len(setup.failing.requests)
    body = orjson.dumps({"since": before.isoformat()})
    answer = await post(f"{setup.sub('failing')}/replay", body, {**AUTH, "Content-Type": "application/json"})
    assert answer.status == 202, answer.body
    assert answer.json() == {"replayed": 2}
    await setup.failing.wait_for(requests_before + 4)  # two attempts each, again


async def test_pull_returns_a_batch_and_the_cursor_acknowledges(setup: Setup) -> None:
    await setup.publish("q-1", "q-2", "q-3")
    first = await eventually(
        lambda: setup.get(f"{setup.sub('pulled')}/pull?limit=2"), until=lambda a: len(a.json()) == 2
    )
    assert first.content_type == "application/cloudevents-batch+json"
    assert [e["id"] for e in first.json()] == ["q-1", "q-2"]
    cursor = first.headers["Next-Cursor"]
    again = await setup.get(f"{setup.sub('pulled')}/pull?limit=2")  # no cursor: nothing acknowledged
    assert [e["id"] for e in again.json()] == ["q-1", "q-2"]
    second = await setup.get(f"{setup.sub('pulled')}/pull?limit=2&cursor={cursor}")
    assert [e["id"] for e in second.json()] == ["q-3"]
    third = await setup.get(f"{setup.sub('pulled')}/pull?limit=2&cursor={second.headers['Next-Cursor']}")
    assert third.json() == []
    delivered = await setup.message_of("pulled", "delivered")
    assert sorted(m["eventId"] for m in delivered) == ["q-1", "q-2", "q-3"]
    assert all("pulled" not in r.path for r in setup.ok.requests)  # never pushed
    status = (await setup.get(f"{setup.api}/status")).json()["resources"]
    pulled = next(r for r in status if r["name"] == "pulled" and r["namespace"] == NS)
    assert pulled["status"]["delivered"] == 3


async def test_refusals_are_problems(setup: Setup) -> None:
    messages = f"{setup.sub('ok')}/messages"
    assert_problem(await call("GET", messages), 401, "unauthenticated")
    assert_problem(
        await call("GET", messages, headers={"Authorization": "Bearer wrong"}), 401, "unauthenticated"
    )
    assert_problem(
        await call("GET", messages, headers={"Authorization": "Basic eDp5"}), 401, "unauthenticated"
    )
    assert_problem(await setup.get(f"{setup.sub('nope')}/messages"), 404, "unknown-subscription")
    assert_problem(await setup.get(f"{messages}/msg_unknown"), 404, "unknown-message")
    assert_problem(await setup.get(f"{messages}?cursor=bogus"), 400, "invalid-cursor")
    assert_problem(await setup.get(f"{messages}?status=lost"), 400, "invalid-filter")
    assert_problem(await setup.get(f"{messages}?limit=0"), 400, "invalid-filter")
    assert_problem(await setup.get(f"{messages}?since=yesterday"), 400, "invalid-filter")
    assert_problem(await setup.get(f"{setup.sub('ok')}/pull"), 409, "push-subscription")
    resend = await call("POST", f"{setup.sub('pulled')}/messages/x/resend", headers=AUTH)
    assert_problem(resend, 409, "pull-subscription")
    replay = await post(f"{setup.sub('ok')}/replay", b"[]", {**AUTH, "Content-Type": "application/json"})
    assert_problem(replay, 400, "invalid-replay")
    too_big = await post(f"{setup.sub('ok')}/replay", b"{" + b" " * 20000 + b"}", AUTH)
    assert_problem(too_big, 413, "body-too-large")
    unauthenticated_resend = await call("POST", f"{setup.sub('ok')}/messages/x/resend")
    assert_problem(unauthenticated_resend, 401, "unauthenticated")


async def test_without_a_token_only_loopback_is_answered(tmp_path: Path, start_gateway: StartGateway) -> None:
    async with Sink() as ok, Sink() as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        (directory / "all.yaml").write_text(yaml.safe_dump_all(manifests(ok, failing)))
        gw = await start_gateway(directory)
        answer = await call("GET", f"{gw.url}/api/v1alpha1/subscriptions")
        assert answer.status == 200  # the test client is on loopback
        names = sorted(item["name"] for item in answer.json()["items"])
        assert names == ["failing", "ok", "pulled"]
        assert answer.json()["store"]["durable"] is False


async def test_status_and_attempts_need_the_api_token_too(setup: Setup) -> None:
    """The older read endpoints answer what the message API answers: a token, or 401 problem+json."""
    await setup.publish("e-status")
    await setup.ok.wait_for(1)
    status_url = f"{setup.api}/status"
    attempts_url = f"{setup.sub('ok')}/attempts"
    for url in (status_url, attempts_url):
        assert_problem(await call("GET", url), 401, "unauthenticated")
        assert_problem(
            await call("GET", url, headers={"Authorization": "Bearer wrong"}), 401, "unauthenticated"
        )
    status = await setup.get(status_url)
    assert status.status == 200, status.body
    names = {(r["kind"], r["namespace"], r["name"]) for r in status.json()["resources"]}
    assert ("EventSubscription", NS, "ok") in names
    assert ("EventSubscription", OTHER, "ok") in names
    attempts = await eventually(lambda: setup.get(attempts_url), until=lambda a: bool(a.json()["attempts"]))
    assert attempts.json()["subscription"] == f"{NS}/ok"
    assert attempts.json()["attempts"][0]["outcome"] is not None
    assert_problem(await setup.get(f"{setup.sub('nope')}/attempts"), 404, "unknown-subscription")
