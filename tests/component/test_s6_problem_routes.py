"""Routes wrapped one by one answer exactly as the app-level problem middleware they replace.

The reference is the middleware the gateway had (kept here as the oracle): the same routes, registered
plainly on an app with that middleware, must give the same status, headers that matter and body for
every method and path, including what no route serves (aiohttp's router 404 and 405 with ``Allow``)
and errors raised by handlers (an HTTP error, a redirect, a client that left, a bug).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from openconnector.gateway.intake import ClientGone
from openconnector.gateway.problems import problem
from openconnector.gateway.routes import add_unrouted, http_error_problem, problem_routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def reference_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The app-level middleware the wrapped routes replace (gateway/app.py until session 6)."""
    try:
        return await handler(request)
    except ClientGone:
        return problem(400, "client-disconnected", "the client closed the connection before the body arrived")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return http_error_problem(request, error)
    except Exception:
        return problem(500, "internal-error", "the gateway failed to handle the request; it has been logged")


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path, "match": dict(request.match_info)})


async def too_large(request: web.Request) -> web.Response:
    raise web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20)


async def teapot_text(request: web.Request) -> web.Response:
    raise web.HTTPConflict(text="a specific text")


async def gone(request: web.Request) -> web.Response:
    raise ClientGone


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


async def unavailable(request: web.Request) -> web.Response:
    raise web.HTTPServiceUnavailable(headers={"Retry-After": "5", "X-Other": "dropped"})


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/events", ok),
    ("OPTIONS", "/events", ok),
    ("POST", "/webhooks/{endpoint:.+}", ok),
    ("GET", "/api/items", ok),
    ("GET", "/api/items/{id}", ok),
    ("POST", "/api/items/{id}/resend", too_large),
    ("GET", "/conflict", teapot_text),
    ("POST", "/gone", gone),
    ("GET", "/broken", broken),
    ("GET", "/moved", moved),
    ("GET", "/busy", unavailable),
    ("GET", "/ui", ok),
    ("POST", "/ui/login", ok),
    ("GET", "/ui/{tail:.*}", ok),
]


def wrapped_app() -> web.Application:
    app = web.Application()
    routes = problem_routes(app)
    for method, path, handler in ROUTES:
        if method == "GET":
            routes.add_get(path, handler)
        elif method == "POST":
            routes.add_post(path, handler)
        else:
            routes.add_route(method, path, handler)
    add_unrouted(app)
    return app


def reference_app() -> web.Application:
    app = web.Application(middlewares=[reference_middleware])
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)
        elif method == "POST":
            app.router.add_post(path, handler)
        else:
            app.router.add_route(method, path, handler)
    return app


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str, aiohttp.ClientSession]]:
    wrapped, reference = (
        TestServer(wrapped_app(), host="127.0.0.1"),
        TestServer(reference_app(), host="127.0.0.1"),
    )
    await wrapped.start_server()
    await reference.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield str(wrapped.make_url("")), str(reference.make_url("")), session
    finally:
        await wrapped.close()
        await reference.close()


async def answer(session: aiohttp.ClientSession, method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    async with session.request(method, url, allow_redirects=False) as reply:
        kept = {
            k: reply.headers[k]
            for k in ("Content-Type", "Allow", "Retry-After", "Location")
            if k in reply.headers
        }
        return reply.status, kept, await reply.read()


KEPT_HEADERS = ("Content-Type", "Allow", "Retry-After", "Location")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
PATHS = (
    "/",
    "/events",
    "/events/",
    "/webhooks",
    "/webhooks/",
    "/webhooks/a",
    "/webhooks/a/b",
    "/api",
    "/api/items",
    "/api/items/7",
    "/api/items/7/resend",
    "/api/items/7/other",
    "/conflict",
    "/gone",
    "/broken",
    "/moved",
    "/busy",
    "/ui",
    "/ui/",
    "/ui/login",
    "/ui/anything/deeper",
    "/nothing/here",
    "/%7Eencoded",
)


async def test_every_method_and_path_answers_as_the_middleware_did(
    servers: tuple[str, str, aiohttp.ClientSession],
) -> None:
    wrapped, reference, session = servers
    compared = 0
    for method in METHODS:
        for path in PATHS:
            mine = await answer(session, method, wrapped.rstrip("/") + path)
            theirs = await answer(session, method, reference.rstrip("/") + path)
            assert mine == theirs, (method, path)
            compared += 1
    assert compared == len(METHODS) * len(PATHS)


async def test_the_answers_cover_each_kind_of_error(servers: tuple[str, str, aiohttp.ClientSession]) -> None:
    wrapped, _, session = servers
    base = wrapped.rstrip("/")
    statuses = {
        (method, path): (await answer(session, method, base + path))[0]
        for method, path in [
            ("GET", "/nothing/here"),
            ("GET", "/events"),
            ("POST", "/api/items/7/resend"),
            ("POST", "/gone"),
            ("GET", "/broken"),
            ("GET", "/moved"),
            ("GET", "/busy"),
        ]
    }
    assert statuses == {
        ("GET", "/nothing/here"): 404,
        ("GET", "/events"): 405,
        ("POST", "/api/items/7/resend"): 413,
        ("POST", "/gone"): 400,
        ("GET", "/broken"): 500,
        ("GET", "/moved"): 302,
        ("GET", "/busy"): 503,
    }
    status, headers, _ = await answer(session, "DELETE", base + "/api/items/7")
    assert (status, headers["Allow"], headers["Content-Type"]) == (
        405,
        "GET,HEAD",
        "application/problem+json",
    )


SEGMENTS = ("events", "webhooks", "api", "items", "7", "resend", "ui", "login", "x", "")


async def test_every_path_of_up_to_two_segments_answers_as_the_middleware_did(
    servers: tuple[str, str, aiohttp.ClientSession],
) -> None:
    wrapped, reference, session = servers
    paths = {"/"} | {f"/{a}" for a in SEGMENTS} | {f"/{a}/{b}" for a in SEGMENTS for b in SEGMENTS}
    for method in METHODS:
        for path in sorted(paths):
            assert await answer(session, method, wrapped.rstrip("/") + path) == await answer(
                session, method, reference.rstrip("/") + path
            ), (method, path)


async def raw_answer(url: str, request_line: bytes) -> tuple[bytes, bytes, bytes]:
    """Status line, Content-Type and body of a request sent as raw bytes (request targets no client
    library sends, such as ``*``)."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    finally:
        writer.close()
    status, *lines = head.split(b"\r\n")
    content_type = next(
        (line.split(b":", 1)[1].strip() for line in lines if line.lower().startswith(b"content-type:")), b""
    )
    return status, content_type, body


@pytest.mark.parametrize(
    "request_line",
    [
        b"OPTIONS * HTTP/1.1",
        b"OPTIONS * HTTP/1.0",
        b"GET http://x/events HTTP/1.1",
        b"POST //events HTTP/1.1",
    ],
)
async def test_request_targets_without_a_plain_path_answer_as_the_middleware_did(
    servers: tuple[str, str, aiohttp.ClientSession], request_line: bytes
) -> None:
    # Found by the fuzz tier: "OPTIONS *" (path "*") matched no path pattern, so aiohttp answered its
    # own text/plain 404 instead of the problem.
    wrapped, reference, _ = servers
    mine = await raw_answer(wrapped, request_line)
    assert mine == await raw_answer(reference, request_line)
    assert mine[1] == b"application/problem+json"
