"""The README's walk-through, for real: webhook -> mapping -> register -> event -> subscriber."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.component.conftest import StartGateway, example_manifests
from tests.support.http import post
from tests.support.signing import standard_webhook_headers
from tests.support.sinks import Reply, Sink

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ZAAK = {
    "zaak": {
        "identificatie": "ZAAK-2024-0001",
        "omschrijving": "  Aanvraag omgevingsvergunning ",
        "uuid": "abc123",
        "status": "open",
    }
}


def base(sink: Sink) -> str:
    return f"http://127.0.0.1:{sink.port}"


def signed(body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    headers = standard_webhook_headers((SECRET,), msg_id, int(time.time()), body)
    return {**headers, "Content-Type": "application/json"}


async def test_webhook_is_mapped_stored_emitted_and_delivered(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with (
        Sink() as subscriber,
        Sink(Reply(201, body=b'{"id": "obj-42", "identificatie": "ZAAK-2024-0001"}')) as register,
    ):
        manifests = example_manifests(tmp_path / "m", subscriber=base(subscriber), register=base(register))
        gw = await start_gateway(manifests)
        body = orjson.dumps(ZAAK)
        resp = await post(f"{gw.url}/webhooks/zaaksysteem/zaken", body, signed(body))
        assert resp.status == 201, resp.body
        answer = resp.json()
        assert answer["id"] == "obj-42"

        stored = (await register.wait_for(1))[0]
        assert stored.path == "/api/objects/zaken/zaak"
        assert stored.headers["Authorization"] == "Bearer register-demo-token"
        assert orjson.loads(stored.body) == {
            "identificatie": "ZAAK-2024-0001",
            "omschrijving": "Aanvraag omgevingsvergunning",
            "zaakUrl": "https://zaakregister.example.nl/api/v1/zaken/abc123",
            "status": "open",
            "bronorganisatie": "001823288444",
        }

        delivered = (await subscriber.wait_for(1))[0]
        assert delivered.path == "/hooks/zaak"
        assert delivered.headers["Content-Type"].startswith("application/cloudevents+json")
        assert delivered.headers["Authorization"] == "Bearer subscriber-demo-token"
        event = orjson.loads(delivered.body)
        assert event["type"] == "nl.vng.zgw.zaken.zaak.created"
        assert event["source"] == "urn:nld:oin:00000001823288444000:systeem:openconnector"
        assert event["subject"] == "obj-42"
        assert event["id"] == answer["eventId"]
        assert event["sequence"] == "1"
        assert event["sequencetype"] == "Integer"
        assert event["data"]["id"] == "obj-42"


async def test_failing_register_answers_502_and_emits_nothing(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink() as subscriber, Sink(default=Reply(500)) as register:
        gw = await start_gateway(
            example_manifests(tmp_path / "m", subscriber=base(subscriber), register=base(register))
        )
        body = orjson.dumps(ZAAK)
        resp = await post(f"{gw.url}/webhooks/zaaksysteem/zaken", body, signed(body))
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        assert resp.json()["targetStatus"] == 500
        # The sender retries with the same webhook-id: not refused as a replay, still 502.
        resp = await post(f"{gw.url}/webhooks/zaaksysteem/zaken", body, signed(body))
        assert resp.status == 502
        await register.wait_for(2)
        assert subscriber.requests == []


async def test_schema_violation_answers_422_and_writes_nothing(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink() as subscriber, Sink(Reply(201)) as register:
        gw = await start_gateway(
            example_manifests(tmp_path / "m", subscriber=base(subscriber), register=base(register))
        )
        body = orjson.dumps({"zaak": {"identificatie": "", "uuid": "x", "status": "open"}})  # minLength 1
        resp = await post(f"{gw.url}/webhooks/zaaksysteem/zaken", body, signed(body))
        assert resp.status == 422
        problem = resp.json()
        assert any("identificatie" in e["detail"] for e in problem["errors"])
        assert register.requests == []
        assert subscriber.requests == []
