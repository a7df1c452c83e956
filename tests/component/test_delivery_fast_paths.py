"""The delivery hot path's shortcuts give what the general path gives (issue 15): a target without
headers of its own sends exactly the encoder's headers, signed and header-adding targets get the merged
and signed set, a waiting worker picks up events and lets its lane go once idle, scaling a busy lane's
concurrency down and up again loses nothing, and a Prepared derives its webhook-id on first use."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace

import pytest

from openconnector.ce import CloudEvent, to_binary, to_structured
from openconnector.delivery import ContentMode, DeliveryTarget, Dispatcher
from openconnector.delivery.durable import decode_meta, encode_meta
from openconnector.delivery.prepared import prepare
from openconnector.delivery.signing import webhook_message_id
from tests.support.keys import sub_key
from tests.support.sinks import Reply, Sink

SECRET_KEY = b"k" * 32
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
EVENT = CloudEvent(
    {"specversion": "1.0", "id": "e-1", "source": "urn:nld:test", "type": "nl.test.created"}, {"n": 1}
)


def encode(event: CloudEvent, mode: ContentMode) -> tuple[Mapping[str, str], bytes]:
    return to_binary(event) if mode is ContentMode.BINARY else to_structured(event)


def event(n: int) -> CloudEvent:
    return CloudEvent({**EVENT.attributes, "id": f"e-{n}"}, {"n": n})


def _ids(sink: Sink) -> list[str]:
    return [json.loads(request.body)["id"] for request in sink.requests]


@pytest.mark.parametrize("mode", [ContentMode.STRUCTURED, ContentMode.BINARY])
async def test_a_plain_target_receives_exactly_the_encoded_headers_and_body(mode: ContentMode) -> None:
    expected_headers, expected_body = encode(EVENT, mode)
    async with Sink() as sink, Dispatcher(encode) as engine:
        sub = DeliveryTarget(key=sub_key("ns/plain"), url=sink.url, content_mode=mode)
        engine.set_target(sub)
        assert engine.offer([(sub.key, EVENT)]).accepted
        (request,) = await sink.wait_for(1)
    assert request.body == expected_body
    for name, value in expected_headers.items():
        assert request.headers[name] == value
    # Nothing of ours beyond the encoding; the rest is aiohttp's framing and its usual headers.
    ours = {name.lower() for name in request.headers} - {
        "host",
        "content-length",
        "accept",
        "accept-encoding",
        "user-agent",
    }
    assert ours == {name.lower() for name in expected_headers}
    assert request.headers["User-Agent"] == "openconnector-delivery"


async def test_a_target_with_headers_credentials_and_signing_gets_them_merged_and_signed() -> None:
    expected_headers, expected_body = encode(EVENT, ContentMode.STRUCTURED)
    async with Sink() as sink, Dispatcher(encode) as engine:
        sub = DeliveryTarget(
            key=sub_key("ns/signed"),
            url=sink.url,
            headers={"X-Tenant": "t-1"},
            auth_headers={"Authorization": "Bearer s3cret"},
            signing_secret=SECRET,
        )
        engine.set_target(sub)
        assert engine.offer([(sub.key, EVENT)]).accepted
        (request,) = await sink.wait_for(1)
    assert request.body == expected_body
    assert request.headers["Content-Type"] == expected_headers["Content-Type"]
    assert request.headers["X-Tenant"] == "t-1"
    assert request.headers["Authorization"] == "Bearer s3cret"
    webhook_id = request.headers["webhook-id"]
    assert webhook_id == webhook_message_id(EVENT.source, EVENT.id)
    timestamp = request.headers["webhook-timestamp"]
    signed = f"{webhook_id}.{timestamp}.".encode() + request.body
    signature = base64.b64encode(hmac.new(SECRET_KEY, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{signature}"


def test_a_prepared_request_derives_its_webhook_id_on_first_use_and_keeps_it() -> None:
    prepared = prepare(EVENT, ContentMode.STRUCTURED, encode)
    assert prepared.webhook_id == webhook_message_id(EVENT.source, EVENT.id)
    assert prepared.webhook_id is prepared.webhook_id
    restored = decode_meta(encode_meta(prepared), prepared.body)
    assert restored.webhook_id == prepared.webhook_id
    assert restored == replace(prepared, size=restored.size)  # the id is no part of equality


def test_prepare_counts_the_documented_size_and_keeps_what_the_encoder_made() -> None:
    headers, body = encode(EVENT, ContentMode.BINARY)
    prepared = prepare(EVENT, ContentMode.BINARY, encode)
    expected = 512 + len(body) + len(EVENT.id) + len(EVENT.type) + len(EVENT.source)
    expected += sum(len(name) + len(value) + 112 for name, value in headers.items())
    assert prepared.size == expected
    assert prepared.headers == headers
    assert prepared.body == body

    class Frozen(Mapping[str, str]):  # an encoder may return any mapping: it is copied into a dict
        def __init__(self, items: Mapping[str, str]) -> None:
            self._items = dict(items)

        def __getitem__(self, key: str) -> str:
            return self._items[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._items)

        def __len__(self) -> int:
            return len(self._items)

    copied = prepare(EVENT, ContentMode.BINARY, lambda e, m: (Frozen(encode(e, m)[0]), body))
    assert type(copied.headers) is dict
    assert copied.headers == headers
    assert copied.size == expected


async def test_a_waiting_worker_takes_the_next_event_and_the_lane_lets_go_once_idle() -> None:
    async with Sink() as sink, Dispatcher(encode, idle_lane_seconds=1.0) as engine:
        sub = DeliveryTarget(key=sub_key("ns/idle"), url=sink.url, max_concurrency=1)
        engine.set_target(sub)
        assert engine.offer([(sub.key, event(1))]).accepted
        await sink.wait_for(1)
        await asyncio.sleep(0.05)  # the worker now waits for its next event
        assert engine.lane_active(sub.key)
        assert engine.offer([(sub.key, event(2))]).accepted
        await sink.wait_for(2)
        for _ in range(400):  # no event for idle_lane_seconds: its queue and worker go (within 20 s)
            if not engine.lane_active(sub.key):
                break
            await asyncio.sleep(0.05)
        assert not engine.lane_active(sub.key)
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(f"delivery:{sub.key}#")]
        assert engine.offer([(sub.key, event(3))]).accepted  # and come back with the next event
        await sink.wait_for(3)
        async with asyncio.timeout(20):
            await engine.join(sub.key)
        assert engine.health(sub.key).delivered == 3
    assert _ids(sink) == ["e-1", "e-2", "e-3"]


async def test_scaling_a_busy_lane_down_and_up_again_delivers_everything_within_the_limits() -> None:
    gate = asyncio.Event()
    async with Sink(default=Reply(gate=gate)) as sink, Dispatcher(encode, idle_lane_seconds=0) as engine:
        sub = DeliveryTarget(key=sub_key("ns/scale"), url=sink.url, max_concurrency=4)
        engine.set_target(sub)
        for n in range(12):
            assert engine.offer([(sub.key, event(n))]).accepted
        await sink.wait_for(4)  # four in flight, eight queued
        engine.update_target(sub.key, replace(sub, max_concurrency=2))
        gate.set()
        async with asyncio.timeout(20):
            await engine.join(sub.key)
        assert engine.health(sub.key).delivered == 12

        gate.clear()
        for n in range(12, 20):
            assert engine.offer([(sub.key, event(n))]).accepted
        await sink.wait_for(14)
        await asyncio.sleep(0.05)
        assert len(sink.requests) == 14  # two in flight at the lowered limit, the rest queued
        engine.update_target(sub.key, replace(sub, max_concurrency=3))
        await sink.wait_for(15)  # the raised limit starts a third worker at once
        gate.set()
        async with asyncio.timeout(20):
            await engine.join(sub.key)
        assert engine.health(sub.key).delivered == 20
    assert sorted(_ids(sink), key=lambda i: int(i[2:])) == [f"e-{n}" for n in range(20)]
