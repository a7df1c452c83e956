"""The aiohttp application: routes (every error answered as problem+json, see ``gateway/routes.py``),
status API, probes and metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION, KINDS_BY_NAME
from openconnector.gateway.core import GATEWAY_KEY, Gateway
from openconnector.gateway.events import events_handler, handle_events_options
from openconnector.gateway.intake import continue_at_body_read
from openconnector.gateway.problems import problem, refusal_problem
from openconnector.gateway.routes import add_unrouted, problem_routes
from openconnector.gateway.webhooks import handle_webhook, handle_webhook_options
from openconnector.messages.api import add_message_routes
from openconnector.messages.service import AUTHORIZER_KEY
from openconnector.refusal import Refusal
from openconnector.ui import add_ui_routes

log = logging.getLogger(__name__)


async def handle_status(request: web.Request) -> web.Response:
    """What ``kubectl get`` would show, for the resources the caller may list (the message API's
    authorizer: the bearer token standalone, or a SubjectAccessReview ``list`` per namespace and kind)."""
    gateway = request.app[GATEWAY_KEY]
    authorizer = request.app[AUTHORIZER_KEY]
    try:
        principal = await authorizer.authenticate(request.headers, peer=request.remote)
        listable: dict[tuple[str, str], bool] = {}
        resources = []
        for item in gateway.status_view():
            scope = (item["namespace"], KINDS_BY_NAME[item["kind"]].plural)
            if scope not in listable:
                listable[scope] = await authorizer.allowed(principal, "list", scope[0], "", resource=scope[1])
            if listable[scope]:
                resources.append(item)
    except Refusal as refusal:
        return refusal_problem(refusal)
    return web.json_response({"routingTableVersion": gateway.table.version, "resources": resources})


async def handle_attempts(request: web.Request) -> web.Response:
    """The last attempts of one subscription, for a caller who may ``get`` it (404 otherwise, as the
    message API answers: a subscription's existence is not revealed)."""
    gateway = request.app[GATEWAY_KEY]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    try:
        await request.app[AUTHORIZER_KEY].authorize(
            request.headers, "get", namespace, name, peer=request.remote
        )
    except Refusal as refusal:
        return refusal_problem(refusal)
    key = ResourceKey(EVENT_SUBSCRIPTION.kind, namespace, name)
    if key not in gateway.dispatcher.target_keys():
        return problem(
            404, "unknown-subscription", f"no subscription {key.namespaced_name} is routed by this gateway"
        )
    attempts = [a.to_json() for a in gateway.dispatcher.attempts(key)]
    return web.json_response({"subscription": key.namespaced_name, "attempts": attempts})


async def handle_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# Every 503 carries Retry-After (RFC 9110 §10.2.3): readiness is polled, and a client told to wait
# should be told how long.
_READYZ_RETRY_AFTER = {"Retry-After": "5"}


async def handle_readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    if gateway.draining:
        return problem(503, "shutting-down", "the gateway is shutting down", headers=_READYZ_RETRY_AFTER)
    if not gateway.ready.is_set():
        return problem(
            503, "not-ready", "the first routing table is not built yet", headers=_READYZ_RETRY_AFTER
        )
    if not gateway.dispatcher.ready:
        return problem(
            503, "bus-unavailable", gateway.dispatcher.readiness_detail, headers=_READYZ_RETRY_AFTER
        )
    return web.json_response({"status": "ready", "routingTableVersion": gateway.table.version})


async def handle_metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    return web.Response(
        body=generate_latest(gateway.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def build_app(gateway: Gateway, *, with_metrics: bool = True) -> web.Application:
    # Bodies are size-checked per route (settings.max_event_bytes, a consumer's maxBodyBytes); this is
    # only the outer bound aiohttp enforces for request.read().
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[GATEWAY_KEY] = gateway
    routes = problem_routes(app)
    routes.add_post(
        "/events", events_handler(gateway, namespaced=False), expect_handler=continue_at_body_read
    )
    routes.add_route("OPTIONS", "/events", handle_events_options)
    routes.add_post(
        "/namespaces/{namespace}/events",
        events_handler(gateway, namespaced=True),
        expect_handler=continue_at_body_read,
    )
    routes.add_route("OPTIONS", "/namespaces/{namespace}/events", handle_events_options)
    routes.add_post("/webhooks/{endpoint:.+}", handle_webhook, expect_handler=continue_at_body_read)
    routes.add_route("OPTIONS", "/webhooks/{endpoint:.+}", handle_webhook_options)
    routes.add_get("/api/v1alpha1/status", handle_status)
    routes.add_get("/api/v1alpha1/subscriptions/{namespace}/{name}/attempts", handle_attempts)
    routes.add_get("/healthz", handle_healthz)
    routes.add_get("/readyz", handle_readyz)
    if with_metrics:
        routes.add_get("/metrics", handle_metrics)
    add_message_routes(app, gateway.messages, gateway.authorizer)
    add_ui_routes(app)  # the web page at /ui (docs/ui.md), over the message service and authorizer above
    add_unrouted(app)  # last: the 404s and 405s of what no route above serves
    return app
