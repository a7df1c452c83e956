"""``/webhooks/<endpoint>``: Consumer ingress — allow-list, size limit, auth, mapping, target, emission.

Every refusal is a problem+json with a precise status. Failures of the target answer 502 so the sender
retries; nothing is stored or emitted half-way: the event is emitted only after the target accepted.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web

from openconnector.ce import CloudEvent, CloudEventError
from openconnector.delivery.outcomes import BusUnavailableError
from openconnector.gateway.core import GATEWAY_KEY, Gateway, PublishRefused
from openconnector.gateway.ingress import BodyTooLarge, read_limited, webhook_handshake
from openconnector.gateway.problems import problem
from openconnector.mapping import MappingError
from openconnector.routing.table import ConsumerRoute, SourceRoute
from openconnector.status import ConsumerStats
from openconnector.webhook_auth import AuthFailure, InboundAuthConfigError, client_ip, verify_inbound

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "text/json")


class Refusal(Exception):
    """A request the consumer refuses; ``reason`` is the counter label, the rest the answer."""

    def __init__(self, status: int, reason: str, slug: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.slug = slug
        self.detail = detail
        self.extra = extra


def _is_json(content_type: str) -> bool:
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence in _JSON_TYPES or essence.endswith("+json")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    try:
        return await read_limited(request, limit)
    except BodyTooLarge as error:
        raise Refusal(413, "too-large", "body-too-large", str(error)) from None


def _check_ip(gateway: Gateway, consumer: ConsumerRoute, request: web.Request) -> None:
    if not consumer.allowed_networks:
        return
    ip = client_ip(
        request.remote or "",
        request.headers.get("X-Forwarded-For"),
        gateway.settings.trusted_proxies,
    )
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise Refusal(403, "ip-not-allowed", "forbidden", "the client address is not allowed") from None
    if not any(address in network for network in consumer.allowed_networks):
        raise Refusal(403, "ip-not-allowed", "forbidden", "the client address is not allowed")


def _parse_payload(request: web.Request, body: bytes) -> Any:
    if not _is_json(request.content_type or ""):
        raise Refusal(
            415,
            "unsupported-media-type",
            "unsupported-media-type",
            f"expected a JSON body, got Content-Type {request.content_type!r}",
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Refusal(400, "invalid-json", "invalid-json", f"the body is not valid JSON: {error}") from None


async def _send(gateway: Gateway, source: SourceRoute, url: str, payload: Any) -> tuple[int, Any]:
    """POST the payload to a Source; returns (status, decoded JSON body or None)."""
    stats = gateway.source_stats[source.key]
    stats.requests += 1
    stats.version += 1
    ns, name = source.key.namespace, source.key.name
    try:
        async with gateway.session.post(
            url,
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json", **source.target.headers},
            timeout=aiohttp.ClientTimeout(total=source.target.timeout),
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(1024 * 1024)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        message = f"{type(error).__name__}: target unreachable"
        stats.failures += 1
        stats.last_error = (gateway.clock(), None, message)
        gateway.metrics.target_requests.labels(ns, name, "error").inc()
        raise Refusal(
            502,
            "target-unreachable",
            "target-unreachable",
            f"the target did not answer ({message})",
            targetStatus=None,
        ) from None
    if not 200 <= status < 300:
        stats.failures += 1
        stats.last_error = (gateway.clock(), status, f"HTTP {status}")
        gateway.metrics.target_requests.labels(ns, name, "failure").inc()
        raise Refusal(
            502, "target-failed", "target-failed", f"the target answered HTTP {status}", targetStatus=status
        )
    gateway.metrics.target_requests.labels(ns, name, "success").inc()
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, None


def _object_id(stored: Any, fallback: Any) -> str | None:
    for candidate in (stored, fallback):
        if isinstance(candidate, dict):
            for key in ("id", "uuid"):
                if isinstance(candidate.get(key), str | int):
                    return str(candidate[key])
            meta = candidate.get("@self")
            if isinstance(meta, dict) and isinstance(meta.get("id"), str | int):
                return str(meta["id"])
    return None


async def _ingest(gateway: Gateway, consumer: ConsumerRoute, request: web.Request) -> web.Response:
    _check_ip(gateway, consumer, request)
    body = await _read_limited(request, consumer.max_body_bytes)
    gateway.metrics.child(gateway.metrics.ingress_bytes, "/webhooks").inc(len(body))
    try:
        outcome = verify_inbound(
            consumer.auth,
            headers=request.headers,
            query=request.query,
            body=body,
            now=gateway.clock(),
            replay_guard=gateway.replay_guard,
            replay_scope=str(consumer.key),
        )
    except AuthFailure as failure:
        headers = {"WWW-Authenticate": failure.www_authenticate} if failure.www_authenticate else None
        raise Refusal(
            failure.status,
            f"auth-{failure.reason}",
            "unauthorized" if failure.status == 401 else "forbidden",
            failure.detail,
            headers=headers,
        ) from None
    except InboundAuthConfigError:
        # The compiler refuses such configurations, so this is a gateway bug: not the sender's fault.
        log.error("%s: auth configuration cannot verify requests", consumer.key)
        raise Refusal(
            503, "auth-misconfigured", "consumer-misconfigured", "this endpoint cannot verify requests now"
        ) from None
    accepted = False
    try:
        if outcome.replay_key is not None and gateway.replay_store is not None:
            await _claim_shared(gateway, outcome.replay_key, outcome.replay_ttl)
        response = await _accept(gateway, consumer, request, body)
        accepted = True
        return response
    finally:
        # Not accepted (refused, failed, cancelled): the sender's retry with the same webhook-id must not
        # be refused as a replay.
        if not accepted and outcome.replay_key is not None:
            gateway.replay_guard.release(outcome.replay_key)
            if gateway.replay_store is not None:
                await gateway.replay_store.release(outcome.replay_key)


async def _claim_shared(gateway: Gateway, key: str, ttl: float) -> None:
    """The replay guard shared by every gateway process (JetStream bus): refuse a replay it knows."""
    assert gateway.replay_store is not None
    try:
        fresh = await gateway.replay_store.claim(key, ttl)
    except BusUnavailableError as error:
        headers = {"Retry-After": str(error.retry_after)}
        raise Refusal(503, "bus-unavailable", "bus-unavailable", error.detail, headers=headers) from None
    if not fresh:
        raise Refusal(401, "auth-replayed", "unauthorized", "this message was already received")


async def _accept(
    gateway: Gateway, consumer: ConsumerRoute, request: web.Request, body: bytes
) -> web.Response:
    payload = _parse_payload(request, body)
    if consumer.mapping is not None:
        try:
            payload = consumer.mapping.apply(payload)
        except MappingError as error:
            raise Refusal(
                422,
                "mapping",
                "mapping-failed",
                f"mapping failed at {error.path}: {error.message}",
                path=error.path,
            ) from None
    event_route = consumer.event
    if consumer.target_type == "register/schema" and event_route is not None and event_route.validate_data:
        violations = event_route.validate_data(payload)
        if violations:
            raise Refusal(
                422,
                "schema",
                "schema-violation",
                "the mapped object does not match the schema",
                errors=[{"detail": v} for v in violations],
            )

    answer: dict[str, Any] = {}
    status = 200
    object_id: str | None = None
    emitted_data: Any = payload
    target = consumer.target
    if target is not None and consumer.target_type == "source":
        target_status, _ = await _send(gateway, target, target.target.url, payload)
        answer["targetStatus"] = target_status
    elif target is not None and consumer.target_type == "register/schema":
        register, schema = quote(target.register, safe=""), quote(consumer.schema or "", safe="")
        url = f"{target.target.url}/objects/{register}/{schema}"
        target_status, stored = await _send(gateway, target, url, payload)
        object_id = _object_id(stored, payload)
        if isinstance(stored, dict):
            emitted_data = stored
        status = 201
        answer.update({"targetStatus": target_status, "id": object_id})

    if event_route is not None:
        try:
            event: CloudEvent = gateway.emit_for(event_route, emitted_data, subject=object_id or None)
        except CloudEventError as error:
            if target is None:  # nothing stored yet: the sender may fix and retry
                raise Refusal(422, "emission", "emission-failed", str(error)) from None
            return _stored_not_emitted(
                gateway, consumer, answer, status, f"the event could not be built: {error}"
            )
        try:
            await gateway.publish([event], namespace=consumer.key.namespace)
        except PublishRefused as refused:
            if target is None:
                raise Refusal(
                    refused.status, "backlog", refused.slug, refused.detail, headers=refused.headers
                ) from None
            return _stored_not_emitted(gateway, consumer, answer, status, refused.detail)
        answer["eventId"] = event.id
    return web.json_response(answer, status=status)


def _stored_not_emitted(
    gateway: Gateway, consumer: ConsumerRoute, answer: dict[str, Any], status: int, why: str
) -> web.Response:
    """The target already holds the payload, but no event went out. A refusal would make the sender
    retry and store it twice, so the answer is a success that says what is missing, and the failure is
    logged and recorded in the Consumer's status (never silent)."""
    log.error("%s: stored, but no event emitted: %s", consumer.key, why)
    stats = gateway.consumer_stats[consumer.key]
    stats.last_error = (gateway.clock(), None, f"stored, but no event emitted: {why}")
    stats.version += 1
    gateway.metrics.events_refused.labels("not-emitted-after-store").inc()
    answer["eventError"] = why
    return web.json_response(answer, status=status)


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
        stats.record_rejected(refusal.reason, refusal.status, refusal.detail, gateway.clock())
        gateway.metrics.webhooks_rejected.labels(*labels, refusal.reason).inc()
        extra = dict(refusal.extra)
        headers = extra.pop("headers", None)
        errors = extra.pop("errors", ())
        return problem(refusal.status, refusal.slug, refusal.detail, errors=errors, headers=headers, **extra)
    stats.record_forwarded()
    gateway.metrics.child(gateway.metrics.webhooks_forwarded, *labels).inc()
    return response


async def handle_webhook_options(request: web.Request) -> web.Response:
    gateway: Gateway = request.app[GATEWAY_KEY]
    if gateway.table.consumer(request.match_info["endpoint"]) is None:
        return problem(404, "unknown-endpoint", "no enabled consumer serves this endpoint")
    return webhook_handshake(request)
