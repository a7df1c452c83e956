"""The OpenAPI 3.1 document of the whole gateway HTTP API, served at ``/api/v1alpha1/openapi.json``.

Written by hand next to the routes (``gateway/app.py``, :mod:`openconnector.messages.api`); a test
checks that every route the gateway registers is documented here and every documented path is routed.
The web pages under ``/ui`` are HTML for people, not API, and are left out.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from aiohttp import web

from openconnector import __version__
from openconnector.messages.model import MessageStatus

__all__ = ["openapi_document"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_NS = {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(status): _PROBLEM for status in statuses}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


_CLOUDEVENT_BODY = {
    "required": True,
    "content": {
        "application/cloudevents+json": {"schema": _ref("CloudEvent")},
        "application/cloudevents-batch+json": {"schema": {"type": "array", "items": _ref("CloudEvent")}},
        "*/*": {"schema": {"description": "binary mode: ce- headers and the data as the body"}},
    },
}
_INTAKE_RESPONSES = {
    "202": {"description": "every event was handed to delivery (stored, with --bus jetstream)"},
    **_problems(400, 401, 408, 413, 415, 422, 503),
}
_OPTIONS = _op(
    "CloudEvents webhook validation handshake (WebHook-Request-Origin)",
    {"200": {"description": "allowed; WebHook-Allowed-Origin in the answer"}, **_problems(400)},
)
_WEBHOOK_OPTIONS = _op(
    "CloudEvents webhook validation handshake (WebHook-Request-Origin) for a Consumer's endpoint",
    {"200": {"description": "allowed; WebHook-Allowed-Origin in the answer"}, **_problems(400, 404)},
)
#: What a status filter or a replay's ``statuses`` may name (``failed`` = dead-lettered and dropped).
STATUS_FILTERS = (*(status.value for status in MessageStatus), "failed")
_LIST_PARAMS = [
    _NS,
    _NAME,
    {
        "name": "status",
        "in": "query",
        "schema": {"type": "string"},
        "description": "comma-separated: pending, delivered, retrying, dead-lettered, dropped, failed "
        "(= dead-lettered and dropped)",
    },
    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "opaque: nextCursor"},
]

_PATHS: dict[str, dict[str, Any]] = {
    "/events": {
        "post": _op(
            "Publish CloudEvents in every namespace defining their type",
            _INTAKE_RESPONSES,
            requestBody=_CLOUDEVENT_BODY,
        ),
        "options": _OPTIONS,
    },
    "/namespaces/{namespace}/events": {
        "post": _op(
            "Publish CloudEvents in one namespace",
            _INTAKE_RESPONSES,
            requestBody=_CLOUDEVENT_BODY,
            parameters=[_NS],
        ),
        "options": _OPTIONS | {"parameters": [_NS]},
    },
    "/webhooks/{endpoint}": {
        "parameters": [
            {
                "name": "endpoint",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "a Consumer's endpoint (may contain '/')",
            }
        ],
        "post": _op(
            "Receive a webhook for a Consumer (authenticated as the Consumer's spec.auth says)",
            {
                "200": {"description": "accepted; the body says what was emitted"},
                "202": {"description": "accepted"},
                **_problems(400, 401, 403, 404, 408, 413, 415, 422, 502, 503),
            },
            requestBody={"required": True, "content": {"*/*": {"schema": {}}}},
        ),
        "options": _WEBHOOK_OPTIONS,
    },
    "/healthz": {"get": _op("Liveness", {"200": _json_body({"type": "object"}, "alive")})},
    "/readyz": {
        "get": _op(
            "Readiness: first routing table built and the bus available",
            {"200": _json_body({"type": "object"}, "ready"), **_problems(503)},
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics",
            {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        )
    },
    "/api/v1alpha1/status": {
        "get": _op(
            "Status of every resource the caller may list (standalone mode's kubectl get)",
            {"200": _json_body({"type": "object"}, "status bodies"), **_problems(401)},
            security=_SECURED,
        )
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/attempts": {
        "get": _op(
            "The last 100 delivery attempts of a subscription (no payloads)",
            {"200": _json_body({"type": "object"}, "attempts"), **_problems(401, 404)},
            parameters=[_NS, _NAME],
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/openapi.json": {
        "get": _op("This document", {"200": _json_body({"type": "object"}, "OpenAPI 3.1")})
    },
    "/api/v1alpha1/subscriptions": {
        "get": _op(
            "Subscriptions the caller may read, with health and counters",
            {
                "200": _json_body(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {"type": "array", "items": _ref("SubscriptionSummary")},
                            "store": {"type": "object"},
                        },
                    },
                    "subscriptions",
                ),
                **_problems(401, 503),
            },
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/messages": {
        "get": _op(
            "A page of a subscription's messages, newest first",
            {"200": _json_body(_ref("MessagePage"), "messages"), **_problems(400, 401, 404, 503)},
            parameters=_LIST_PARAMS,
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/messages/{id}": {
        "get": _op(
            "One message with its attempts",
            {"200": _json_body(_ref("Message"), "the message"), **_problems(401, 404, 503)},
            parameters=[_NS, _NAME, _ID],
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/messages/{id}/resend": {
        "post": _op(
            "Deliver the stored event again (a new attempt on the same message); needs 'update'",
            {"202": _json_body(_ref("Message"), "queued again"), **_problems(401, 403, 404, 409, 413, 503)},
            parameters=[_NS, _NAME, _ID],
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/replay": {
        "post": _op(
            "Resend every message received since a time whose status matches (default: failed); "
            "needs 'update'",
            {
                "202": _json_body(
                    {"type": "object", "properties": {"replayed": {"type": "integer"}}}, "queued"
                ),
                **_problems(400, 401, 403, 404, 409, 413, 503),
            },
            parameters=[_NS, _NAME],
            security=_SECURED,
            requestBody={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["since"],
                            "properties": {
                                "since": {"type": "string", "format": "date-time"},
                                "statuses": {
                                    "type": "array",
                                    "items": {"enum": list(STATUS_FILTERS)},
                                    "maxItems": 10,
                                },
                            },
                        }
                    }
                },
            },
        ),
    },
    "/api/v1alpha1/subscriptions/{namespace}/{name}/pull": {
        "get": _op(
            "Read a pull subscription: a batch of unacknowledged events, oldest first. Passing the cursor of "
            "the previous pull acknowledges everything it returned.",
            {
                "200": {
                    "description": "a CloudEvents batch; the next cursor in the Next-Cursor header",
                    "headers": {"Next-Cursor": {"schema": {"type": "string"}, "required": True}},
                    "content": {
                        "application/cloudevents-batch+json": {
                            "schema": {"type": "array", "items": _ref("CloudEvent")}
                        }
                    },
                },
                **_problems(400, 401, 404, 409, 503),
            },
            parameters=[
                _NS,
                _NAME,
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "opaque: the Next-Cursor of this subscription's previous pull",
                },
            ],
            security=_SECURED,
        ),
    },
    "/api/v1alpha1/events/{eventId}/messages": {
        "get": _op(
            "The messages of one event id, across the subscriptions the caller may read",
            {
                "200": _json_body(
                    {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Message")}}},
                    "messages",
                ),
                **_problems(401, 503),
            },
            parameters=[{"name": "eventId", "in": "path", "required": True, "schema": {"type": "string"}}],
            security=_SECURED,
        ),
    },
}

_NULLABLE_STRING = {"type": ["string", "null"]}
_COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "Standalone: the gateway's API token (--api-token-file). In a cluster: a "
            "Kubernetes token, checked with TokenReview; 'get' on the EventSubscription reads, 'update' "
            "resends and replays.",
        }
    },
    "responses": {
        "Problem": {
            "description": "RFC 9457 problem details",
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    },
    "schemas": {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
            },
        },
        "CloudEvent": {
            "type": "object",
            "required": ["specversion", "id", "source", "type"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string"},
                "source": {"type": "string"},
                "type": {"type": "string"},
            },
        },
        "Attempt": {
            "type": "object",
            "properties": {
                "time": {"type": "string", "format": "date-time"},
                "number": {"type": "integer"},
                "destination": {"enum": ["subscriber", "deadLetter"]},
                "latencyMs": {"type": "number"},
                "responseStatus": {"type": ["integer", "null"]},
                "responseHeaders": {"type": "object", "additionalProperties": {"type": "string"}},
                "responseBodyExcerpt": {"type": "string"},
                "error": _NULLABLE_STRING,
                "outcome": {"type": "string"},
                "retryInSeconds": {"type": ["number", "null"]},
                "requestHeaders": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "credentials, signatures and Secret-sourced headers read [redacted]",
                },
            },
        },
        "Message": {
            "type": "object",
            "required": ["id", "namespace", "subscription", "eventId", "type", "status"],
            "properties": {
                "id": {"type": "string"},
                "namespace": {"type": "string"},
                "subscription": {"type": "string"},
                "eventId": {"type": "string"},
                "source": {"type": "string"},
                "type": {"type": "string"},
                "subject": _NULLABLE_STRING,
                "time": {"type": "string", "format": "date-time"},
                "received": {"type": ["string", "null"], "format": "date-time"},
                "status": {"enum": ["pending", "delivered", "retrying", "dead-lettered", "dropped"]},
                "reason": _NULLABLE_STRING,
                "attemptCount": {"type": "integer"},
                "nextAttempt": {"type": ["string", "null"], "format": "date-time"},
                "attempts": {"type": "array", "items": _ref("Attempt")},
            },
        },
        "MessagePage": {
            "type": "object",
            "required": ["items", "nextCursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("Message")},
                "nextCursor": _NULLABLE_STRING,
            },
        },
        "SubscriptionSummary": {
            "type": "object",
            "properties": {
                "namespace": {"type": "string"},
                "name": {"type": "string"},
                "ready": {"type": "boolean"},
                "healthy": {"enum": ["True", "False", "Unknown"]},
                "phase": _NULLABLE_STRING,
                "reason": _NULLABLE_STRING,
                "style": {"enum": ["push", "pull"]},
                "counters": {"type": "object"},
                "storedMessages": {"type": "integer"},
            },
        },
    },
}


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenConnector gateway",
            "version": __version__,
            "description": "CloudEvents intake, webhooks, and the message log (resend, replay, pull).",
        },
        "paths": _PATHS,
        "components": _COMPONENTS,
    }


def documented_paths() -> set[str]:
    return set(_PATHS)


def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    """The document; ``/metrics`` only when ``app`` serves it (it may be on its own port)."""
    document = copy.deepcopy(_document())
    if app is not None and not any(
        getattr(route.resource, "canonical", None) == "/metrics" for route in app.router.routes()
    ):
        del document["paths"]["/metrics"]
    return document
