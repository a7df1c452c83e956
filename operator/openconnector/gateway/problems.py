"""RFC 9457 problem details: every refusal the gateway answers is one of these."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from openconnector.refusal import Refusal

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://openconnector.nl/problems/"
# At most this many entries in `errors`; `errorCount` then says how many there were. A refusal's size
# must not grow with what a client sends.
MAX_LISTED_ERRORS = 100

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def problem_body(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] = (),
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors[:MAX_LISTED_ERRORS])
        if len(errors) > MAX_LISTED_ERRORS:
            body["errorCount"] = len(errors)
    body.update(extra)
    return body


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> web.Response:
    """A problem+json response. ``slug`` names the problem type, e.g. ``invalid-cloudevent``."""
    body = problem_body(status, slug, detail, errors=errors, instance=instance, **extra)
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def refusal_problem(refusal: Refusal) -> web.Response:
    """The problem+json answer for a :class:`~openconnector.refusal.Refusal`."""
    return problem(
        refusal.status,
        refusal.slug,
        refusal.detail,
        errors=refusal.errors,
        headers=refusal.headers,
        **refusal.members,
    )


_NAMED_CODING = re.compile(r"content-encoding: (?:\w+ \((\w+)\)|(\w+))", re.IGNORECASE)


def body_error_detail(content_encoding: str | None, error: BaseException) -> str:
    """Why a request body could not be read, in terms of the request: aiohttp's texts carry its status
    prefix, and name Python packages to install. ``content_encoding`` is the request's header, when the
    request is at hand (a parser error comes without it; the coding is then read from the error)."""
    text = " ".join(str(error).split()).removeprefix("400, message: ")
    named = _NAMED_CODING.search(text)
    if named is None and text != "deflate":  # aiohttp's text for a deflate body that ends early
        return f"the body could not be read: {text[:200]}"
    coding = " ".join((content_encoding or "").split())[:40] or (
        (named.group(1) or named.group(2)) if named else text
    )
    if "install" in text:  # aiohttp lacks the decoder (br, zstd)
        return f"Content-Encoding {coding} is not supported; send the body as is, gzip or deflate"
    return f"the body is not valid {coding} (Content-Encoding)"
