"""``/events``: CloudEvents ingress in binary, structured and batch mode.

The checks after parsing are pure (:func:`check_events`); the handler only moves bytes and answers.
A batch is accepted or refused as a whole, so a sender never has to work out which half got through.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from openconnector.ce import CloudEvent, CloudEventError, check_nlgov, parse_http
from openconnector.ce.codec import MAX_PROBLEMS
from openconnector.ce.depth import json_depth_exceeds, json_text_within_depth
from openconnector.ce.nlgov import nlgov_conforms
from openconnector.gateway.core import Gateway
from openconnector.gateway.intake import JSON_ANSWER_HEADERS, body_now, read_limited, webhook_handshake
from openconnector.gateway.metrics import CounterSeries, GatewayMetrics, HistogramSeries
from openconnector.gateway.problems import problem, refusal_problem
from openconnector.gateway.ratelog import RateLimitedLog
from openconnector.gateway.routes import Handler, answer_error, answers_own_errors
from openconnector.refusal import Refusal
from openconnector.routing.table import EventRoute, RoutingTable

log = logging.getLogger(__name__)
_LAX_LOG = RateLimitedLog(log, interval=60.0)


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


# Bodies up to this size are scanned for brackets before any walk (memchr passes over the text); a larger
# one is walked at once, so a big binary (non-JSON) body is never scanned in vain.
_SCANNED_BODY_BYTES = 16 * 1024


def depth_problems(
    events: Sequence[CloudEvent], max_depth: int, *, batch: bool, body: bytes | None = None
) -> list[EventProblem]:
    """Events whose data nests deeper than the gateway accepts (it could not be delivered).

    ``body``: the JSON text the events were decoded from, when they were; a body too small to nest that
    deep spares the walk of every event's data (same verdict, see :func:`json_text_within_depth`)."""
    if body is not None and len(body) <= _SCANNED_BODY_BYTES and json_text_within_depth(body, max_depth):
        return []
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
    definitions_of: Sequence[list[EventRoute]] | None = None,
) -> tuple[list[EventProblem], list[EventProblem], bool]:
    """Problems that refuse the request, warnings (lax-profile violations) that do not, and whether
    every event was checked (False: checking stopped at :data:`MAX_PROBLEMS` problems).
    ``definitions_of``: each event's :func:`defining_events`, when the caller has them already."""
    problems: list[EventProblem] = []
    warnings: list[EventProblem] = []
    for position, event in enumerate(events):
        if len(problems) >= MAX_PROBLEMS:
            # The work per request is bounded like the answer; more problems would not be listed.
            return problems, warnings, False
        index = position if batch else None
        definitions = (
            definitions_of[position]
            if definitions_of is not None
            else defining_events(table, event.type, namespace)
        )
        if not definitions:
            if not allow_unknown_types:
                where = f" in namespace {namespace!r}" if namespace is not None else ""
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
        # The profile check depends on the event only; strict wins when any definition is strict (asked
        # only when there is something to refuse or warn about: most events conform, found at once).
        found_nlgov = () if nlgov_conforms(event) else check_nlgov(event, index=index)
        if found_nlgov:
            strict = any(d.profile == "nl-gov" for d in definitions)
            for found in found_nlgov:
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
            owner = f" (Event {defined.key.namespaced_name})" if several else ""
            if isinstance(event.data, bytes | bytearray):
                detail = f"data: must be JSON to validate against the Event's schema{owner}"
                problems.append(EventProblem(index, "data", detail, 422, "schema"))
                continue
            for error in defined.validate_data(event.data):
                problems.append(EventProblem(index, "data", _data_detail(error) + owner, 422, "schema"))
    return problems, warnings, True


class _Definitions:
    """:func:`defining_events` per (namespace, type) of one routing table, worked out once per table (a
    table never changes; a new one starts afresh), each with whether any of them has a data schema. Bounded:
    senders choose types freely. Holds its table weakly, so a replaced table is not kept alive."""

    __slots__ = ("found", "table")

    def __init__(self, table: RoutingTable) -> None:
        self.table = weakref.ref(table)
        self.found: dict[tuple[str | None, str], tuple[list[EventRoute], bool]] = {}


