"""``_GatewayPorts.request_now`` (the body that came with the head, read without awaiting) gives what
``read_request`` gives, for every Content-Type, and counts the same ingress bytes."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from aiohttp import web
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from prometheus_client import generate_latest

from openconnector.gateway.core import Gateway
from openconnector.gateway.webhooks import _GatewayPorts
from openconnector.refusal import Refusal

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/json",
    "application/cloudevents+json",
    "application/json; x*",
    "text/plain",
    "",
]


class _Protocol:
    """What a StreamReader asks of its protocol."""

    _reading_paused = False
    transport = None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _request(content_type: str | None, query: str, body: bytes) -> web.Request:
    headers = CIMultiDict[str]() if content_type is None else CIMultiDict({"Content-Type": content_type})
    payload = StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    payload.feed_data(body)
    payload.feed_eof()
    return make_mocked_request("POST", f"/webhooks/x{query}", headers=headers, payload=payload)


def _bytes_counted(gateway: Gateway) -> list[str]:
    text = generate_latest(gateway.metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("openconnector_ingress_bytes_total")]


@settings(max_examples=60, deadline=None)
@given(
    content_type=st.sampled_from([*CONTENT_TYPES, None]),
    query=st.sampled_from(["", "?access_token=abc", "?a=1&a=2"]),
    body=st.binary(max_size=64),
)
async def test_request_now_is_read_request(content_type: str | None, query: str, body: bytes) -> None:
    seen = []
    for read_now in (True, False):
        gateway = Gateway()
        ports = _GatewayPorts(gateway, _request(content_type, query, body))
        inbound = ports.request_now(1024) if read_now else await ports.read_request(1024)
        assert inbound is not None  # the mocked body is complete
        seen.append(
            (
                inbound.content_type,
                inbound.body,
                dict(inbound.headers),
                sorted(inbound.query.items()),
                _bytes_counted(gateway),
            )
        )
    assert seen[0] == seen[1]


async def _maybe_await(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


async def test_request_now_refuses_a_declared_oversized_body_as_read_request() -> None:
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": "2048"})
    for read_now in (True, False):
        request = make_mocked_request("POST", "/webhooks/x", headers=headers, payload=EMPTY_PAYLOAD)
        ports = _GatewayPorts(Gateway(), request)
        read = ports.request_now if read_now else ports.read_request
        with pytest.raises(Refusal) as refused:
            await _maybe_await(read(1024))
        assert (refused.value.status, refused.value.slug) == (413, "body-too-large")
