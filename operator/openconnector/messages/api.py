"""The message API under ``/api/v1alpha1``: thin aiohttp handlers over :class:`MessageService`.

Every handler authorises first (:mod:`openconnector.messages.access`), then translates; refusals are
problem+json. The routes and their documentation live together in :func:`add_message_routes` and
:mod:`openconnector.messages.openapi`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import orjson
from aiohttp import web

from openconnector.ce import is_rfc3339, to_batch
from openconnector.gateway.intake import continue_at_body_read, read_limited
from openconnector.gateway.problems import refusal_problem
from openconnector.gateway.routes import problem_routes
from openconnector.messages.access import Authorizer, Principal, Verb
from openconnector.messages.model import MessageRecord
from openconnector.messages.openapi import openapi_document
from openconnector.messages.service import (
    AUTHORIZER_KEY,
    DEFAULT_PAGE_SIZE,
    MESSAGES_KEY,
    MessageService,
)
from openconnector.refusal import Refusal

__all__ = ["NEXT_CURSOR_HEADER", "add_message_routes"]

#: The header carrying a pull's next cursor (also in the body of list answers as ``nextCursor``).
NEXT_CURSOR_HEADER = "Next-Cursor"
PREFIX = "/api/v1alpha1"
_MAX_REPLAY_BODY = 16 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _refusals(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal_problem(refusal)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _service(request: web.Request) -> MessageService:
    return request.app[MESSAGES_KEY]


async def _authorize(request: web.Request, verb: Verb) -> Principal:
    authorizer: Authorizer = request.app[AUTHORIZER_KEY]
    return await authorizer.authorize(
        request.headers,
        verb,
        request.match_info["namespace"],
        request.match_info["name"],
        peer=request.remote,
    )


async def _readable(request: web.Request, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of ``pairs`` (namespace, name), those the caller may read."""
    authorizer: Authorizer = request.app[AUTHORIZER_KEY]
    principal = await authorizer.authenticate(request.headers, peer=request.remote)
    return {pair for pair in pairs if await authorizer.allowed(principal, "get", *pair)}


def _time(request: web.Request, name: str) -> datetime.datetime | None:
    raw = request.query.get(name)
    return None if raw is None else parse_time(raw, name)


def parse_time(raw: str, name: str) -> datetime.datetime:
    """An RFC 3339 date-time with a zone (§5.6: ``T`` and ``Z`` in either case, ``Z`` or ``±hh:mm``);
    anything else (another ISO 8601 form, no zone, a date alone) is refused with 400."""
    if len(raw) > 64 or not is_rfc3339(raw):
        if len(raw) <= 64 and _NO_ZONE.fullmatch(raw):
            raise Refusal(400, "invalid-filter", f"{name}: give a time zone (e.g. 2026-01-02T03:04:05Z)")
        raise Refusal(400, "invalid-filter", f"{name}: not an RFC 3339 time: {raw[:64]!r}")
    text = raw.upper()
    leap = text[17:19] == "60"  # a leap second: the first moment of the next minute
    if leap:
        text = f"{text[:17]}59{text[19:]}"
    try:
        moment = datetime.datetime.fromisoformat(text)
        return moment + datetime.timedelta(seconds=1) if leap else moment
    except (ValueError, OverflowError):  # year 0000, or a leap second after the last there is
        raise Refusal(400, "invalid-filter", f"{name}: not a time this API can use: {raw!r}") from None


# An RFC 3339 date and time of day without the zone (said apart: the common mistake).
_NO_ZONE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or len(raw) > 6:
        raise Refusal(400, "invalid-filter", f"limit: not a positive whole number: {raw[:20]!r}")
    return int(raw)


def _message_json(record: MessageRecord, *, with_attempts: bool) -> dict[str, Any]:
    return record.to_json(with_attempts=with_attempts)


@_refusals
async def handle_subscriptions(request: web.Request) -> web.Response:
    service = _service(request)
    readable = await _readable(request, service.subscriptions())
    items = [
        summary.to_json()
        for summary in await service.list_subscriptions(None)
        if (summary.namespace, summary.name) in readable
    ]
    return _json({"items": items, "store": service.describe()})


