"""HTTP sending: one pooled aiohttp session, one request per attempt, and what it produced.

:class:`HttpSender` never raises for a failed request: timeouts, refused connections, 3xx and error
statuses become a :class:`Response` with a redacted ``error`` text, classified by
:func:`~openconnector.delivery.policy.classify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from openconnector.delivery.policy import Outcome, classify
from openconnector.delivery.prepared import clip
from openconnector.delivery.target import redact_url
from openconnector.egress import EgressPolicy
from openconnector.egress_resolver import connector_for

__all__ = ["ERROR_DATA_LIMIT", "HttpSender", "Response", "clip", "describe"]

#: Bytes of a failed response body kept for ``ocerrordata`` (Knative's knativeerrordata does the same).
ERROR_DATA_LIMIT = 1024
#: Bytes of any response body read so the pooled connection can be reused; larger bodies close it.
_RESPONSE_READ_LIMIT = 64 * 1024
# aiohttp's own timeouts all off: the sender bounds each request itself, on one timer (see _Deadline).
_NO_TIMEOUT = aiohttp.ClientTimeout()
# Entries kept before those of finished requests are dropped all at once (a long request at the front).
_DEADLINES_COMPACT_AT = 1024
# The shared timer may fire this early (uvloop's clock has millisecond steps): close enough.
_TIMER_TOLERANCE = 0.002


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
    """Sends requests over one pooled session. A ``session`` passed in is used as is and not closed;
    otherwise one is created on first use with ``connection_limit`` connections (0 = unbounded)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = 0,
        user_agent: str = "openconnector-delivery",
        clock: Callable[[], float] = time.time,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._egress = egress
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._user_agent = user_agent
        self._clock = clock
        # Requests in flight with their deadlines, in the order they began, and the one timer (armed for
        # the earliest deadline) that cancels those past it: instead of aiohttp's timer and timeout
        # context per request (a timer handle, two context managers and a callback list each).
        self._deadlines: deque[_Deadline] = deque()
        self._deadlines_compact_at = _DEADLINES_COMPACT_AT
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = math.inf

    def start(self) -> None:
        self._ensure_session()

    async def close(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
            self._deadline_at = math.inf
        if self._owns_session and self._session is not None:
            # Forgotten as it closes: a later send makes a new one, and no send has to ask the session
            # whether it is closed (two property calls per request).
            session, self._session = self._session, None
            await session.close()

    def fatal(self, error: str) -> Response:
        return Response(status=None, error=error, started=self._clock(), latency_ms=0.0, fatal=True)

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> Response:
        session = self._session
        if session is None:  # not made yet, or closed (close() forgets the session it owns)
            session = self._ensure_session()
        started = self._clock()
        begin = time.perf_counter()
        task = asyncio.current_task()
        deadline = None if task is None else self._begin(task, timeout_s)
        try:
            try:
                # Awaited and released below instead of ``async with`` (four coroutines less per
                # request): release() is what the context manager's exit does, except that the exit also
                # waits for a body writer still running (cancelled by release; the connection returns to
                # the pool when it stops). The body goes as the BytesPayload aiohttp's payload registry
                # would make of bytes. Outside a task (nothing of ours sends from one) aiohttp's own
                # timeout bounds the request.
                reply = await session.request(
                    method,
                    url,
                    headers=headers,
                    data=aiohttp.BytesPayload(body),
                    allow_redirects=False,  # the webhook spec: 3xx is a failure, never followed
                    timeout=_NO_TIMEOUT if deadline is not None else _timeout(timeout_s),
                )
                try:
                    status = reply.status
                    prefix = b""
                    # Read (a bounded part of) the body so the pooled connection can be reused, and to
                    # keep the start of an error body for ocerrordata. A broken body does not change the
                    # verdict, nor does running out of time while reading it (as with aiohttp's timeout).
                    # An empty or fully read body (the usual 2xx) needs no coroutine.
                    content = reply.content
                    if not content.at_eof():
                        try:
                            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                                prefix = await read_prefix(content, _RESPONSE_READ_LIMIT)
                        except asyncio.CancelledError:
                            if not _timed_out(deadline):
                                raise
                    latency_ms = (time.perf_counter() - begin) * 1000.0
                    if 200 <= status <= 299:
                        # Retry-After only matters for a failed attempt: a success never looks it up.
                        return Response(status, None, started, latency_ms, None, b"", False, reply.headers)
                    return Response(
                        status,
                        status_text(status, reply.reason),
                        started,
                        latency_ms,
                        reply.headers.get("Retry-After"),
                        prefix[:ERROR_DATA_LIMIT],
                        False,
                        reply.headers,
                    )
                finally:
                    reply.release()
            except asyncio.CancelledError:
                if not _timed_out(deadline):
                    raise
                error = f"timeout after {timeout_s:g}s"
            except TimeoutError:
                error = f"timeout after {timeout_s:g}s"
            except aiohttp.ClientConnectorError as failure:
                detail = failure.os_error.strerror or type(failure.os_error).__name__
                error = f"connection to {redact_url(url)} failed: {detail}"
            except (aiohttp.ClientError, OSError) as failure:
                text = str(failure).replace(url, redact_url(url))
                error = f"{type(failure).__name__}: {text}" if text else type(failure).__name__
            latency_ms = (time.perf_counter() - begin) * 1000.0
            return Response(status=None, error=clip(error), started=started, latency_ms=latency_ms)
        finally:
            if deadline is not None:
                deadline.finished = True  # before anything else is awaited: the timer leaves it alone

    def _begin(self, task: asyncio.Task[object], timeout_s: float) -> _Deadline:
        """Bound the request ``task`` begins now by ``timeout_s`` seconds: one timer for all requests.

        Entries are kept in the order the requests began and dropped once finished (from the front here,
        all of them when the timer fires or the list has grown long), so a finished request cancels no
        timer. The timer is armed for the earliest deadline; a later one never re-arms it."""
        loop = task.get_loop()
        deadline = _Deadline(loop.time() + timeout_s, task)
        deadlines = self._deadlines
        while deadlines and deadlines[0].finished:
            deadlines.popleft()
        deadlines.append(deadline)
        if len(deadlines) > self._deadlines_compact_at:
            self._deadlines = deadlines = deque(entry for entry in deadlines if not entry.finished)
            self._deadlines_compact_at = max(_DEADLINES_COMPACT_AT, 2 * len(deadlines))
        if deadline.at < self._deadline_at:
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
            self._deadline_at = deadline.at
            self._deadline_timer = loop.call_at(deadline.at, self._expire_due, loop)
        return deadline

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The shared timer: cancel the tasks of requests past their deadline (each turns it into a
        timeout, :func:`_timed_out`); arm the timer again for the earliest of the rest."""
        self._deadline_timer = None
        self._deadline_at = math.inf
        now = loop.time() + _TIMER_TOLERANCE
        waiting: deque[_Deadline] = deque()
        earliest = math.inf
        for entry in self._deadlines:
            if entry.finished:
                continue
            if entry.at <= now:
                entry.expired = entry.finished = True
                entry.task.cancel()
            else:
                waiting.append(entry)
                earliest = min(earliest, entry.at)
        self._deadlines = waiting
        self._deadlines_compact_at = max(_DEADLINES_COMPACT_AT, 2 * len(waiting))
        if earliest != math.inf:
            self._deadline_at = earliest
            self._deadline_timer = loop.call_at(earliest, self._expire_due, loop)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            # Names resolve through the egress policy: DNS rebinding cannot reach a denied address.
            connector = connector_for(
                self._egress or EgressPolicy(), limit=self._connection_limit, limit_per_host=0
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent},
                # Subscribers must not be able to plant cookies that reach other subscribers.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._owns_session = True
        return self._session


@functools.lru_cache(maxsize=64)
def _timeout(total: float) -> aiohttp.ClientTimeout:
    """One immutable ClientTimeout per distinct value (targets share a handful of timeouts)."""
    return aiohttp.ClientTimeout(total=total)


def _timed_out(deadline: _Deadline | None) -> bool:
    """A CancelledError in a request: True when it is the request's own timeout (then the task's
    cancellation is withdrawn), False when it comes from elsewhere and must propagate."""
    if deadline is None or not deadline.expired:
        return False
    deadline.expired = False  # withdrawn once, however many awaits the error passes
    return deadline.task.uncancel() <= deadline.cancelling


async def read_prefix(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def status_text(status: int, phrase: str | None) -> str:
    text = f"HTTP {status}" + (f" {phrase}" if phrase else "")
    if 300 <= status <= 399:
        text += " (redirects are not followed)"
    return text


def describe(response: Response) -> str:
    if response.error is not None:
        return response.error
    return f"HTTP {response.status}"