_DEFINITIONS_CACHED: Final = 1024
_definitions: _Definitions | None = None


def _definitions_of(
    table: RoutingTable, event_type: str, namespace: str | None
) -> tuple[list[EventRoute], bool]:
    """``defining_events(table, event_type, namespace)`` (shared: read it, never change it), and whether
    none of them validates data against a schema."""
    global _definitions
    cache = _definitions
    if cache is None or cache.table() is not table:
        cache = _definitions = _Definitions(table)
    key = (namespace, event_type)
    found = cache.found.get(key)
    if found is None:
        definitions = defining_events(table, event_type, namespace)
        found = (definitions, all(d.validate_data is None for d in definitions))
        if len(cache.found) < _DEFINITIONS_CACHED:
            cache.found[key] = found
    return found


@functools.lru_cache(maxsize=256)
def _accepted_body(accepted: int, deliveries: int) -> bytes:
    """The 202's body without warnings (the same few counts again and again)."""
    return orjson.dumps({"accepted": accepted, "deliveries": deliveries})


class _BoundSeries:
    """The /events series of one gateway's metrics, looked up once (``inc_of``/``child`` build a key per
    call). Each is still made on its first use, so a series shows at scrape time once it counted. The
    counters are the plain series themselves: the handler adds to their ``value`` (what
    :meth:`CounterSeries.add` does) without a call."""

    __slots__ = ("ingress_bytes", "metrics", "parse_seconds", "received")

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self.ingress_bytes: CounterSeries | None = None
        self.parse_seconds: dict[str, HistogramSeries] = {}
        self.received: dict[str, CounterSeries] = {}

    def bind_ingress_bytes(self) -> CounterSeries:
        self.ingress_bytes = self.metrics.child(self.metrics.ingress_bytes, "/events")
        return self.ingress_bytes

    def bind_parse_seconds(self, mode: str) -> HistogramSeries:
        found = self.parse_seconds[mode] = self.metrics.child(self.metrics.parse_seconds, mode)
        return found

    def bind_received(self, mode: str) -> CounterSeries:
        found = self.received[mode] = self.metrics.child(self.metrics.events_received, mode)
        return found


# The last gateway's series (one gateway per process, except in tests, which rebind when they alternate).
_bound: _BoundSeries | None = None


def _series_of(metrics: GatewayMetrics) -> _BoundSeries:
    global _bound
    bound = _bound
    if bound is None or bound.metrics is not metrics:
        bound = _bound = _BoundSeries(metrics)
    return bound


