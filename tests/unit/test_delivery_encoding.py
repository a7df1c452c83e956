"""What a lane holds: the encoded request (``prepare``), its size, and rebuilding it (dead letters)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping

import pytest
from tests.support.keys import sub_key

from openconnector.ce import CloudEvent, parse_http, to_binary, to_structured
from openconnector.delivery import (
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_QUEUE_BYTES,
    ContentMode,
    DeliveryTarget,
    Dispatcher,
    Prepared,
    cloudevents_reencoder,
    prepare,
    webhook_message_id,
)

EVENT = CloudEvent(
    {
        "specversion": "1.0",
        "id": "zaak-42",
        "source": "urn:nld:oin:00000001823288444000:systeem:zaken",
        "type": "nl.vng.zgw.zaken.zaak.created",
        "datacontenttype": "application/json",
        "subject": "zaak/42",
        "sequence": "42",
        "sequencetype": "Integer",
    },
    {"zaak": "abc123", "bedrag": 12, "tekst": "caf\u00e9"},
)


def encode(event: CloudEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return to_binary(event) if mode is ContentMode.BINARY else to_structured(event)


@pytest.mark.parametrize("mode", [ContentMode.STRUCTURED, ContentMode.BINARY])
def test_prepare_holds_the_encoded_request_and_what_the_engine_needs(mode: ContentMode) -> None:
    prepared = prepare(EVENT, mode, encode)
    headers, body = encode(EVENT, mode)
    assert (prepared.headers, prepared.body) == (headers, body)
    assert (prepared.id, prepared.type, prepared.source) == (EVENT.id, EVENT.type, EVENT.source)
    assert prepared.content_mode is mode
    assert prepared.webhook_id == webhook_message_id(EVENT.source, EVENT.id)
    header_bytes = sum(len(name) + len(value) for name, value in headers.items())
    raw = len(body) + header_bytes + len(EVENT.id) + len(EVENT.type) + len(EVENT.source)
    assert raw < prepared.size < raw + 512 + 200 * len(headers)  # bytes plus a bounded object overhead
    assert "abc123" not in repr(prepared)  # the payload stays out of logs and reprs


def test_prepared_size_grows_with_the_body_byte_for_byte() -> None:
    small = prepare(EVENT, ContentMode.STRUCTURED, encode)
    bigger = prepare(EVENT.with_attributes(), ContentMode.STRUCTURED, lambda e, m: ({}, b"x" * 10_000))
    empty = prepare(EVENT, ContentMode.STRUCTURED, lambda e, m: ({}, b""))
    assert bigger.size - empty.size == 10_000
    assert small.size > empty.size


def test_encoder_errors_propagate_from_prepare() -> None:
    def broken(event: CloudEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
        raise ValueError("cannot")

    with pytest.raises(ValueError, match="cannot"):
        prepare(EVENT, ContentMode.BINARY, broken)


@pytest.mark.parametrize("held_mode", [ContentMode.STRUCTURED, ContentMode.BINARY])
def test_the_dead_letter_is_the_same_event_structured_with_the_extensions(held_mode: ContentMode) -> None:
    prepared = prepare(EVENT, held_mode, encode)
    extensions: dict[str, str | int] = {
        "ocerrordest": "http://sub.example/hook",
        "ocerrorcode": 503,
        "ocerrordata": "Ym9vbQ==",
    }
    headers, body = cloudevents_reencoder(prepared, ContentMode.STRUCTURED, extensions)
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert json.loads(body) == {**EVENT.attributes, "data": EVENT.data, **extensions}
    (parsed,) = parse_http("POST", headers, body).events
    assert parsed.extensions["ocerrorcode"] == 503


def test_the_reencoder_converts_between_content_modes() -> None:
    structured = prepare(EVENT, ContentMode.STRUCTURED, encode)
    headers, body = cloudevents_reencoder(structured, ContentMode.BINARY, {})
    assert (dict(headers), body) == encode(EVENT, ContentMode.BINARY)
    binary = prepare(EVENT, ContentMode.BINARY, encode)
    headers, body = cloudevents_reencoder(binary, ContentMode.STRUCTURED, {})
    expected_headers, expected_body = encode(EVENT, ContentMode.STRUCTURED)
    assert headers == expected_headers
    assert json.loads(body) == json.loads(expected_body)  # attribute order may differ


def test_binary_data_survives_the_dead_letter_as_data_base64() -> None:
    event = CloudEvent({**EVENT.attributes, "datacontenttype": "application/pdf"}, b"%PDF-\x00\xff")
    prepared = prepare(event, ContentMode.BINARY, encode)
    _, body = cloudevents_reencoder(prepared, ContentMode.STRUCTURED, {"ocerrordest": "http://x/"})
    document = json.loads(body)
    assert base64.b64decode(document["data_base64"]) == b"%PDF-\x00\xff"
    assert document["datacontenttype"] == "application/pdf"


def held(content_type: str, body: bytes) -> Prepared:
    return Prepared(
        id="x",
        type="t",
        source="s",
        content_mode=ContentMode.STRUCTURED,
        headers={"Content-Type": content_type},
        body=body,
        size=1,
    )


def test_a_held_request_that_is_not_one_cloudevent_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        cloudevents_reencoder(held("application/cloudevents+json", b"[]"), ContentMode.STRUCTURED, {})
    _, batch = to_structured(EVENT)
    two = held("application/cloudevents-batch+json", b"[" + batch + b"," + batch + b"]")
    with pytest.raises(ValueError, match="carries 2 events, expected 1"):
        cloudevents_reencoder(two, ContentMode.STRUCTURED, {})


def test_byte_limits_default_and_are_validated() -> None:
    target = DeliveryTarget(key=sub_key("ns/name"), url="http://127.0.0.1:8080/")
    assert target.queue_size == 1000
    assert target.queue_bytes == DEFAULT_QUEUE_BYTES == 32 * 1024 * 1024
    assert DEFAULT_MAX_QUEUED_BYTES == 128 * 1024 * 1024
    assert Dispatcher(encode).max_queued_bytes == DEFAULT_MAX_QUEUED_BYTES
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match=re.escape("queue_bytes: must be a positive integer")):
            DeliveryTarget(key=sub_key("ns/name"), url="http://127.0.0.1:8080/", queue_bytes=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=re.escape("max_queued_bytes: must be a positive integer")):
            Dispatcher(encode, max_queued_bytes=bad)  # type: ignore[arg-type]
