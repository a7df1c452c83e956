"""The delivery client's keep-alive edge cases (delivery/http1.py, issue 15): a kept-alive connection the
server closes as the next request goes out is tried once more on a new connection (RFC 9112 9.3.1), a
fresh connection that closes unanswered is a failed attempt (no second request), and a server that sends
more than the answer loses the connection (the extra bytes are never read as the next answer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest

from openconnector.delivery.sending import HttpSender

HOST = "127.0.0.1"
HEADERS = {"Content-Type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class _Server:
    """Answers the n-th request on each connection with ``script(connection_number, n)``: bytes to
    write, or None to close the connection without answering."""

    script: Callable[[int, int], bytes | None]
    url: str = ""
    connections: int = 0
    requests: list[tuple[int, int]] = field(default_factory=list)


class _Scripted(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        server.connections += 1
        self.number = server.connections
        self.served = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.served += 1
            self.server.requests.append((self.number, self.served))
            reply = self.server.script(self.number, self.served)
            assert self.transport is not None
            if reply is None:
                self.transport.close()
                return
            self.transport.write(reply)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[int, int], bytes | None]], asyncio.Future[_Server]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Callable[[int, int], bytes | None]) -> _Server:
        state = _Server(script)
        listening = await asyncio.get_running_loop().create_server(lambda: _Scripted(state), HOST, 0)
        servers.append(listening)
        state.url = f"http://{HOST}:{listening.sockets[0].getsockname()[1]}/deliver"
        return state

    def launch(script: Callable[[int, int], bytes | None]) -> asyncio.Future[_Server]:
        return asyncio.ensure_future(start(script))

    yield launch
    for listening in servers:
        listening.close()


async def test_a_kept_alive_connection_closed_as_the_request_goes_out_is_tried_once_more(
    serve: Callable[[Callable[[int, int], bytes | None]], asyncio.Future[_Server]],
) -> None:
    # The first connection answers once, then closes as its second request arrives (its idle timeout).
    server = await serve(lambda connection, n: None if (connection, n) == (1, 2) else OK)
    sender = HttpSender()
    try:
        first = await sender.send("POST", server.url, HEADERS, b"{}", 5.0)
        second = await sender.send("POST", server.url, HEADERS, b"{}", 5.0)
    finally:
        await sender.close()
    assert (first.status, second.status, second.error) == (200, 200, None)
    assert server.requests == [(1, 1), (1, 2), (2, 1)]  # the second request went once more, on a new one


async def test_a_new_connection_closed_unanswered_is_a_failed_attempt_not_sent_twice(
    serve: Callable[[Callable[[int, int], bytes | None]], asyncio.Future[_Server]],
) -> None:
    server = await serve(lambda connection, n: None)
    sender = HttpSender()
    try:
        answer = await sender.send("POST", server.url, HEADERS, b"{}", 5.0)
    finally:
        await sender.close()
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith("the server closed the connection without answering")
    assert server.requests == [(1, 1)]


async def test_a_server_that_sends_more_than_the_answer_loses_the_connection(
    serve: Callable[[Callable[[int, int], bytes | None]], asyncio.Future[_Server]],
) -> None:
    stray = b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"
    server = await serve(lambda connection, n: OK + stray if connection == 1 else OK)
    sender = HttpSender()
    try:
        first = await sender.send("POST", server.url, HEADERS, b"{}", 5.0)
        for _ in range(100):  # let the stray bytes arrive (they come with the answer, in one write)
            if sender.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        second = await sender.send("POST", server.url, HEADERS, b"{}", 5.0)
    finally:
        await sender.close()
    assert (first.status, first.error) == (200, None)
    assert (second.status, second.error) == (200, None)  # not the stray 500
    assert server.connections == 2
