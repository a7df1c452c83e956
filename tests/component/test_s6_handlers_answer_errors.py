"""Every route of the gateway answers its errors as problem+json: the intake handlers, which catch their
errors themselves (no wrapper on the hottest routes), answer exactly as the wrapped routes do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from openconnector.gateway import events as events_module
from openconnector.gateway import routes as routes_module
from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.gateway.intake import ClientGone
from openconnector.routing.table import RoutingTable


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gateway = Gateway(GatewaySettings())
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.close()


async def test_every_route_answers_its_errors(gateway: Gateway) -> None:
    app = build_app(gateway)
    unprotected = [
        route.resource.canonical if route.resource else "?"
        for route in app.router.routes()
        if route.handler not in routes_module._ANSWERING_THEMSELVES
        and not hasattr(route.handler, "__wrapped__")
    ]
    assert unprotected == []
    marked = {r.handler for r in app.router.routes() if r.handler in routes_module._ANSWERING_THEMSELVES}
    assert {handler.__name__ for handler in marked} == {"handle_webhook", "handle_events"}
    assert len(marked) == 3  # handle_events bound to the gateway twice: /events and /namespaces/{ns}/events


def _raising(error: BaseException) -> object:
    def raise_it(*args: object, **kwargs: object) -> object:
        raise error

    return raise_it


ERRORS = [
    (RuntimeError("a bug"), 500, "internal-error"),
    (ClientGone(), 400, "client-disconnected"),
    (web.HTTPRequestEntityTooLarge(max_size=1, actual_size=2), 413, "body-too-large"),
    (web.HTTPServiceUnavailable(headers={"Retry-After": "3"}), 503, "error"),
]


@pytest.mark.parametrize(("error", "status", "slug"), ERRORS)
@pytest.mark.parametrize("route", ["/webhooks/any", "/events"])
async def test_an_intake_handler_answers_an_error_as_a_wrapped_route_does(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, route: str, error: Exception, status: int, slug: str
) -> None:
    if route == "/events":
        monkeypatch.setattr(events_module, "parse_http", _raising(error))
    else:
        monkeypatch.setattr(RoutingTable, "consumer", _raising(error))
    wrapped = routes_module.answering_problems(_raising_handler(error))
    async with TestClient(TestServer(build_app(gateway))) as client:
        answer = await client.post(route, data=b"{}", headers={"Content-Type": "application/json"})
        body = await answer.json(content_type=None)
    reference = await wrapped(_request_for(route))
    assert answer.status == status == reference.status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert body["type"].rsplit("/", 1)[1] == slug
    assert answer.headers.get("Retry-After") == reference.headers.get("Retry-After")


async def test_an_intake_handler_lets_a_redirect_through(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "parse_http", _raising(web.HTTPFound("/elsewhere")))
    async with TestClient(TestServer(build_app(gateway))) as client:
        answer = await client.post("/events", data=b"{}", allow_redirects=False)
        assert (answer.status, answer.headers["Location"]) == (302, "/elsewhere")


def _raising_handler(error: Exception) -> routes_module.Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise error

    return handler


def _request_for(route: str) -> web.Request:
    from aiohttp.test_utils import make_mocked_request

    return make_mocked_request("POST", route)
