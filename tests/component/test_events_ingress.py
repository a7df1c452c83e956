"""POST /events on a real gateway: every content mode accepted and fanned out, every refusal precise.

Each refusal is checked for its status code, ``application/problem+json`` and the problem's fields
(RFC 9457: type, title, status, detail, and the ``errors`` list naming attributes and batch indexes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.support.http import Answer, assert_problem, call, post
from tests.support.sinks import RecordedRequest, Sink

API = "openconnector.nl/v1alpha1"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

ZAAK_TYPE = "nl.vng.zgw.zaken.zaak.created"  # nl-gov profile, with a JSON Schema
LEGACY_TYPE = "nl.example.legacy.thing.changed"  # cloudevents (lax) profile
UNDEFINED_TYPE = "nl.example.other.thing.happened"  # no Event defines it; one subscription wants it
SOURCE = "urn:nld:oin:00000001823288444000:systeem:zaaksysteem"
ZAAK_DATA = {"zaakUrl": "https://zaken.example.nl/zaken/1", "identificatie": "ZAAK-1"}


# ----------------------------------------------------------------------------------------- helpers


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


def subscription(name: str, event_type: str, endpoint: str, content_mode: str) -> dict[str, Any]:
    # One request at a time and no retries: the sink sees events in the order they were accepted.
    return resource(
        "EventSubscription",
        name,
        {
            "eventType": event_type,
            "endpoint": endpoint,
            "contentMode": content_mode,
            "delivery": {"retries": 0, "maxConcurrency": 1},
        },
    )


def manifests(directory: Path, structured: Sink, binary: Sink) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    schema = {
        "type": "object",
        "required": ["zaakUrl", "identificatie"],
        "properties": {
            "zaakUrl": {"type": "string", "format": "uri"},
            "identificatie": {"type": "string", "minLength": 1},
        },
    }
    docs = [
        resource(
            "Event", "zaak-created", {"type": ZAAK_TYPE, "source": SOURCE, "schema": {"inline": schema}}
        ),
        resource("Event", "legacy", {"type": LEGACY_TYPE, "source": SOURCE, "profile": "cloudevents"}),
        subscription("zaak-structured", ZAAK_TYPE, structured.url, "structured"),
        subscription("zaak-binary", ZAAK_TYPE, binary.url, "binary"),
        subscription("legacy-structured", LEGACY_TYPE, structured.url, "structured"),
        subscription("undefined-structured", UNDEFINED_TYPE, structured.url, "structured"),
    ]
    (directory / "events.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


def ce(event_id: str = "evt-1", **overrides: Any) -> dict[str, Any]:
    """A valid NL GOV zaak.created event in the JSON format; ``None`` overrides remove an attribute."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": ZAAK_TYPE,
        "time": "2024-06-15T10:30:00Z",
        "datacontenttype": "application/json",
        "data": ZAAK_DATA,
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def binary_headers(event_id: str = "evt-b", **overrides: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": SOURCE,
        "ce-type": ZAAK_TYPE,
        "ce-time": "2024-06-15T10:30:00Z",
        "Content-Type": "application/json",
    }
    headers.update(overrides)
    return headers


async def send(gw: StandaloneGateway, document: object, content_type: str = STRUCTURED) -> Answer:
    return await post(f"{gw.url}/events", orjson.dumps(document), {"Content-Type": content_type})


def error_attributes(body: Mapping[str, Any]) -> list[tuple[int | None, str | None]]:
    return [(e["index"], e["attribute"]) for e in body["errors"]]


