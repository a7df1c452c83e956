"""What both intake routes (``/events`` and ``/webhooks/<endpoint>``) share: the bounded body read and
the CloudEvents abuse-protection handshake."""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict

from openconnector.gateway.core import GATEWAY_KEY
from openconnector.gateway.problems import body_error_detail, problem
from openconnector.refusal import Refusal

#: The headers of an intake route's JSON answer: what ``web.Response(content_type="application/json")``
#: sets, built once (a Response copies them) instead of parsing the content type per answer.
JSON_ANSWER_HEADERS: Final = CIMultiDict({"Content-Type": "application/json"})

# The request rate granted in the handshake when the sender asks for one (requests per minute).
MAX_ALLOWED_RATE = "120"


# Set on a request whose "Expect: 100-continue" read_limited answers (continue_at_body_read deferred it).
_CONTINUE_DEFERRED = web.RequestKey("openconnector.continue-deferred", bool)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def continue_at_body_read(request: web.Request) -> web.StreamResponse | None:
    """The Expect handler of every route that reads a body with :func:`read_limited`.

    aiohttp's default answers ``100 Continue`` before the handler runs, inviting the body of a request
    that is then refused on its head alone (unknown endpoint, client address, a Content-Length over the
    limit). Here the ``100 Continue`` is deferred to :func:`read_limited`, sent just before the body is
    read; a request refused before that gets its answer instead. Any other expectation: 417 problem+json
    (aiohttp's own answer is text/plain). HTTP/1.0 requests have no interim responses: ignored, as aiohttp
    does."""
    if request.version != HttpVersion11:
        return None
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        request[_CONTINUE_DEFERRED] = True
        return None
    return _expectation_failed(expect)


async def continue_at_once(request: web.Request) -> web.StreamResponse | None:
    """The Expect handler of the routes that read no body with :func:`read_limited` (the default of
    :class:`~openconnector.gateway.routes.ProblemRoutes`): ``100 Continue`` at once, as aiohttp's own
    handler answers, and any other expectation 417 problem+json instead of aiohttp's text/plain."""
    if request.version != HttpVersion11:
        return None
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # an interim response: the real one has not started
        return None
    return _expectation_failed(expect)


def _expectation_failed(expect: str) -> web.Response:
    return problem(417, "expectation-failed", f"unsupported Expect: {expect[:64]!r}; only 100-continue is")


class ClientGone(Exception):
    """The client closed the connection before its body arrived; there is nobody to answer."""


def _too_large(limit: int) -> Refusal:
    return Refusal(413, "body-too-large", f"the body exceeds {limit} bytes", label="too-large")


def body_now(request: web.Request, limit: int) -> bytes | None:
    """:func:`read_limited` without awaiting when the whole body came with the head (most small
    requests): the body, or a 413 :class:`Refusal`; None when more is to come (then await
    :func:`read_limited`)."""
    content = request.content
    body: bytes | None = None
    if content.is_eof():
        # Taken as it is: no timer, no chunks.
        try:
            body = content.read_nowait()
        except Exception:
            if content.exception() is None:
                raise
            # The stream failed: read_limited answers for that (after the declared length's check).
        else:
            if body:  # complete, so its length is the declared one: the header need not be parsed
                if len(body) > limit:
                    raise _too_large(limit)
                return body
    declared = request.content_length  # a property that parses the header: read once
    if declared is not None and declared > limit:
        raise _too_large(limit)
    return body


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes; a 413 :class:`Refusal` as soon as a larger one shows (Content-Length
    or, for a chunked body, while reading), so an oversized body is never buffered whole.

    The whole body must arrive within the gateway's body timeout (408 problem+json otherwise); a client
    that disconnects mid-body raises ClientGone, which the middleware drops without a traceback.
    """
    body = body_now(request, limit)
    if body is not None:
        return body
    if request.get(_CONTINUE_DEFERRED):
        # The head passed every check before the body: now invite it.
        del request[_CONTINUE_DEFERRED]
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # an interim response: the real one has not started
    timeout = request.app[GATEWAY_KEY].settings.limits.body_timeout
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body did not arrive within {timeout:g} s", headers={"Connection": "close"}
        ) from None
    except (
        ConnectionError,
        aiohttp.ClientPayloadError,
        aiohttp.http_exceptions.HttpProcessingError,
        web.RequestPayloadError,  # e.g. a corrupt gzip body
    ) as error:
        if request.transport is None or request.transport.is_closing():
            raise ClientGone(str(error)) from None
        detail = body_error_detail(request.headers.get("Content-Encoding"), error)
        raise web.HTTPBadRequest(text=detail, headers={"Connection": "close"}) from None
    return b"".join(chunks)


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
