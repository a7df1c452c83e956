"""``/webhooks/<endpoint>``: the HTTP adapter of Consumer ingress.

The handler finds the Consumer, checks the client address, reads the body within the Consumer's limit
and hands the rest to :func:`openconnector.consumers.ingest.ingest` (authentication, mapping, schema,
target, emission). :class:`_GatewayPorts` gives that pipeline the gateway's HTTP client, clock, replay
store, event builder and publisher. Every refusal is a :class:`~openconnector.refusal.Refusal`, counted
here and rendered as problem+json by ``gateway/problems.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from openconnector.ce import CloudEvent
from openconnector.consumers.allow_list import TrustedProxies
from openconnector.consumers.ingest import InboundRequest, ingest
from openconnector.consumers.replay import ReplayStore
from openconnector.consumers.targets import (
    MAX_ANSWER_BYTES,
    TargetCall,
    target_unreachable,
    unreachable_reason,
)
from openconnector.gateway.core import GATEWAY_KEY, Gateway, PublishRefused
from openconnector.gateway.ingress import BodyTooLarge, read_limited, webhook_handshake
from openconnector.gateway.problems import problem, refusal_problem
from openconnector.refusal import Refusal
from openconnector.routing.table import ConsumerRoute, EventRoute
from openconnector.status import ConsumerStats

log = logging.getLogger(__name__)


@functools.cache
def _trusted_proxies(cidrs: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies(cidrs)


def _check_ip(gateway: Gateway, consumer: ConsumerRoute, request: web.Request) -> None:
    if not consumer.allow_list:
        return
    proxies = _trusted_proxies(tuple(gateway.settings.trusted_proxies))
    address = proxies.client_address(request.remote or "", request.headers.get("X-Forwarded-For"))
    if not consumer.allow_list.allows(address):
        raise Refusal(403, "forbidden", "the client address is not allowed", label="ip-not-allowed")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    try:
        return await read_limited(request, limit)
    except BodyTooLarge as error:
        raise Refusal(413, "body-too-large", str(error), label="too-large") from None


class _GatewayPorts:
    """The gateway as :class:`openconnector.consumers.ingest.ConsumerPorts`."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @property
    def replay_store(self) -> ReplayStore:
        return self._gateway.replay_guard

    def now(self) -> float:
        return self._gateway.clock()

    async def call_target(self, consumer: ConsumerRoute, call: TargetCall) -> tuple[int, bytes]:
        gateway = self._gateway
        source = consumer.target
        assert source is not None
        stats = gateway.source_stats[source.key]
        stats.requests += 1
        stats.version += 1
        outcomes = gateway.metrics.target_requests
        labels = (source.key.namespace, source.key.name)
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
        return self._gateway.emit_for(event, data, subject=subject)

    async def publish(self, event: CloudEvent, namespace: str) -> None:
        try:
            await self._gateway.publish([event], namespace=namespace)
        except PublishRefused as refused:
            raise Refusal(
                refused.status, refused.slug, refused.detail, label="backlog", headers=refused.headers
            ) from None

    def stored_not_emitted(self, consumer: ConsumerRoute, why: str) -> None:
        # Logged and recorded in the Consumer's status: a stored payload without its event is never silent.
        gateway = self._gateway
        log.error("%s: stored, but no event emitted: %s", consumer.key, why)
        stats = gateway.consumer_stats[consumer.key]
        stats.last_error = (gateway.clock(), None, f"stored, but no event emitted: {why}")
        stats.version += 1
        gateway.metrics.events_refused.labels("not-emitted-after-store").inc()


async def _ingest(gateway: Gateway, consumer: ConsumerRoute, request: web.Request) -> web.Response:
    _check_ip(gateway, consumer, request)
    body = await _read_limited(request, consumer.max_body_bytes)
    gateway.metrics.child(gateway.metrics.ingress_bytes, "/webhooks").inc(len(body))
    inbound = InboundRequest(request.headers, request.query, request.content_type or "", body)
    answer = await ingest(consumer, inbound, _GatewayPorts(gateway))
    return web.json_response(answer.body, status=answer.status)


async def handle_webhook(request: web.Request) -> web.StreamResponse:
    gateway: Gateway = request.app[GATEWAY_KEY]
    endpoint = request.match_info["endpoint"]
    consumer = gateway.table.consumer(endpoint)
    if consumer is None:
        return problem(404, "unknown-endpoint", f"no enabled consumer serves /webhooks/{endpoint.strip('/')}")
    stats: ConsumerStats = gateway.consumer_stats[consumer.key]
    labels = (consumer.key.namespace, consumer.key.name)
    stats.record_received(gateway.clock())
    gateway.metrics.child(gateway.metrics.webhooks_received, *labels).inc()
    try:
        response = await _ingest(gateway, consumer, request)
    except Refusal as refusal:
        stats.record_rejected(refusal.label, refusal.status, refusal.detail, gateway.clock())
        gateway.metrics.webhooks_rejected.labels(*labels, refusal.label).inc()
        return refusal_problem(refusal)
    stats.record_forwarded()
    gateway.metrics.child(gateway.metrics.webhooks_forwarded, *labels).inc()
    return response


async def handle_webhook_options(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY_KEY]
    if gateway.table.consumer(request.match_info["endpoint"]) is None:
        return problem(404, "unknown-endpoint", "no enabled consumer serves this endpoint")
    return webhook_handshake(request)


__all__: Sequence[str] = ("handle_webhook", "handle_webhook_options")
