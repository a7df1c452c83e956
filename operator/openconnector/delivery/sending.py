"""HTTP sending: one pool of keep-alive connections, one request per attempt, and what it produced.

:class:`HttpSender` never raises for a failed request: timeouts, refused connections, 3xx and error
statuses become a :class:`Response` with a redacted ``error`` text, classified by
:func:`~openconnector.delivery.policy.classify`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from openconnector.delivery.deadlines import SharedDeadlines
from openconnector.delivery.http1 import ConnectionPool, ResponseError, endpoint_of, request_head
from openconnector.delivery.policy import Outcome, classify
from openconnector.delivery.prepared import clip
from openconnector.delivery.target import redact_url
from openconnector.egress import EgressPolicy
from openconnector.egress_resolver import EgressResolver

__all__ = ["ERROR_DATA_LIMIT", "HttpSender", "Response", "clip", "describe"]

#: Bytes of a failed response body kept for ``ocerrordata`` (Knative's knativeerrordata does the same).
ERROR_DATA_LIMIT = 1024
#: Bytes of any response body read so the pooled connection can be reused; larger bodies close it.
_RESPONSE_READ_LIMIT = 64 * 1024


class _Deadline:
    """The total timeout of one request: when it ends, the task sending it, and the task's cancellation
    count when it began (a cancellation from elsewhere is passed on, as ``asyncio.timeout`` does)."""

    __slots__ = ("at", "cancelling", "expired", "finished", "task")

    def __init__(self, at: float, task: asyncio.Task[object]) -> None:
        self.at = at
        self.task = task
        self.cancelling = task.cancelling()
        self.expired = False  # the timer cancelled the task for it
        self.finished = False  # the request is over: the timer leaves it alone

    def expire(self) -> None:
        """Its time is up: cancel the task (which turns that into a timeout, :func:`_timed_out`)."""
        self.expired = self.finished = True
        self.task.cancel()


@dataclass(slots=True)
class Response:
    """What one HTTP request produced. ``fatal`` marks errors retrying cannot fix (e.g. encoding).
    ``retry_after`` is the Retry-After header of a failed attempt (None for a 2xx: nothing retries it)."""

    status: int | None
    error: str | None
    started: float
    latency_ms: float
    retry_after: str | None = None
    body_prefix: bytes = b""
    fatal: bool = False
    headers: Mapping[str, str] | None = None  # the response's headers (the message log bounds them)

    @property
    def outcome(self) -> Outcome:
        return Outcome.PERMANENT if self.fatal else classify(self.status, self.error)


class HttpSender:
    """Sends requests over one pool of keep-alive connections (:mod:`~openconnector.delivery.http1`),
    created on first use with ``connection_limit`` connections (0 = unbounded); names resolve through
    ``egress``, https verifies against ``ssl_context`` (default: the system's trust store)."""

    def __init__(
        self,
        *,
        connection_limit: int = 0,
        user_agent: str = "openconnector-delivery",
        clock: Callable[[], float] = time.time,
        egress: EgressPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._egress = egress
        self._pool: ConnectionPool | None = None
        self._connection_limit = connection_limit
        self._user_agent = user_agent
        self._ssl_context = ssl_context
        self._clock = clock
        # Requests in flight with their deadlines: one timer for all requests.
        self._deadlines: SharedDeadlines[_Deadline] = SharedDeadlines(
            attrgetter("finished"), _Deadline.expire
        )

    def start(self) -> None:
        self._ensure_pool()

    async def close(self) -> None:
        self._deadlines.clear()
        if self._pool is not None:
            # Forgotten as it closes: a later send makes a new one.
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def open_connections(self) -> int:
        return 0 if self._pool is None else self._pool.open_connections

    def fatal(self, error: str) -> Response:
        return Response(status=None, error=error, started=self._clock(), latency_ms=0.0, fatal=True)

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> Response:
        pool = self._pool
        if pool is None:  # not made yet, or closed (close() forgets it)
            pool = self._ensure_pool()
        started = self._clock()
        begin = time.perf_counter()
        try:
            endpoint = endpoint_of(url)
            head = request_head(method, endpoint, headers, len(body), self._user_agent)
        except ValueError as problem:  # BadRequestHead too: nothing is sent, and retrying cannot help
            return self.fatal(clip(f"request not sent: {problem}"))
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("HttpSender.send runs in a task (its deadline cancels the task)")
        deadline = self._begin(task, timeout_s)
        connection = None
        try:
            try:
                connection = await pool.acquire(endpoint)
                try:
                    answer = await connection.exchange(head, body)
                except ResponseError as failure:
                    if not (failure.unanswered and connection.exchanges > 1):
                        raise
                    # A kept-alive connection the server closed as the request went out (its idle
                    # timeout): once more on a new connection, as HTTP clients do (RFC 9112 9.3.1; a
                    # delivery is at-least-once anyway).
                    pool.release(connection)
                    connection = None
                    connection = await pool.acquire(endpoint, fresh=True)
                    answer = await connection.exchange(head, body)
            except asyncio.CancelledError:
                if not _timed_out(deadline):
                    raise
                cut = None if connection is None else connection.answer
                if cut is None or not cut.head_done:
                    return self._failed(f"timeout after {timeout_s:g}s", started, begin)
                answer = cut
                # The head came in time and the body did not: the status stands (the rest is not read).
            except ResponseError as failure:
                return self._failed(f"{failure} ({redact_url(url)})", started, begin)
            except OSError as failure:  # resolving (egress refusals too), connecting, TLS
                detail = _os_error_text(failure)
                return self._failed(f"connection to {redact_url(url)} failed: {detail}", started, begin)
            latency_ms = (time.perf_counter() - begin) * 1000.0
            status = answer.status
            if 200 <= status <= 299:
                # Retry-After only matters for a failed attempt: a success never looks it up.
                return Response(status, None, started, latency_ms, None, b"", False, answer.header_map())
            reply_headers = answer.header_map()
            return Response(
                status,
                status_text(status, answer.reason.decode("utf-8", "replace")),
                started,
                latency_ms,
                reply_headers.get("Retry-After"),
                answer.body_prefix()[:ERROR_DATA_LIMIT],
                False,
                reply_headers,
            )
        finally:
            deadline.finished = True  # before anything else is awaited: the timer leaves it alone
            if connection is not None:
                pool.release(connection)

    def _failed(self, error: str, started: float, begin: float) -> Response:
        latency_ms = (time.perf_counter() - begin) * 1000.0
        return Response(status=None, error=clip(error), started=started, latency_ms=latency_ms)

    def _begin(self, task: asyncio.Task[object], timeout_s: float) -> _Deadline:
        """Bound the request ``task`` begins now by ``timeout_s`` seconds: one timer for all requests
        (:class:`~openconnector.delivery.deadlines.SharedDeadlines`), so a finished request cancels no
        timer."""
        loop = task.get_loop()
        deadline = _Deadline(loop.time() + timeout_s, task)
        self._deadlines.add(deadline, deadline.at, loop)
        return deadline

    def _ensure_pool(self) -> ConnectionPool:
        if self._pool is None:
            # Names resolve through the egress policy: DNS rebinding cannot reach a denied address.
            self._pool = ConnectionPool(
                resolver=EgressResolver(self._egress or EgressPolicy()),
                limit=self._connection_limit,
                ssl_context=self._ssl_context,
                body_limit=_RESPONSE_READ_LIMIT,
            )
        return self._pool


def _timed_out(deadline: _Deadline | None) -> bool:
    """A CancelledError in a request: True when it is the request's own timeout (then the task's
    cancellation is withdrawn), False when it comes from elsewhere and must propagate."""
    if deadline is None or not deadline.expired:
        return False
    deadline.expired = False  # withdrawn once, however many awaits the error passes
    return deadline.task.uncancel() <= deadline.cancelling


def _os_error_text(failure: OSError) -> str:
    """The system's words for a failed connection ("Connection refused"), whatever the loop wrote
    (asyncio's text is "Connect call failed (...)"); TLS and egress errors keep their own text (an
    SSLError's errno is OpenSSL's, not the system's)."""
    if isinstance(failure, ConnectionError) and failure.errno:
        return os.strerror(failure.errno)
    return failure.strerror or str(failure) or type(failure).__name__


def status_text(status: int, phrase: str | None) -> str:
    text = f"HTTP {status}" + (f" {phrase}" if phrase else "")
    if 300 <= status <= 399:
        text += " (redirects are not followed)"
    return text


def describe(response: Response) -> str:
    if response.error is not None:
        return response.error
    return f"HTTP {response.status}"