def _token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    offered = header[7:] if header[:7].lower() == "bearer " else request.query.get("access_token", "")
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def events_handler(gateway: Gateway, *, namespaced: bool) -> Handler:
    """``POST /events`` of ``gateway`` (published where Events define the type), or with ``namespaced``
    ``POST /namespaces/{namespace}/events``. Bound to its gateway: a request does not look it up in the
    app, nor (on /events) the path's namespace, through aiohttp's ``request.app`` and ``match_info``
    properties (about 1 % of the gateway's instructions per request)."""

    @answers_own_errors
    async def handle_events(request: web.Request) -> web.StreamResponse:
        try:
            namespace = request.match_info["namespace"] if namespaced else None
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
                # Most bodies came with the head: taken without a coroutine (read_limited's answer, at once).
                body = body_now(request, settings.max_event_bytes)
                if body is None:
                    body = await read_limited(request, settings.max_event_bytes)
            except Refusal as refused:
                m.events_refused.labels(refused.label).inc()
                return refusal_problem(refused)
            series = _bound
            if series is None or series.metrics is not m:
                series = _series_of(m)
            (series.ingress_bytes or series.bind_ingress_bytes()).value += len(body)
            started = time.perf_counter()
            try:
                parsed = parse_http(request.method, request.headers, body)
            except CloudEventError as error:
                refusals = m.events_refused
                refusals.labels("malformed" if error.status == 400 else "unsupported-media-type").inc()
                slug = "invalid-cloudevent" if error.status == 400 else "unsupported-media-type"
                stopped = "" if error.complete else f"; checking stopped after {len(error.problems)} problems"
                return problem(
                    error.status,
                    slug,
                    f"the request is not a valid CloudEvent{stopped}",
                    errors=[p.as_dict() for p in error.problems],
                )
            table = gateway.table
            events = parsed.events
            mode = parsed.mode._value_  # not the .value property: a call per request
            batch = mode == "batch"
            max_depth = settings.limits.max_json_depth
            # (The small-body scan inline: depth_problems' first step, a call saved on every request. Not
            # shallow: the walk, without the body, so the scan is not made twice.)
            shallow = len(body) <= _SCANNED_BODY_BYTES and json_text_within_depth(body, max_depth)
            too_deep = [] if shallow else depth_problems(events, max_depth, batch=batch)
            if too_deep:
                m.events_refused.labels("too-deep").inc(len(too_deep))
                return problem(
                    422,
                    "too-deep",
                    f"{len(too_deep)} event(s) nest deeper than {max_depth} levels; nothing was accepted",
                    errors=[p.as_dict() for p in too_deep],
                )
            problems: Sequence[EventProblem]
            warnings: Sequence[EventProblem]
            if batch:
                definitions_of = [_definitions_of(table, event.type, namespace)[0] for event in events]
                checked = False
            else:
                # One event: check_events' answer is known at once when an Event defines the type, none of
                # them has a schema and the event conforms to the NL GOV profile (nothing to refuse or warn
                # about). (attributes["type"]: a parsed event's type is a str: no call of event.type.)
                definitions, schemaless = _definitions_of(table, events[0].attributes["type"], namespace)  # type: ignore[arg-type]
                definitions_of = [definitions]
                checked = bool(definitions) and schemaless and nlgov_conforms(events[0])
            if checked:
                problems, warnings, complete = (), (), True
            else:
                problems, warnings, complete = check_events(
                    table,
                    events,
                    allow_unknown_types=settings.allow_unknown_types,
                    batch=batch,
                    namespace=namespace,
                    definitions_of=definitions_of,
                )
            (series.parse_seconds.get(mode) or series.bind_parse_seconds(mode)).observe(
                time.perf_counter() - started
            )
            event_stats = gateway.event_stats
            for definitions in definitions_of:
                for defined in definitions:
                    stats = event_stats[defined.key]
                    if problems:
                        stats.refused += 1
                    else:
                        stats.received += 1
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
                stopped = "" if complete else f"; checking stopped after {len(problems)} problems"
                return problem(
                    status,
                    slug,
                    f"{len(problems)} problem(s); nothing was accepted{stopped}",
                    errors=[p.as_dict() for p in problems],
                )
            (series.received.get(mode) or series.bind_received(mode)).value += len(events)
            try:
                # Most publishes are decided at once (no coroutine); the others wait for room or the bus.
                publishing = gateway.publish_now(events, namespace)
                if isinstance(publishing, int):
                    queued = publishing
                else:
                    queued = await gateway.publish_waiting(events, namespace, publishing)
            except Refusal as refused:
                m.events_refused.labels(refused.label).inc()
                return refusal_problem(refused)
            if warnings:
                # Accepted anyway (lax profile), but the sender learns what the strict profile would refuse.
                answer = {
                    "accepted": len(events),
                    "deliveries": queued,
                    "warnings": [w.as_dict() for w in warnings],
                }
                return web.Response(body=orjson.dumps(answer), status=202, content_type="application/json")
            return web.Response(
                body=_accepted_body(len(events), queued), status=202, headers=JSON_ANSWER_HEADERS
            )
        except Exception as error:
            return answer_error(request, error)

    return handle_events


async def handle_events_options(request: web.Request) -> web.Response:
    return webhook_handshake(request)
