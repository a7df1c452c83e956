"""The OpenAPI document describes the whole gateway API: valid OpenAPI 3.1, and every route the gateway
registers is in it and every documented path is routed (the /ui pages are HTML, not API)."""

from __future__ import annotations

import re

from aiohttp import web
from openapi_spec_validator import validate

from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway
from openconnector.messages.openapi import openapi_document

_IGNORED_METHODS = {"HEAD"}  # aiohttp adds HEAD to every GET


def _routes(app: web.Application) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/ui") or route.method in _IGNORED_METHODS:
            continue
        if route.method == "*":  # the route added last answers what no route serves (404/405): no API
            continue
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", canonical)  # {endpoint:.+} -> {endpoint}
        found.add((route.method.lower(), path))
    return found


def _documented(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    methods = {"get", "post", "put", "patch", "delete", "options"}
    return {(method, path) for path, item in paths.items() for method in item if method in methods}


async def test_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_is_documented_and_every_documented_path_routed() -> None:
    app = build_app(Gateway())
    assert _routes(app) == _documented(openapi_document(app))


async def test_without_metrics_on_the_gateway_port_the_document_leaves_it_out() -> None:
    app = build_app(Gateway(), with_metrics=False)
    document = openapi_document(app)
    assert "/metrics" not in document["paths"]
    assert _routes(app) == _documented(document)
