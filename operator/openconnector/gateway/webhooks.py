"""``/webhooks/<endpoint>``: the HTTP adapter of Consumer ingress.

The handler finds the Consumer and hands the request to :func:`openconnector.consumers.ingest.receive`
(client address, size limit, authentication, mapping, schema, target, emission). :class:`_GatewayPorts`
gives that pipeline this request, the gateway's HTTP client, clock, replay store, counters, event builder
and publisher. Every refusal is a :class:`~openconnector.refusal.Refusal`, rendered as problem+json by
``gateway/problems.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from openconnector.ce import CloudEvent, Problem
from openconnector.consumers.allow_list import IpAddress, TrustedProxies
from openconnector.consumers.ingest import InboundRequest, receive
from openconnector.consumers.replay import ReplayStore
from openconnector.consumers.targets import (
    MAX_ANSWER_BYTES,
    TargetCall,
    target_unreachable,
    unreachable_reason,
)
from openconnector.gateway.core import GATEWAY_KEY, ConsumerCounters, Gateway
from openconnector.gateway.intake import JSON_ANSWER_HEADERS, body_now, read_limited, webhook_handshake
from openconnector.gateway.problems import problem, refusal_problem
from openconnector.gateway.routes import answer_error, answers_own_errors
from openconnector.refusal import Refusal
from openconnector.resources import ResourceKey
from openconnector.routing.table import ConsumerRoute, EventRoute
from openconnector.status.counters import ConsumerStats

__all__ = ["handle_webhook", "handle_webhook_options"]

log = logging.getLogger(__name__)


@functools.cache
def _trusted_proxies(cidrs: tuple[str, ...]) -> TrustedProxies:
    # --trusted-proxy is fixed for the gateway's life: parsed once, on the first webhook.
    return TrustedProxies(cidrs)


# Longer X-Forwarded-For values are resolved every time instead of filling the cache.
_CACHED_FORWARDED_LENGTH = 256


@functools.lru_cache(maxsize=1024)
def _client_address(cidrs: tuple[str, ...], remote: str, forwarded: str | None) -> IpAddress | None:
    # A client sends many requests from the same address: parse it once, not per request.
    return _trusted_proxies(cidrs).client_address(remote, forwarded)


def _labels(key: ResourceKey) -> tuple[str, str]:
    return key.namespace, key.name


class _GatewayPorts:
    """The gateway and one request as :class:`openconnector.consumers.ingest.ConsumerPorts`."""

    __slots__ = ("_counters", "_gateway", "_now", "_request", "_stats")

    def __init__(self, gateway: Gateway, request: web.Request) -> None:
        self._gateway = gateway
        self._request = request
        # Taken by received(): the request's clock reading, and its Consumer's status and metric counters
        # (looked up once, for received() and forwarded() both).
        self._now: float | None = None
        self._stats: ConsumerStats | None = None
        self._counters: ConsumerCounters | None = None

    @property
    def replay_store(self) -> ReplayStore:
        return self._gateway.replay_store

    @property
    def max_json_depth(self) -> int:
        return self._gateway.settings.limits.max_json_depth

    def now(self) -> float:
        # received()'s reading, until the request awaits (read_request): until then the steps run without
        # yielding, microseconds apart, and one clock reading serves them all.
        now = self._now
        return self._gateway.clock() if now is None else now

    def client_address(self) -> IpAddress | None:
        cidrs = tuple(self._gateway.settings.trusted_proxies)
        remote = self._request.remote or ""
        forwarded = self._request.headers.get("X-Forwarded-For")
        if forwarded is not None and len(forwarded) > _CACHED_FORWARDED_LENGTH:
            return _trusted_proxies(cidrs).client_address(remote, forwarded)
        return _client_address(cidrs, remote, forwarded)

    def request_now(self, limit: int) -> InboundRequest | None:
        request = self._request
        body = body_now(request, limit)  # a 413 Refusal when larger
        if body is None:
            return None
        headers = request.headers
        if headers.get("Content-Type") != "application/json":
            return self._inbound(body)
        self._gateway.webhook_bytes()(len(body))  # as _inbound, for the type nearly every sender sends
        return InboundRequest(headers, request.query, "application/json", body)

    async def read_request(self, limit: int) -> InboundRequest:
        self._now = None  # the body may take seconds: later steps read the clock again
        return self._inbound(await read_limited(self._request, limit))  # a 413 Refusal when larger

    def _inbound(self, body: bytes) -> InboundRequest:
        request = self._request
        self._gateway.webhook_bytes()(len(body))
        headers = request.headers
        content_type = headers.get("Content-Type")
        if content_type != "application/json":  # that one is its own parsed form: nothing to parse
            try:
                content_type = request.content_type
            except IndexError:  # aiohttp parses with CPython's email parser, which fails on some parameters
                content_type = headers.get("Content-Type", "")
        return InboundRequest(headers, request.query, content_type or "", body)

    def received(self, consumer: ConsumerRoute) -> None:
        gateway = self._gateway
        key = consumer.key
        self._now = now = gateway.clock()
        self._stats = stats = gateway.consumer_stats[key]
        self._counters = counters = gateway.consumer_counters(key)
        stats.record_received(now)
        counters.received(1)

    def refused(self, consumer: ConsumerRoute, refusal: Refusal) -> None:
        gateway = self._gateway
        stats = gateway.consumer_stats[consumer.key]
        stats.record_rejected(refusal.label, refusal.status, refusal.detail, gateway.clock())
        gateway.metrics.webhooks_rejected.labels(*_labels(consumer.key), refusal.label).inc()

    def forwarded(self, consumer: ConsumerRoute) -> None:
        stats, counters = self._stats, self._counters
        if stats is None or counters is None:  # received() not called for this request: look them up
            gateway = self._gateway
            stats, counters = gateway.consumer_stats[consumer.key], gateway.consumer_counters(consumer.key)
        stats.record_forwarded()
        counters.forwarded(1)

    async def call_target(self, consumer: ConsumerRoute, call: TargetCall) -> tuple[int, bytes]:
        gateway = self._gateway
        source = consumer.target
        assert source is not None
        stats = gateway.source_stats[source.key]
        stats.requests += 1
        outcomes = gateway.metrics.target_requests
        labels = _labels(source.key)
        try:
            async with gateway.session.post(
                call.url,
                data=call.body,
                headers=dict(call.headers),
                timeout=aiohttp.ClientTimeout(total=call.timeout),
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = unreachable_reason(error)
            stats.failures += 1
            stats.last_error = (gateway.clock(), None, reason)
            outcomes.labels(*labels, "error").inc()
            raise target_unreachable(reason) from None
        if 200 <= status < 300:
            outcomes.labels(*labels, "success").inc()
        else:
            stats.failures += 1
            stats.last_error = (gateway.clock(), status, f"HTTP {status}")
            outcomes.labels(*labels, "failure").inc()
        return status, raw

    def build_event(self, event: EventRoute, data: Any, subject: str | None) -> CloudEvent:
        return self._gateway.build_event_for(event, data, subject=subject)

    def nlgov_problems(self, event: EventRoute, built: CloudEvent) -> Sequence[Problem]:
        return self._gateway.nlgov_problems(event)

    def publish(self, event: CloudEvent, namespace: str) -> Awaitable[int]:
        return self._gateway.publish([event], namespace=namespace)  # awaited by the caller: no extra frame

    def stored_not_emitted(self, consumer: ConsumerRoute, why: str) -> None:
        # Logged and recorded in the Consumer's status: a stored payload without its event is never silent.
        gateway = self._gateway
        log.error("%s: stored, but no event emitted: %s", consumer.key, why)
        stats = gateway.consumer_stats[consumer.key]
        stats.last_error = (gateway.clock(), None, f"stored, but no event emitted: {why}")
        gateway.metrics.events_refused.labels("not-emitted-after-store").inc()


@answers_own_errors
async def handle_webhook(request: web.Request) -> web.StreamResponse:
    try:
        gateway: Gateway = request.app[GATEWAY_KEY]
        endpoint = request.match_info["endpoint"]
        consumer = gateway.table.consumer(endpoint)
        if consumer is None:
            return problem(
                404, "unknown-endpoint", f"no enabled consumer serves /webhooks/{endpoint.strip('/')}"
            )
        ports = _GatewayPorts(gateway, request)
        answer = await receive(consumer, ports)
        if isinstance(answer, Refusal):
            return refusal_problem(answer)
        return web.Response(body=orjson.dumps(answer.body), status=answer.status, headers=JSON_ANSWER_HEADERS)
    except Exception as error:
        return answer_error(request, error)


async def handle_webhook_options(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY_KEY]
    if gateway.table.consumer(request.match_info["endpoint"]) is None:
        return problem(404, "unknown-endpoint", "no enabled consumer serves this endpoint")
    return webhook_handshake(request)
