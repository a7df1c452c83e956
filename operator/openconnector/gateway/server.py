"""The HTTP server around the gateway app: connection-level limits and problem+json for parser errors.

aiohttp bounds header sizes but waits for a request head forever, keeps a connection per client without
a cap, and answers its own parser errors (bad header bytes, oversized headers, unknown
Content-Encoding) in text/plain. This module adds, per :class:`~openconnector.gateway.limits.RequestLimits`:

- a header-read timeout: a connection must deliver a complete request head within ``header_timeout``
  (later heads on a kept-alive connection: within ``keepalive_timeout``, aiohttp's idle timer);
- a keep-alive idle timeout;
- a connection cap: connection ``max_connections + 1`` is answered 503 problem+json (Retry-After) and
  closed, instead of queueing until the pod runs out of file descriptors;
- parser errors as problem+json, logged at most once per interval (a hostile client can make many);
- rate-limited logging of event-loop errors such as ``accept()`` failing with EMFILE.

The body-read timeout is enforced where bodies are read (``gateway.intake.read_limited``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from openconnector.gateway.limits import RequestLimits
from openconnector.gateway.problems import PROBLEM_CONTENT_TYPE, body_error_detail, problem_body
from openconnector.gateway.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

_PARSER_ERRORS = RateLimitedLog(log, interval=10.0)
_LOOP_ERRORS = RateLimitedLog(log, interval=10.0)
_MAX_ECHO = 200


def _refusal_bytes() -> bytes:
    body = orjson.dumps(
        problem_body(503, "too-many-connections", "the gateway has too many open connections; retry later")
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_REFUSAL: bytes = _refusal_bytes()


class GatewayRequestHandler(RequestHandler):
    """aiohttp's protocol plus the head timeout, the connection cap and problem+json parser errors."""

    def __init__(self, manager: Server, *, limits: RequestLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        if manager is not None and len(manager.connections) >= self._limits.max_connections:
            self._refused = True
            # aiohttp's data_received ignores what a closing protocol receives: no parsing, no answers.
            self._force_close = True
            _LOOP_ERRORS.warning("connection-cap", "refused a connection: %d open", len(manager.connections))
            # A stream transport; not an isinstance check: uvloop's TCPTransport is no asyncio.Transport.
            writer = cast(asyncio.WriteTransport, transport)
            writer.write(_REFUSAL)
            # Half-close, then close shortly: the client can read the answer before seeing a reset.
            if writer.can_write_eof():
                writer.write_eof()
            self._loop.call_later(1.0, writer.close)
            return
        super().connection_made(transport)
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        # Not cancelled when the first head arrives: that would take a check on every data_received
        # (aiohttp's, wrapped), while a timer that fires once per connection and finds a request costs
        # nothing per request. connection_lost cancels it.
        self._head_timer = None
        if self._request_count == 0 and self.transport is not None:
            _PARSER_ERRORS.info("head-timeout", "closed a connection that sent no request head in time")
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._refused:
            return
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # A body that failed while aiohttp drained it after the answer (a corrupt gzip body the handler
        # already refused with 400): the client's fault, logged as a parser error, with no traceback.
        error = kwargs.get("exc_info")
        if isinstance(error, web.RequestPayloadError):
            _PARSER_ERRORS.info("parser-error", "refused a request body: %r", error)
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            _PARSER_ERRORS.error("server-error", "error handling a request: %r", exc)
            detail = "the gateway failed to handle the request; it has been logged"
        elif isinstance(exc, ContentEncodingError):
            _PARSER_ERRORS.info("parser-error", "refused a request body: %r", exc)
            detail = body_error_detail(request.headers.get("Content-Encoding"), exc)
        else:
            _PARSER_ERRORS.info("parser-error", "refused a malformed request: %r", exc)
            detail = (message or "the request could not be parsed").strip()[:_MAX_ECHO]
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        body = problem_body(status, "bad-request" if status < 500 else "internal-error", detail)
        response = web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_CONTENT_TYPE)
        response.force_close()
        return response


class GatewayServer(Server):
    """aiohttp's Server creating :class:`GatewayRequestHandler` protocols."""

    limits: RequestLimits

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, limits=self.limits, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server enforces ``limits``."""

    def __init__(self, app: web.Application, *, limits: RequestLimits, **kwargs: Any) -> None:
        # lingering_time: after an early answer (413, 408) aiohttp reads the rest of the body to let the
        # client see the answer; its 10 s default would let a slow client hold the connection that long.
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, lingering_time=1.0, **kwargs)
        self._limits = limits

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside Application._make_handler; adopt it rather than copy that code.
        server.__class__ = GatewayServer
        assert isinstance(server, GatewayServer)
        server.limits = self._limits
        return server


def install_loop_error_log(loop: asyncio.AbstractEventLoop) -> None:
    """Log event-loop errors (e.g. accept() failing with EMFILE, thousands a second) at most once per
    interval per message, with the count of those suppressed."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        exception = context.get("exception")
        # The first of each kind keeps its traceback (a bug shows); repeats within 10 s are counted.
        error = exception if isinstance(exception, BaseException) else None
        _LOOP_ERRORS.error(message, "%s", message, exc_info=error)

    loop.set_exception_handler(handler)
