"""Routes whose every error leaves as problem+json, with no traceback ever reaching a client.

Each handler is wrapped as its route is added (:class:`ProblemRoutes`) instead of the app having one
middleware: for an app with any middleware, aiohttp puts two coroutine frames around every request (the
middleware's and its own ``_fix_request_current_app``), about 3.5 µs per request measured in-process,
on every webhook and event. The two intake handlers catch their errors themselves
(:func:`answers_own_errors`), so not even a wrapper's frame is left on them. What no route serves is
answered by the route added last (:func:`add_unrouted`) with the 404, or the 405 and its ``Allow``, that
aiohttp's router would have raised, in the same problem form.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from openconnector.gateway.intake import ClientGone, continue_at_body_read, continue_at_once
from openconnector.gateway.problems import problem

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

_SLUGS = {
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    413: "body-too-large",
    400: "bad-request",
}
# The headers of an aiohttp HTTP error that still mean something in its problem answer.
_KEPT_HEADERS = ("allow", "retry-after", "connection")
_CLIENT_GONE = "the client closed the connection before the body arrived"
_INTERNAL_ERROR = "the gateway failed to handle the request; it has been logged"


def _detail(request: web.Request, error: web.HTTPException) -> str:
    """What went wrong, in terms of this request (aiohttp's own texts are generic)."""
    if error.status == 404:
        return f"nothing is served at {request.path}"
    if error.status == 405:
        allowed = ", ".join(sorted(m for m in error.headers.get("Allow", "").split(",") if m))
        return f"{request.method} is not allowed on {request.path}; use {allowed}"
    text = (error.text or "").strip()
    # aiohttp's default text is "<status>: <reason>"; a specific text says more than the reason.
    return text if text and not text.startswith(f"{error.status}:") else error.reason


def http_error_problem(request: web.Request, error: web.HTTPException) -> web.Response:
    """An aiohttp HTTP error (status 400 or more) of ``request`` as a problem answer."""
    headers = {k: v for k, v in error.headers.items() if k.lower() in _KEPT_HEADERS}
    return problem(error.status, _SLUGS.get(error.status, "error"), _detail(request, error), headers=headers)


def answer_error(request: web.Request, error: Exception) -> web.StreamResponse:
    """The answer to an error a handler of ``request`` raised: a problem; a redirect (an HTTP exception
    below 400) is raised again for aiohttp to send. Call it in the ``except`` block that caught it."""
    if isinstance(error, ClientGone):
        # Nobody is left to read an answer, and it is not the gateway's fault: no traceback.
        log.debug("client disconnected mid-body on %s %s", request.method, request.path)
        return problem(400, "client-disconnected", _CLIENT_GONE)
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        return http_error_problem(request, error)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return problem(500, "internal-error", _INTERNAL_ERROR)


# The handlers that catch every Exception themselves and answer it with answer_error (the two intake
# routes: no wrapper's coroutine frame on every webhook and event).
# Weak: a handler bound to a gateway (events_handler) goes with its app.
_ANSWERING_THEMSELVES: weakref.WeakSet[Handler] = weakref.WeakSet()


def answers_own_errors(handler: H) -> H:
    """Marks ``handler`` as catching every ``Exception`` itself and answering it with
    :func:`answer_error`: :class:`ProblemRoutes` adds it as it is."""
    _ANSWERING_THEMSELVES.add(handler)
    return handler


def answering_problems(handler: Handler) -> Handler:
    """``handler``, with every error it raises answered by :func:`answer_error` (a handler marked by
    :func:`answers_own_errors` as it is)."""
    if handler in _ANSWERING_THEMSELVES:
        return handler

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as error:
            return answer_error(request, error)

    return answer


class ProblemRoutes:
    """Adds routes to an aiohttp router, each handler wrapped by :func:`answering_problems`."""

    __slots__ = ("_router",)

    def __init__(self, router: web.UrlDispatcher) -> None:
        self._router = router

    # Every route answers an Expect it cannot meet with 417 problem+json (aiohttp's default handler
    # answers text/plain); a route that reads its body with read_limited passes continue_at_body_read.

    def add_get(self, path: str, handler: Handler, **kwargs: Any) -> web.AbstractRoute:
        kwargs.setdefault("expect_handler", continue_at_once)
        return self._router.add_get(path, answering_problems(handler), **kwargs)

    def add_post(self, path: str, handler: Handler, **kwargs: Any) -> web.AbstractRoute:
        kwargs.setdefault("expect_handler", continue_at_once)
        return self._router.add_post(path, answering_problems(handler), **kwargs)

    def add_route(self, method: str, path: str, handler: Handler, **kwargs: Any) -> web.AbstractRoute:
        kwargs.setdefault("expect_handler", continue_at_once)
        return self._router.add_route(method, path, answering_problems(handler), **kwargs)


def problem_routes(app: web.Application) -> ProblemRoutes:
    """Where the gateway's routes are added to ``app``."""
    return ProblemRoutes(app.router)


async def answer_unrouted(request: web.Request) -> web.Response:
    """What no other route serves: 405 with ``Allow`` when other routes serve this path with other
    methods, else 404, as aiohttp's router would have raised them (it asks each resource the same way)."""
    this = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not this:
            _, methods = await resource.resolve(request)
            allowed |= methods
    error: web.HTTPException = (
        web.HTTPMethodNotAllowed(request.method, allowed) if allowed else web.HTTPNotFound()
    )
    return http_error_problem(request, error)


class _EveryTarget(web.PlainResource):
    """The resource of the unrouted route: it matches every request target, also those no path pattern
    can match (``OPTIONS * HTTP/1.1``, whose path is ``*``). Indexed under ``/``, where aiohttp's router
    ends its search for every path, so it is asked after every other resource that could match."""

    def __init__(self) -> None:
        super().__init__("/")

    def _match(self, path: str) -> dict[str, str]:
        return {}

    def raw_match(self, path: str) -> bool:
        return False  # add_route never puts another route on it


def add_unrouted(app: web.Application) -> None:
    """Add the route that answers what no other route serves; it must be added last."""
    resource = _EveryTarget()
    app.router.register_resource(resource)
    # 404 and 405 are answered on the head: a "100-continue" is never invited (continue_at_body_read).
    resource.add_route("*", answering_problems(answer_unrouted), expect_handler=continue_at_body_read)
