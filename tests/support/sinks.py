"""Loopback HTTP sinks for component tests: real aiohttp servers on 127.0.0.1 that misbehave on cue.

    async with Sink(Reply(500), Reply(200)) as sink:      # 500 first, then 200, then the default
        ... deliver to sink.url ...
        requests = await sink.wait_for(2)                  # every request: method, headers, body, time

* ``Reply(status, headers, body)`` answers; ``Reply(hang=True)`` never answers (until the sink
  closes), for timeout tests; ``Reply(gate=event)`` answers once the test sets ``event``, for slow
  subscribers; ``Reply(delay=s)`` answers after ``s`` seconds of (loop) time.
* ``clock`` stamps ``arrived_at``; pass the clock of the code under test (a fake one, or the loop's
  time under looptime) to assert on ordering in that clock.
* ``RefusingEndpoint`` is a port that refuses connections (bound, never listening), so "the endpoint
  is down" needs no timing or luck; ``Sink.url_for(path)`` gives other paths on the same sink.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.support.polling import WITHIN

__all__ = ["RecordedRequest", "RefusingEndpoint", "Reply", "Sink", "replies"]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False
    gate: asyncio.Event | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes
    arrived_at: float
    reply: Reply


class Sink:
    """An HTTP server on 127.0.0.1 (free port) answering from a script and recording every request."""

    def __init__(
        self,
        *script: Reply,
        default: Reply | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._script: list[Reply] = list(script)
        self.default = default or Reply()
        self._clock = clock
        self.requests: list[RecordedRequest] = []
        self._arrived = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ---------------------------------------------------------------------------- lifecycle

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._closing.set()  # releases hanging handlers so the server can stop
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------------------ queries

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sink is not started")
        return self._port

    @property
    def url(self) -> str:
        return self.url_for("/events")

    def url_for(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        """Append replies; they are used in order before falling back to ``default``."""
        self._script.extend(replies)

    async def wait_for(self, count: int, within: float = WITHIN) -> list[RecordedRequest]:
        """Wait (loop time) until at least ``count`` requests arrived; returns all of them. ``within`` is
        a ceiling, the same as :func:`tests.support.polling.eventually`'s."""
        async with asyncio.timeout(within):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    # ------------------------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        reply = self._script.pop(0) if self._script else self.default
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            arrived_at=self._clock(),
            reply=reply,
        )
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        if reply.hang:
            await self._closing.wait()
        if reply.gate is not None:
            await _first(reply.gate.wait(), self._closing.wait())
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=dict(reply.headers), body=reply.body)


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class RefusingEndpoint:
    """A loopback port that refuses every connection: bound (so nobody else gets it), never listening."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/events"

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def replies(*statuses: int) -> Iterable[Reply]:
    """Shorthand: ``Sink(*replies(500, 500, 200))``."""
    return [Reply(status) for status in statuses]