def metric_value(text: str, sample: str) -> float:
    """The value of one Prometheus sample line (``name{labels}``), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
async def structured_sink() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def binary_sink() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def gw(
    tmp_path: Path, start_gateway: StartGateway, structured_sink: Sink, binary_sink: Sink
) -> StandaloneGateway:
    return await start_gateway(manifests(tmp_path / "m", structured_sink, binary_sink))


def delivered_id(request: RecordedRequest) -> str:
    if request.headers.get("Content-Type", "").startswith(STRUCTURED):
        return str(orjson.loads(request.body)["id"])
    return request.headers["ce-id"]


async def assert_nothing_was_published(gw: StandaloneGateway, *sinks: Sink) -> None:
    """No event was handed to delivery (the counter moves before the answer is sent), and a marker sent
    now is the first thing each sink receives: the zaak subscriptions deliver one event at a time, in
    order, so anything queued before it would have arrived first."""
    metrics = (await call("GET", f"{gw.url}/metrics")).body.decode()
    emitted = [
        line for line in metrics.splitlines() if line.startswith("openconnector_events_emitted_total{")
    ]
    assert emitted == [], emitted
    answer = await send(gw, ce("marker"))
    assert answer.status == 202, answer.body
    for sink in sinks:
        assert [delivered_id(r) for r in await sink.wait_for(1)] == ["marker"]


# ------------------------------------------------------------------------------------ accepted


async def test_structured_event_reaches_each_subscription_in_its_content_mode(
    gw: StandaloneGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    answer = await send(gw, ce("evt-1", subject="zaak-1"))

    assert answer.status == 202, answer.body
    assert answer.content_type == "application/json"
    assert answer.json() == {"accepted": 1, "deliveries": 2}

    as_structured = (await structured_sink.wait_for(1))[0]
    assert as_structured.headers["Content-Type"].startswith(STRUCTURED)
    assert orjson.loads(as_structured.body) == ce("evt-1", subject="zaak-1")

    as_binary = (await binary_sink.wait_for(1))[0]
    assert as_binary.headers["ce-id"] == "evt-1"
    assert as_binary.headers["ce-type"] == ZAAK_TYPE
    assert as_binary.headers["ce-source"] == SOURCE
    assert as_binary.headers["ce-specversion"] == "1.0"
    assert as_binary.headers["ce-subject"] == "zaak-1"
    assert as_binary.headers["ce-time"] == "2024-06-15T10:30:00Z"
    assert as_binary.headers["Content-Type"] == "application/json"
    assert "ce-datacontenttype" not in as_binary.headers
    assert orjson.loads(as_binary.body) == ZAAK_DATA


async def test_binary_event_is_accepted_and_delivered(
    gw: StandaloneGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    answer = await post(f"{gw.url}/events", orjson.dumps(ZAAK_DATA), binary_headers("evt-b"))

    assert answer.status == 202, answer.body
    assert answer.json() == {"accepted": 1, "deliveries": 2}
    as_structured = orjson.loads((await structured_sink.wait_for(1))[0].body)
    assert as_structured["id"] == "evt-b"
    assert as_structured["datacontenttype"] == "application/json"
    assert as_structured["data"] == ZAAK_DATA
    as_binary = (await binary_sink.wait_for(1))[0]
    assert as_binary.headers["ce-id"] == "evt-b"
    assert orjson.loads(as_binary.body) == ZAAK_DATA


async def test_batch_is_accepted_and_every_event_delivered(
    gw: StandaloneGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    answer = await send(gw, [ce("evt-1"), ce("evt-2")], BATCH)

    assert answer.status == 202, answer.body
    assert answer.json() == {"accepted": 2, "deliveries": 4}
    structured = await structured_sink.wait_for(2)
    assert [orjson.loads(r.body)["id"] for r in structured] == ["evt-1", "evt-2"]
    binary = await binary_sink.wait_for(2)
    assert [r.headers["ce-id"] for r in binary] == ["evt-1", "evt-2"]


async def test_an_empty_batch_is_accepted(gw: StandaloneGateway) -> None:
    answer = await send(gw, [], BATCH)
    assert answer.status == 202, answer.body
    assert answer.json() == {"accepted": 0, "deliveries": 0}


async def test_unknown_type_is_routed_when_unknown_types_are_allowed(
    tmp_path: Path, start_gateway: StartGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    gw = await start_gateway(
        manifests(tmp_path / "m", structured_sink, binary_sink), allow_unknown_types=True
    )

    answer = await send(gw, ce("evt-u", type=UNDEFINED_TYPE, data={"any": "thing"}))

    assert answer.status == 202, answer.body
    assert answer.json() == {"accepted": 1, "deliveries": 1}
    delivered = orjson.loads((await structured_sink.wait_for(1))[0].body)
    assert delivered["type"] == UNDEFINED_TYPE
    assert binary_sink.requests == []


# ------------------------------------------------------------------------------------ refused


async def test_malformed_structured_event_names_every_bad_attribute(gw: StandaloneGateway) -> None:
    answer = await send(gw, ce(id=None, specversion="0.3", time="yesterday"))

    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert sorted(error_attributes(body), key=str) == [(None, "id"), (None, "specversion"), (None, "time")]
    assert all(e["detail"].startswith(e["attribute"] + ":") for e in body["errors"])


async def test_malformed_binary_event_names_the_headers(gw: StandaloneGateway) -> None:
    headers = binary_headers()
    del headers["ce-id"], headers["ce-source"]

    answer = await post(f"{gw.url}/events", orjson.dumps(ZAAK_DATA), headers)

    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert sorted(error_attributes(body), key=str) == [(None, "ce-id"), (None, "ce-source")]


async def test_malformed_event_in_a_batch_is_named_by_index_and_nothing_is_delivered(
    gw: StandaloneGateway, structured_sink: Sink
) -> None:
    answer = await send(gw, [ce("evt-1"), ce("evt-2", source=None)], BATCH)

    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert error_attributes(body) == [(1, "source")]
    await assert_nothing_was_published(gw, structured_sink)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"", STRUCTURED, id="empty-structured"),
        pytest.param(b"{not json", STRUCTURED, id="invalid-json"),
        pytest.param(b'{"id": "\xff"}', STRUCTURED, id="invalid-utf8"),
        pytest.param(b"[]", STRUCTURED, id="array-in-structured-mode"),
        pytest.param(b"{}", BATCH, id="object-in-batch-mode"),
        pytest.param(b"[1, null]", BATCH, id="batch-of-non-objects"),
        pytest.param(b"{not json", "application/json", id="binary-mode-without-ce-headers"),
    ],
)
async def test_unparseable_bodies_are_400_with_a_reason(
    gw: StandaloneGateway, body: bytes, content_type: str
) -> None:
    answer = await post(f"{gw.url}/events", body, {"Content-Type": content_type})

    problem = assert_problem(answer, 400, "invalid-cloudevent")
    assert problem["errors"], problem
    assert all(e["detail"] for e in problem["errors"])


@pytest.mark.parametrize(
    "content_type",
    ["application/cloudevents+xml", "application/cloudevents+json; charset=iso-8859-1"],
)
async def test_unsupported_event_format_is_415(gw: StandaloneGateway, content_type: str) -> None:
    answer = await post(f"{gw.url}/events", orjson.dumps(ce()), {"Content-Type": content_type})

    body = assert_problem(answer, 415, "unsupported-media-type")
    assert error_attributes(body) == [(None, "content-type")]


async def test_unknown_type_is_422(gw: StandaloneGateway, structured_sink: Sink) -> None:
    answer = await send(gw, ce(type=UNDEFINED_TYPE))

    body = assert_problem(answer, 422, "event-not-acceptable")
    assert error_attributes(body) == [(None, "type")]
    assert UNDEFINED_TYPE in body["errors"][0]["detail"]
    await assert_nothing_was_published(gw, structured_sink)


async def test_data_violating_the_schema_is_422_listing_every_error(gw: StandaloneGateway) -> None:
    answer = await send(gw, ce(data={"zaakUrl": 42, "identificatie": ""}))

    body = assert_problem(answer, 422, "event-not-acceptable")
    assert error_attributes(body) == [(None, "data"), (None, "data")]
    details = " | ".join(e["detail"] for e in body["errors"])
    assert "data/identificatie" in details
    assert "data/zaakUrl" in details


async def test_missing_required_data_member_is_named(gw: StandaloneGateway) -> None:
    answer = await send(gw, ce(data={"zaakUrl": "https://zaken.example.nl/zaken/1"}))

    body = assert_problem(answer, 422, "event-not-acceptable")
    assert [e["detail"] for e in body["errors"]] == ["data: 'identificatie' is a required property"]


async def test_batch_with_one_bad_event_is_refused_whole_and_delivers_nothing(
    gw: StandaloneGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    batch = [ce("evt-1"), ce("evt-2", data={"zaakUrl": "https://zaken.example.nl/zaken/2"}), ce("evt-3")]

    answer = await send(gw, batch, BATCH)

    body = assert_problem(answer, 422, "event-not-acceptable")
    assert error_attributes(body) == [(1, "data")]
    await assert_nothing_was_published(gw, structured_sink, binary_sink)


async def test_strict_nl_gov_profile_violation_is_400(gw: StandaloneGateway, structured_sink: Sink) -> None:
    answer = await send(gw, ce(source="/zaaksysteem", sequence="7"))

    body = assert_problem(answer, 400, "invalid-cloudevent")
    assert sorted(error_attributes(body), key=str) == [(None, "sequencetype"), (None, "source")]
    source_error = next(e for e in body["errors"] if e["attribute"] == "source")
    assert "urn:nld" in source_error["detail"]
    await assert_nothing_was_published(gw, structured_sink)


async def test_lax_profile_accepts_a_violation_and_counts_it(
    gw: StandaloneGateway, structured_sink: Sink
) -> None:
    answer = await send(gw, ce("evt-lax", type=LEGACY_TYPE, source="/zaaksysteem", data={"x": 1}))

    assert answer.status == 202, answer.body
    assert answer.json()["deliveries"] == 1
    assert [w["attribute"] for w in answer.json()["warnings"]] == ["source"]
    assert orjson.loads((await structured_sink.wait_for(1))[0].body)["id"] == "evt-lax"
    metrics = (await call("GET", f"{gw.url}/metrics")).body.decode()
    assert metric_value(metrics, f'openconnector_events_profile_warnings_total{{type="{LEGACY_TYPE}"}}') == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_max_event_bytes_is_413(
    tmp_path: Path,
    start_gateway: StartGateway,
    structured_sink: Sink,
    binary_sink: Sink,
    chunked: bool,
) -> None:
    gw = await start_gateway(manifests(tmp_path / "m", structured_sink, binary_sink), max_event_bytes=1024)
    document = orjson.dumps(ce(data={**ZAAK_DATA, "padding": "x" * 2000}))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(document), 256):
            yield document[start : start + 256]

    answer = await call(
        "POST",
        f"{gw.url}/events",
        body=chunks() if chunked else document,  # type: ignore[arg-type]
        headers={"Content-Type": STRUCTURED},
    )

    body = assert_problem(answer, 413, "body-too-large")
    assert "1024" in body["detail"]
    small = await send(gw, ce("evt-small"))
    assert small.status == 202, small.body


# ------------------------------------------------------------------------- handshake, auth, HTTP


async def test_options_handshake_grants_the_origin_and_a_rate(gw: StandaloneGateway) -> None:
    answer = await call(
        "OPTIONS",
        f"{gw.url}/events",
        headers={"WebHook-Request-Origin": "eventemitter.example.com", "WebHook-Request-Rate": "600"},
    )

    assert answer.status == 200
    assert answer.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"
    assert int(answer.headers["WebHook-Allowed-Rate"]) > 0
    assert answer.headers["Allow"] == "POST"


async def test_events_token_is_required_when_configured(
    tmp_path: Path, start_gateway: StartGateway, structured_sink: Sink, binary_sink: Sink
) -> None:
    gw = await start_gateway(
        manifests(tmp_path / "m", structured_sink, binary_sink), events_token="s3cret-token"
    )
    body = orjson.dumps(ce())

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
        refused = await post(f"{gw.url}/events", body, {"Content-Type": STRUCTURED, **headers})
        problem = assert_problem(refused, 401, "unauthorized")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "s3cret" not in problem["detail"]

    with_header = await post(
        f"{gw.url}/events", body, {"Content-Type": STRUCTURED, "Authorization": "Bearer s3cret-token"}
    )
    assert with_header.status == 202, with_header.body
    with_query = await post(f"{gw.url}/events?access_token=s3cret-token", body, {"Content-Type": STRUCTURED})
    assert with_query.status == 202, with_query.body
    wrong_query = await post(f"{gw.url}/events?access_token=nope", body, {"Content-Type": STRUCTURED})
    assert_problem(wrong_query, 401, "unauthorized")


async def test_unknown_path_is_a_404_problem(gw: StandaloneGateway) -> None:
    for method in ("GET", "POST"):
        body = assert_problem(await call(method, f"{gw.url}/no/such/thing"), 404, "not-found")
        assert "/no/such/thing" in body["detail"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_a_405_problem_with_allow(gw: StandaloneGateway, method: str) -> None:
    answer = await call(method, f"{gw.url}/events", body=b"{}" if method != "GET" else None)

    body = assert_problem(answer, 405, "method-not-allowed")
    assert "POST" in answer.headers["Allow"].split(",")
    assert method in body["detail"]
    assert "POST" in body["detail"]
