"""Refusals that depended on the event loop or on where aiohttp met the error (session 12's docs audit):
the connection cap on uvloop, a body whose content coding fails, and an Expect a route cannot meet.

Each is answered with problem+json, never a 500, a bare close, a text/plain answer or a logged traceback.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from openconnector.gateway.limits import RequestLimits
from openconnector.gateway.metrics import GatewayMetrics, build_metrics_app
from openconnector.standalone import StandaloneGateway
from tests.component.client import call
from tests.component.conftest import StartGateway
from tests.component.sinks import Sink
from tests.component.test_hardening_gateway import gw as gw  # the hardening manifests' gateway
from tests.component.test_hardening_gateway import hardening_manifests, problem_from_raw, raw_exchange
from tests.component.test_hardening_gateway import sink as sink

CE_JSON = b"Content-Type: application/cloudevents+json\r\n"


def post_with_coding(path: str, coding: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: {coding}\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n".encode() + CE_JSON + b"\r\n" + body


async def test_the_connection_cap_answers_503_on_this_loop(
    tmp_path: Path, start_gateway: StartGateway, sink: Sink
) -> None:
    # uvloop's transports are not asyncio.Transport instances: an isinstance check there closed the
    # connection without an answer (and logged an AssertionError) on the gateway's default loop.
    gw = await start_gateway(
        hardening_manifests(tmp_path / "m", sink), limits=RequestLimits(max_connections=2)
    )
    idle = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(2)]
    await asyncio.sleep(0.1)
    answer = await raw_exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, problem = problem_from_raw(answer)
    assert status == 503
    assert problem["type"].endswith("/too-many-connections")
    assert b"\r\nRetry-After: 1\r\n" in answer
    for _, writer in idle:
        writer.close()
    await asyncio.sleep(0.3)
    assert (await call("GET", f"{gw.url}/healthz")).status == 200


@pytest.mark.parametrize(
    ("path", "coding", "body", "detail"),
    [
        ("/events", "gzip", b"{}", "the body is not valid gzip (Content-Encoding)"),
        (
            "/namespaces/default/events",
            "gzip",
            b"not gzip at all",
            "the body is not valid gzip (Content-Encoding)",
        ),
        ("/webhooks/open", "gzip", b"{}", "the body is not valid gzip (Content-Encoding)"),
        (
            "/events",
            "deflate",
            zlib.compress(b'{"a": 1}')[:-4],
            "the body is not valid deflate (Content-Encoding)",
        ),
        ("/events", "deflate", b"{}", "the body is not valid deflate (Content-Encoding)"),
    ],
)
async def test_a_body_its_content_coding_cannot_decode_is_400_without_a_traceback(
    gw: StandaloneGateway, caplog: pytest.LogCaptureFixture, path: str, coding: str, body: bytes, detail: str
) -> None:
    with caplog.at_level(logging.INFO):
        status, problem = problem_from_raw(await raw_exchange(gw.port, post_with_coding(path, coding, body)))
        await asyncio.sleep(0.1)  # aiohttp drains what is left of the body after the answer
    assert (status, problem["type"].rpartition("/")[2], problem["detail"]) == (400, "bad-request", detail)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_content_coding_the_gateway_cannot_decode_is_named(gw: StandaloneGateway) -> None:
    # aiohttp's own text names a Python package to install (Brotli is not a dependency); the answer
    # names the coding instead.
    status, problem = problem_from_raw(await raw_exchange(gw.port, post_with_coding("/events", "br", b"{}")))
    assert (status, problem["detail"]) == (
        400,
        "Content-Encoding br is not supported; send the body as is, gzip or deflate",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/v1alpha1/status"), ("POST", "/nothing"),
     ("GET", "/nothing"), ("GET", "/ui/")],
)  # fmt: skip
async def test_an_expectation_no_route_can_meet_is_417_problem_json(
    gw: StandaloneGateway, method: str, path: str
) -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n"
    request = head.encode() + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    status, problem = problem_from_raw(await raw_exchange(gw.port, request))
    assert status == 417
    assert problem["type"].endswith("/expectation-failed")
    assert "200-ok" in problem["detail"]


async def test_100_continue_on_a_route_without_a_body_is_still_answered(gw: StandaloneGateway) -> None:
    answer = await raw_exchange(
        gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), answer[:200]


async def test_an_unknown_path_with_100_continue_is_refused_without_inviting_the_body(
    gw: StandaloneGateway,
) -> None:
    answer = await raw_exchange(
        gw.port,
        b"POST /nothing HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]


async def test_the_metrics_port_refuses_in_problem_json() -> None:
    server = TestServer(build_metrics_app(GatewayMetrics()), host="127.0.0.1")
    await server.start_server()
    try:
        assert server.port is not None
        for request, expected in [
            (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
            (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n", 417),
        ]:
            status, _ = problem_from_raw(await raw_exchange(server.port, request))
            assert status == expected
        answer = await raw_exchange(
            server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    finally:
        await server.close()
