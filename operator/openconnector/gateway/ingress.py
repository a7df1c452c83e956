"""``/events``: CloudEvents ingress in binary, structured and batch mode.

The checks after parsing are pure (:func:`check_events`); the handler only moves bytes and answers.
A batch is accepted or refused as a whole, so a sender never has to work out which half got through.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.http_exceptions
import orjson
from aiohttp import web

from openconnector.ce import CloudEvent, CloudEventError, check_nlgov, parse_http
from openconnector.ce.codec import MAX_PROBLEMS
from openconnector.ce.depth import json_depth_exceeds
from openconnector.gateway.core import GATEWAY_KEY, Gateway, PublishRefused
from openconnector.gateway.problems import problem
from openconnector.gateway.ratelog import RateLimitedLog
from openconnector.routing.table import EventRoute, RoutingTable

log = logging.getLogger(__name__)
_LAX_LOG = RateLimitedLog(log, interval=60.0)

MAX_ALLOWED_RATE = "120"


@dataclass(frozen=True)
class EventProblem:
    """One reason to refuse (or, in the lax profile, to warn about) one event of a request."""

    index: int | None
    attribute: str | None
    detail: str
    status: int
    reason: str
    event_type: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "attribute": self.attribute, "detail": self.detail}


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body exceeds {limit} bytes")
        self.limit = limit


class ClientGone(Exception):
    """The client closed the connection before its body arrived; there is nobody to answer."""


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; BodyTooLarge as soon as a larger one shows (Content-Length
    or, for a chunked body, while reading), so an oversized body is never buffered whole.

    The whole body must arrive within the gateway's body timeout (408 problem+json otherwise); a client
    that disconnects mid-body raises ClientGone, which the middleware drops without a traceback.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    content = request.content
    if content.is_eof() and content.exception() is None:
        # The whole body came with the head (most small requests): take it as is, no timer, no chunks.
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    timeout = request.app[GATEWAY_KEY].settings.limits.body_timeout
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body did not arrive within {timeout:g} s", headers={"Connection": "close"}
        ) from None
    except (
        ConnectionError,
        aiohttp.ClientPayloadError,
        aiohttp.http_exceptions.HttpProcessingError,
    ) as error:
        if request.transport is None or request.transport.is_closing():
            raise ClientGone(str(error)) from None
        raise web.HTTPBadRequest(text=f"the body could not be read: {error}") from None
    return b"".join(chunks)


def depth_problems(events: Sequence[CloudEvent], max_depth: int, *, batch: bool) -> list[EventProblem]:
    """Events whose data nests deeper than the gateway accepts (it could not be delivered)."""
    return [
        EventProblem(
            position if batch else None,
            "data",
            f"data: nested deeper than {max_depth} levels (the gateway's limit)",
            422,
            "too-deep",
        )
        for position, event in enumerate(events)
        if not isinstance(event.data, bytes | bytearray) and json_depth_exceeds(event.data, max_depth)
    ]


def _data_detail(error: str) -> str:
    # The validator reports "/<json pointer>: message"; the document root reads as plain "data".
    pointer, _, message = error.partition(": ")
    return f"data{pointer.rstrip('/')}: {message}"


def defining_events(table: RoutingTable, event_type: str, namespace: str | None) -> list[EventRoute]:
    """The Events that govern a received event: its namespace's; for the shared /events, the Event of
    every namespace it will be published in (each tenant's schema and profile apply to what it gets)."""
    if namespace is not None:
        found = table.events_by_namespace_type.get((namespace, event_type))
        return [found] if found is not None else []
    return [table.events_by_namespace_type[(ns, event_type)] for ns in table.namespaces_defining(event_type)]


def check_events(
    table: RoutingTable,
    events: Sequence[CloudEvent],
    *,
    allow_unknown_types: bool,
    batch: bool,
    namespace: str | None = None,
) -> tuple[list[EventProblem], list[EventProblem]]:
    """Problems that refuse the request, and warnings (lax-profile violations) that do not."""
    problems: list[EventProblem] = []
    warnings: list[EventProblem] = []
    where = f" in namespace {namespace!r}" if namespace is not None else ""
    for position, event in enumerate(events):
        if len(problems) >= MAX_PROBLEMS:
            break  # the work per request is bounded like the answer; more problems would not be listed
        index = position if batch else None
        definitions = defining_events(table, event.type, namespace)
        if not definitions:
            if not allow_unknown_types:
                problems.append(
                    EventProblem(
                        index,
                        "type",
                        f"type: {event.type!r} is not defined by an enabled Event{where}",
                        422,
                        "unknown-type",
                    )
                )
            continue
        # The profile check depends on the event only; strict wins when any definition is strict.
        strict = any(d.profile == "nl-gov" for d in definitions)
        for found in check_nlgov(event, index=index):
            found_problem = EventProblem(
                index, found.attribute, found.detail, 400, "nl-gov-profile", event.type
            )
            (problems if strict else warnings).append(found_problem)
        for defined in definitions:
            if defined.validate_data is None:
                continue
            # On the shared /events, say whose schema refused it: that tenant can be skipped by posting
            # to /namespaces/<ns>/events instead.
            several = namespace is None and len(definitions) > 1
            owner = f" (Event {defined.key.namespace}/{defined.key.name})" if several else ""
            if isinstance(event.data, bytes | bytearray):
                detail = f"data: must be JSON to validate against the Event's schema{owner}"
                problems.append(EventProblem(index, "data", detail, 422, "schema"))
                continue
            for error in defined.validate_data(event.data):
                problems.append(EventProblem(index, "data", _data_detail(error) + owner, 422, "schema"))
    return problems, warnings


def _token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    offered = header[7:] if header[:7].lower() == "bearer " else request.query.get("access_token", "")
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


async def handle_events(request: web.Request) -> web.StreamResponse:
    """``POST /events`` (published where Events define the type) and ``POST /namespaces/{ns}/events``."""
    gateway: Gateway = request.app[GATEWAY_KEY]
    namespace = request.match_info.get("namespace")
    settings = gateway.settings
    m = gateway.metrics
    if settings.events_token and not _token_ok(request, settings.events_token):
        m.events_refused.labels("unauthorized").inc()
        return problem(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="openconnector"'},
        )
    try:
        body = await read_limited(request, settings.max_event_bytes)
    except BodyTooLarge as error:
        m.events_refused.labels("too-large").inc()
        return problem(413, "body-too-large", str(error))
    m.child(m.ingress_bytes, "/events").inc(len(body))
    started = time.perf_counter()
    try:
        parsed = parse_http(request.method, request.headers, body)
    except CloudEventError as error:
        m.events_refused.labels("malformed" if error.status == 400 else "unsupported-media-type").inc()
        slug = "invalid-cloudevent" if error.status == 400 else "unsupported-media-type"
        stopped = "" if error.complete else f"; checking stopped after {len(error.problems)} problems"
        return problem(
            error.status,
            slug,
            f"the request is not a valid CloudEvent{stopped}",
            errors=[p.as_dict() for p in error.problems],
        )
    table = gateway.table
    too_deep = depth_problems(
        parsed.events, settings.limits.max_json_depth, batch=parsed.mode.value == "batch"
    )
    if too_deep:
        m.events_refused.labels("too-deep").inc(len(too_deep))
        return problem(
            422,
            "too-deep",
            f"{len(too_deep)} event(s) nest deeper than {settings.limits.max_json_depth} levels; "
            "nothing was accepted",
            errors=[p.as_dict() for p in too_deep],
        )
    problems, warnings = check_events(
        table,
        parsed.events,
        allow_unknown_types=settings.allow_unknown_types,
        batch=parsed.mode.value == "batch",
        namespace=namespace,
    )
    m.child(m.parse_seconds, parsed.mode.value).observe(time.perf_counter() - started)
    for event in parsed.events:
        for defined in defining_events(table, event.type, namespace):
            stats = gateway.event_stats[defined.key]
            if problems:
                stats.refused += 1
            else:
                stats.received += 1
            stats.version += 1
    for warning in warnings:
        # Counted per event; logged at most once a minute per event type (a sender controls the rate).
        _LAX_LOG.warning(
            warning.event_type, "NL GOV profile (lax) %s: %s", warning.event_type, warning.detail
        )
        m.events_profile_warnings.labels(warning.event_type).inc()
    if problems:
        status = 400 if any(p.status == 400 for p in problems) else 422
        for p in problems:
            m.events_refused.labels(p.reason).inc()
        slug = "invalid-cloudevent" if status == 400 else "event-not-acceptable"
        return problem(
            status,
            slug,
            f"{len(problems)} problem(s); nothing was accepted",
            errors=[p.as_dict() for p in problems],
        )
    m.child(m.events_received, parsed.mode.value).inc(len(parsed.events))
    try:
        queued = await gateway.publish(parsed.events, namespace=namespace)
    except PublishRefused as refused:
        m.events_refused.labels(refused.slug).inc()
        return problem(refused.status, refused.slug, refused.detail, headers=refused.headers)
    answer: dict[str, Any] = {"accepted": len(parsed.events), "deliveries": queued}
    if warnings:
        # Accepted anyway (lax profile), but the sender learns what the strict profile would refuse.
        answer["warnings"] = [w.as_dict() for w in warnings]
    return web.Response(body=orjson.dumps(answer), status=202, content_type="application/json")


def webhook_handshake(request: web.Request) -> web.Response:
    """The CloudEvents HTTP Webhook abuse-protection handshake (OPTIONS)."""
    origin = request.headers.get("WebHook-Request-Origin")
    headers = {"Allow": "POST"}
    if origin:
        headers["WebHook-Allowed-Origin"] = origin
        if "WebHook-Request-Rate" in request.headers:
            headers["WebHook-Allowed-Rate"] = MAX_ALLOWED_RATE
        else:
            headers["WebHook-Allowed-Rate"] = "*"
    return web.Response(status=200, headers=headers)


async def handle_events_options(request: web.Request) -> web.Response:
    return webhook_handshake(request)
