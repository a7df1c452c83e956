"""HttpSender bounds each request on one shared timer instead of a timer per request (issue 15), and
answers what aiohttp's own total timeout answers: a subscriber that does not answer in time gives
``timeout after Xs``; one that answers and then stalls in its body keeps its status (the body read is
cut short, the verdict stands); each request ends at its own deadline whatever the order they began in;
a cancellation from elsewhere is passed on, never turned into a timeout; and the task is left as it was
found (no cancellation pending), so it can go on awaiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from openconnector.delivery.sending import HttpSender, Response
from tests.support.aiohttp_oracle import aiohttp_answer

HOST = "127.0.0.1"
HEADERS = {"Content-Type": "application/json"}


class _Scripted(asyncio.Protocol):
    """Answers each request by the path's first segment: ``/ok`` at once, ``/hang`` never,
    ``/stall-200`` and ``/stall-500`` with headers and part of the body, then nothing."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        path = self.buffer.split(b" ", 2)[1]
        self.buffer = b""
        assert self.transport is not None
        if path.startswith(b"/ok"):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elif path.startswith(b"/stall-200"):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        elif path.startswith(b"/stall-500"):
            self.transport.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\npartial")
        # /hang: nothing, ever


@pytest.fixture
async def server() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(_Scripted, HOST, 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        srv.close()


async def _send(sender: HttpSender, url: str, timeout_s: float) -> Response:
    return await sender.send("POST", url, HEADERS, b"{}", timeout_s)


def _verdict(response: Response) -> tuple[object, ...]:
    return (response.status, response.error, response.body_prefix, response.outcome, response.fatal)


@pytest.mark.parametrize("path", ["/ok", "/hang", "/stall-200", "/stall-500"])
async def test_the_shared_deadline_answers_what_aiohttps_own_timeout_answers(server: str, path: str) -> None:
    sender = HttpSender()
    try:
        answer = await _send(sender, server + path, 0.3)
    finally:
        await sender.close()
    oracle = await aiohttp_answer("POST", server + path, HEADERS, b"{}", 0.3)
    assert _verdict(answer) == _verdict(oracle)
    expected = {
        "/ok": (200, None),
        "/hang": (None, "timeout after 0.3s"),
        "/stall-200": (200, None),  # the body read ran out of time: the status stands
        "/stall-500": (500, "HTTP 500 Oops"),
    }[path]
    assert (answer.status, answer.error) == expected
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_each_request_ends_at_its_own_deadline_in_any_order(server: str) -> None:
    sender = HttpSender()
    ended: dict[float, float] = {}

    async def timed(timeout_s: float) -> Response:
        response = await _send(sender, server + "/hang", timeout_s)
        ended[timeout_s] = time.monotonic() - began
        return response

    began = time.monotonic()
    try:
        responses = await asyncio.gather(*(timed(t) for t in (0.6, 0.2, 0.4, 0.2)))
        ok = await _send(sender, server + "/ok", 5.0)  # a request after them all is not cut short
    finally:
        await sender.close()
    assert [r.error for r in responses] == [f"timeout after {t:g}s" for t in (0.6, 0.2, 0.4, 0.2)]
    assert ended[0.2] >= 0.19
    assert ended[0.4] >= 0.39
    assert ended[0.6] >= 0.59
    assert ended[0.2] < ended[0.4] < ended[0.6]  # order only: no wall-clock budget
    assert ok.status == 200


async def test_a_cancellation_from_elsewhere_is_passed_on_not_made_a_timeout(server: str) -> None:
    sender = HttpSender()
    try:
        task = asyncio.create_task(_send(sender, server + "/hang", 30.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # ... also when it comes together with the request's own deadline (both before the task runs)
        both = asyncio.create_task(_send(sender, server + "/hang", 30.0))
        await asyncio.sleep(0.1)
        both.cancel()
        (deadline,) = sender._deadlines
        deadline.expire()  # what the shared timer does to a request that is due
        assert deadline.expired
        with pytest.raises(asyncio.CancelledError):
            await both
    finally:
        await sender.close()


async def test_after_a_timeout_the_task_goes_on_awaiting_and_sending(server: str) -> None:
    sender = HttpSender()
    try:
        first = await _send(sender, server + "/hang", 0.2)
        await asyncio.sleep(0.3)  # no cancellation left pending for this task
        second = await _send(sender, server + "/ok", 5.0)
        async with asyncio.timeout(5):  # the task's own timeouts still work
            await asyncio.sleep(0.01)
    finally:
        await sender.close()
    assert first.error == "timeout after 0.2s"
    assert second.status == 200
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_finished_requests_do_not_pile_up_behind_a_long_one(server: str) -> None:
    sender = HttpSender()
    try:
        long = asyncio.create_task(_send(sender, server + "/hang", 30.0))
        await asyncio.sleep(0.05)
        for _ in range(3000):
            assert (await _send(sender, server + "/ok", 5.0)).status == 200
        assert len(sender._deadlines) <= 2 * 1024 + 1
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
    finally:
        await sender.close()
