"""HTTP sending: one pooled aiohttp session, one request per attempt, and what it produced.

:class:`HttpSender` never raises for a failed request: timeouts, refused connections, 3xx and error
statuses become a :class:`Response` with a redacted ``error`` text, classified by
:func:`~openconnector.delivery.policy.classify`.
"""

from __future__ import annotations

import contextlib
import functools
import time
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

    def start(self) -> None:
        self._ensure_session()

    async def close(self) -> None:
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
        try:
            # Awaited and released below instead of ``async with`` (four coroutines less per request):
            # release() is what the context manager's exit does, except that the exit also waits for a
            # body writer still running (cancelled by release; the connection returns to the pool when it
            # stops). The body goes as the BytesPayload aiohttp's payload registry would make of bytes.
            reply = await session.request(
                method,
                url,
                headers=headers,
                data=aiohttp.BytesPayload(body),
                allow_redirects=False,  # the webhook spec: 3xx is a failure, never followed
                timeout=_timeout(timeout_s),
            )
            try:
                status = reply.status
                prefix = b""
                # Read (a bounded part of) the body so the pooled connection can be reused, and to keep
                # the start of an error body for ocerrordata. A broken body does not change the verdict.
                # An empty or fully read body (the usual 2xx) needs no coroutine.
                content = reply.content
                if not content.at_eof():
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        prefix = await read_prefix(content, _RESPONSE_READ_LIMIT)
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