@_refusals
async def handle_messages(request: web.Request) -> web.Response:
    await _authorize(request, "get")
    page = await _service(request).list_messages(
        request.match_info["namespace"],
        request.match_info["name"],
        status=request.query.get("status"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        limit=_limit(request),
        cursor=request.query.get("cursor") or None,
    )
    items = [_message_json(record, with_attempts=False) for record in page.items]
    return _json({"items": items, "nextCursor": page.next_cursor})


@_refusals
async def handle_message(request: web.Request) -> web.Response:
    await _authorize(request, "get")
    record = await _service(request).get_message(
        request.match_info["namespace"], request.match_info["name"], request.match_info["id"]
    )
    return _json(_message_json(record, with_attempts=True))


@_refusals
async def handle_resend(request: web.Request) -> web.Response:
    principal = await _authorize(request, "update")
    record = await _service(request).resend(
        request.match_info["namespace"],
        request.match_info["name"],
        request.match_info["id"],
        by=principal.name,
    )
    return _json(_message_json(record, with_attempts=True), status=202)


@_refusals
async def handle_replay(request: web.Request) -> web.Response:
    principal = await _authorize(request, "update")
    raw = await read_limited(request, _MAX_REPLAY_BODY)  # a Refusal (413) when larger
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise Refusal(400, "invalid-json", "the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("since"), str):
        raise Refusal(400, "invalid-replay", 'send {"since": "<RFC 3339 time>", "statuses": [...]}')
    statuses = body.get("statuses", ["dead-lettered", "dropped"])
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses) or len(statuses) > 10:
        raise Refusal(400, "invalid-replay", "statuses: a list of message statuses")
    count = await _service(request).replay(
        request.match_info["namespace"],
        request.match_info["name"],
        since=parse_time(body["since"], "since"),
        statuses=statuses,
        by=principal.name,
    )
    return _json({"replayed": count}, status=202)


@_refusals
async def handle_event_messages(request: web.Request) -> web.Response:
    service = _service(request)
    records = await service.messages_for_event(request.match_info["eventId"], None)
    readable = await _readable(request, {(r.namespace, r.subscription) for r in records})
    items = [
        _message_json(record, with_attempts=False)
        for record in records
        if (record.namespace, record.subscription) in readable
    ]
    return _json({"items": items})


@_refusals
async def handle_pull(request: web.Request) -> web.Response:
    await _authorize(request, "get")
    batch = await _service(request).pull(
        request.match_info["namespace"],
        request.match_info["name"],
        limit=_limit(request),
        cursor=request.query.get("cursor") or None,
    )
    headers, body = to_batch(batch.events)
    headers[NEXT_CURSOR_HEADER] = batch.next_cursor
    return web.Response(body=body, headers=headers)


async def handle_openapi(request: web.Request) -> web.Response:
    return _json(openapi_document(request.app))


def add_message_routes(app: web.Application, service: MessageService, authorizer: Authorizer) -> None:
    """Mount the message API (and its OpenAPI document) on ``app``."""
    app[MESSAGES_KEY] = service
    app[AUTHORIZER_KEY] = authorizer
    sub = PREFIX + "/subscriptions/{namespace}/{name}"
    routes = problem_routes(app)
    routes.add_get(PREFIX + "/subscriptions", handle_subscriptions)
    routes.add_get(sub + "/messages", handle_messages)
    routes.add_get(sub + "/messages/{id}", handle_message)
    routes.add_post(sub + "/messages/{id}/resend", handle_resend, expect_handler=continue_at_body_read)
    routes.add_post(sub + "/replay", handle_replay, expect_handler=continue_at_body_read)
    routes.add_get(sub + "/pull", handle_pull)
    routes.add_get(PREFIX + "/events/{eventId}/messages", handle_event_messages)
    routes.add_get(PREFIX + "/openapi.json", handle_openapi)
