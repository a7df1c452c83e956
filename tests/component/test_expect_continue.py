"""``Expect: 100-continue`` on the intake routes: the body is invited only once the head passed every
check, so a request refused on its head gets its answer instead of ``100 Continue``; any other
expectation gets 417 problem+json (aiohttp's own answer would be text/plain)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.component.sinks import Sink
from tests.component.test_hardening_gateway import LAX_TYPE, hardening_manifests

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as started:
        yield started


@pytest.fixture
async def gw(tmp_path: Path, start_gateway: StartGateway, sink: Sink) -> StandaloneGateway:
    return await start_gateway(hardening_manifests(tmp_path / "m", sink))


def head(path: str, length: int, content_type: str, expect: str = "100-continue") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nExpect: {expect}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def answer_to_head(port: int, request_head: bytes) -> bytes:
    """Send only the head and return what the gateway answers before any body is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def status_and_problem(answer: bytes) -> tuple[int, dict[str, Any]]:
    head_part, _, body = answer.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/problem+json"
    return int(lines[0].split()[1]), orjson.loads(body)


async def test_an_oversized_body_is_refused_without_being_invited(gw: StandaloneGateway) -> None:
    too_large = gw.gateway.settings.max_event_bytes + 1
    answer = await answer_to_head(gw.port, head("/events", too_large, "application/cloudevents+json"))
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:80]
    status, problem = status_and_problem(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (413, "body-too-large")


async def test_an_unknown_webhook_endpoint_is_refused_without_being_invited(gw: StandaloneGateway) -> None:
    answer = await answer_to_head(gw.port, head("/webhooks/nobody-here", 10, "application/json"))
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:80]
    status, problem = status_and_problem(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (404, "unknown-endpoint")


async def test_an_acceptable_head_is_invited_and_its_event_accepted(
    gw: StandaloneGateway, sink: Sink
) -> None:
    event = {"specversion": "1.0", "id": "x-1", "source": "/s", "type": LAX_TYPE, "data": {"a": 1}}
    body = orjson.dumps(event)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head("/events", len(body), "application/cloudevents+json"))
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert final.startswith(b"HTTP/1.1 202"), final[:200]
    assert b"100 Continue" not in final
    delivered = await sink.wait_for(1)
    assert orjson.loads(delivered[0].body)["id"] == "x-1"


async def test_a_body_sent_with_its_head_gets_no_interim_answer(gw: StandaloneGateway) -> None:
    event = {"specversion": "1.0", "id": "x-2", "source": "/s", "type": LAX_TYPE}
    body = orjson.dumps(event)
    answer = await answer_to_head(gw.port, head("/events", len(body), "application/cloudevents+json") + body)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


@pytest.mark.parametrize(
    "path", ["/events", "/webhooks/open", "/api/v1alpha1/subscriptions/default/x/replay"]
)
async def test_an_unknown_expectation_is_417_problem_json(gw: StandaloneGateway, path: str) -> None:
    answer = await answer_to_head(gw.port, head(path, 2, "application/json", expect="teapot") + b"{}")
    status, problem = status_and_problem(answer)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (417, "expectation-failed")
    assert "teapot" in problem["detail"]
