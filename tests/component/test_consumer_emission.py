"""What a Consumer emits: never for a disabled Event, only data its Event's schema accepts, and (for an
``nl-gov`` Event) only events the NL GOV profile accepts. JWT refusals do not say which claim failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import yaml

from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.support.http import assert_problem, call, post
from tests.support.sinks import Sink

API = "openconnector.nl/v1alpha1"
JSON = {"Content-Type": "application/json"}
SOURCE_URN = "urn:nld:oin:00000001823288444000:systeem:webshop"
JWT_SECRET = "jwt-shared-secret-" + "x" * 46
SCHEMA = {"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "integer"}}}


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def event(name: str, type_: str, **spec: Any) -> dict[str, Any]:
    return resource("Event", name, {"type": type_, "source": SOURCE_URN, **spec})


def consumer(name: str, event_name: str, **spec: Any) -> dict[str, Any]:
    return resource("Consumer", name, {"endpoint": name, "event": event_name, **spec})


def manifests(directory: Path, target: Sink, subscriber: Sink) -> Path:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "credentials"},
            "stringData": {"jwt": JWT_SECRET},
        },
        resource("Source", "api", {"location": target.url_for("/api")}),
        event("off", "nl.example.webshop.order.cancelled", isEnabled=False),
        event("typed", "nl.example.webshop.order.paid", schema={"inline": SCHEMA}),
        event("badly-named", "nl.example.v1.order.shipped", profile="nl-gov"),
        event("laxly-named", "nl.example.v1.order.returned", profile="cloudevents"),
        consumer("disabled-only", "off"),
        consumer("disabled-stored", "off", targetType="source", targetId="api"),
        consumer("typed-stored", "typed", targetType="source", targetId="api"),
        consumer("typed-only", "typed"),
        consumer("profile-strict", "badly-named"),
        consumer("profile-lax", "laxly-named"),
        consumer(
            "jwt-hook",
            "typed",
            auth={"type": "jwt", "secretRefs": [{"name": "credentials", "key": "jwt"}]},
        ),
        resource(
            "EventSubscription",
            "everything",
            {"eventType": "*", "endpoint": subscriber.url},
        ),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


@pytest.fixture
async def target() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def subscriber() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def gw(
    tmp_path: Path, start_gateway: StartGateway, target: Sink, subscriber: Sink
) -> StandaloneGateway:
    return await start_gateway(manifests(tmp_path / "m", target, subscriber))


async def statuses(gw: StandaloneGateway) -> dict[tuple[str, str], dict[str, Any]]:
    answer = await call("GET", f"{gw.url}/api/v1alpha1/status")
    assert answer.status == 200, answer.body
    return {(r["kind"], r["name"]): r["status"] for r in answer.json()["resources"]}


def ready(status: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


async def settle(gw: StandaloneGateway) -> None:
    """Wait until every delivery the gateway queued has ended, so 'nothing arrived' is a fact."""
    await gw.gateway.dispatcher.join()


# ---------------------------------------------------------------------------- 16.4 disabled Event


async def test_a_disabled_event_is_not_emitted_and_the_consumer_says_why(
    gw: StandaloneGateway, target: Sink, subscriber: Sink
) -> None:
    nothing_to_do = await post(f"{gw.url}/webhooks/disabled-only", orjson.dumps({"orderId": 1}), JSON)
    problem = assert_problem(nothing_to_do, 409, "event-disabled")
    assert "isEnabled: false" in problem["detail"]

    stored = await post(f"{gw.url}/webhooks/disabled-stored", orjson.dumps({"orderId": 2}), JSON)
    assert stored.status == 200, stored.body
    body = stored.json()
    assert body["targetStatus"] == 200
    assert "eventId" not in body
    assert "isEnabled: false" in body["eventError"]
    assert len(target.requests) == 1

    await settle(gw)
    assert subscriber.requests == []
    found = await statuses(gw)
    for name in ("disabled-only", "disabled-stored"):
        condition = ready(found[("Consumer", name)])
        assert (condition["status"], condition["reason"]) == ("True", "EventDisabled")
        assert "'off' is disabled" in condition["message"]


# ---------------------------------------------------------------------------- 16.5 schema and profile


@pytest.mark.parametrize("endpoint", ["typed-stored", "typed-only"])
async def test_consumer_data_is_validated_against_the_events_schema_for_every_target(
    gw: StandaloneGateway, target: Sink, subscriber: Sink, endpoint: str
) -> None:
    answer = await post(f"{gw.url}/webhooks/{endpoint}", orjson.dumps({"orderId": "not a number"}), JSON)

    problem = assert_problem(answer, 422, "schema-violation")
    assert problem["errors"]
    assert target.requests == []
    await settle(gw)
    assert subscriber.requests == []

    valid = await post(f"{gw.url}/webhooks/{endpoint}", orjson.dumps({"orderId": 7}), JSON)
    assert valid.status == 200, valid.body
    delivered = await subscriber.wait_for(1)
    assert orjson.loads(delivered[0].body)["data"] == {"orderId": 7}


async def test_emitted_events_of_an_nl_gov_event_must_follow_the_profile(
    gw: StandaloneGateway, subscriber: Sink
) -> None:
    strict = await post(f"{gw.url}/webhooks/profile-strict", b"{}", JSON)
    problem = assert_problem(strict, 422, "emission-failed")
    assert "NL GOV" in problem["detail"]
    assert "type" in problem["detail"]

    lax = await post(f"{gw.url}/webhooks/profile-lax", b"{}", JSON)
    assert lax.status == 200, lax.body
    delivered = await subscriber.wait_for(1)
    assert orjson.loads(delivered[0].body)["type"] == "nl.example.v1.order.returned"


# ---------------------------------------------------------------------------- 16.8 JWT refusals


async def test_jwt_refusals_do_not_say_which_claim_failed(gw: StandaloneGateway) -> None:
    now = int(time.time())
    tokens = {
        "expired": jwt.encode({"iss": "jwt-hook", "iat": now - 7200}, JWT_SECRET, algorithm="HS256"),
        "wrong-issuer": jwt.encode({"iss": "someone", "iat": now}, JWT_SECRET, algorithm="HS256"),
        "bad-signature": jwt.encode({"iss": "jwt-hook", "iat": now}, "y" * 64, algorithm="HS256"),
    }
    details = set()
    for token in tokens.values():
        answer = await post(
            f"{gw.url}/webhooks/jwt-hook", b"{}", {**JSON, "Authorization": f"Bearer {token}"}
        )
        details.add(assert_problem(answer, 401, "unauthorized")["detail"])
    assert details == {"the token is not valid"}
