"""A loopback HTTP sink that counts CloudEvent ids, and can stop listening for a while.

It runs in the test's own event loop (a real aiohttp server on 127.0.0.1). Every request's CloudEvent
id (``ce-id`` header in binary mode, ``id`` of the JSON body in structured mode) is recorded with its
arrival time, separately for the delivery path and the dead-letter path.

``refuse()`` closes the listening socket and every open connection, so the gateway's next attempt
meets a refused connection; ``listen()`` binds the same port again. ``first_reply`` lets a test script
the first answer per event id (e.g. 503 + Retry-After, then 200 on redelivery).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import orjson
from aiohttp import web

HOST = "127.0.0.1"
DELIVER_PATH = "/deliver"
DEAD_LETTER_PATH = "/dead-letter"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def event_id(request_headers: dict[str, str], body: bytes) -> str:
    if "ce-id" in request_headers:
        return request_headers["ce-id"]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "?"
    return str(document.get("id", "?")) if isinstance(document, dict) else "?"


class CountingSink:
    def __init__(self, first_reply: Callable[[str], Answer] | None = None) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.dead_letters: list[str] = []
        self.refused_periods: list[tuple[float, float]] = []
        self._first_reply = first_reply
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._succeeded: Counter[str] = Counter()

    # ------------------------------------------------------------------------------ lifecycle

    async def listen(self) -> Self:
        app = web.Application()
        app.router.add_post(DELIVER_PATH, self._deliver)
        app.router.add_post(DEAD_LETTER_PATH, self._dead_letter)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self._port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def refuse(self) -> None:
        """Close the port (listening socket and open connections): connections are refused until
        :meth:`listen`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def refuse_for(self, seconds: float) -> None:
        began = time.monotonic()
        await self.refuse()
        await asyncio.sleep(seconds)
        await self.listen()
        self.refused_periods.append((began, time.monotonic()))

    async def close(self) -> None:
        await self.refuse()

    # -------------------------------------------------------------------------------- queries

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}{DELIVER_PATH}"

    @property
    def dead_letter_url(self) -> str:
        return f"http://{HOST}:{self._port}{DEAD_LETTER_PATH}"

    @property
    def requests(self) -> int:
        return sum(len(times) for times in self.arrivals.values())

    def delivered(self) -> set[str]:
        """Ids answered with 2xx at least once."""
        return set(self._succeeded)

    def duplicates(self) -> int:
        """Successful deliveries beyond the first, per id (at-least-once shows here)."""
        return sum(count - 1 for count in self._succeeded.values() if count > 1)

    async def wait_delivered(self, ids: set[str], within: float, stalled: float | None = None) -> set[str]:
        """Wait until every id in ``ids`` was delivered, ``within`` seconds pass, or (if given) nothing
        new arrived for ``stalled`` seconds; returns the ids still missing."""
        deadline = time.monotonic() + within
        last_count, last_change = -1, time.monotonic()
        while True:
            missing = ids - self._succeeded.keys()
            now = time.monotonic()
            if not missing or now > deadline:
                return missing
            count = self.requests
            if count != last_count:
                last_count, last_change = count, now
            elif stalled is not None and now - last_change > stalled:
                return missing
            await asyncio.sleep(0.1)

    # -------------------------------------------------------------------------------- serving

    async def _deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        ce_id = event_id({k.lower(): v for k, v in request.headers.items()}, body)
        times = self.arrivals.setdefault(ce_id, [])
        times.append(time.monotonic())
        answer = Answer()
        if self._first_reply is not None and len(times) == 1:
            answer = self._first_reply(ce_id)
        if 200 <= answer.status < 300:
            self._succeeded[ce_id] += 1
        return web.Response(status=answer.status, headers=answer.headers)

    async def _dead_letter(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.dead_letters.append(event_id({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=200)
