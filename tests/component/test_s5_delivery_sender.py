"""HttpSender.send's way of calling aiohttp (awaited and released instead of ``async with``, the body as
a BytesPayload instead of bytes) puts the same bytes on the wire as the plain ``async with
session.request(..., data=body)`` call, and reads the same answer from the response (issue 15: the
fast path gives the general path's answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.delivery.sending import ERROR_DATA_LIMIT, HttpSender, Response, status_text

HOST = "127.0.0.1"


class _Capture(asyncio.Protocol):
    """Records the raw bytes of each request (Content-Length bodies) and answers with ``reply``."""

    def __init__(self, server: _RawServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.server.requests.append(bytes(self.buffer[:total]))
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.server.reply)


class _RawServer:
    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        self.url = ""


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[asyncio.Runner, _RawServer, HttpSender]]:
    """One loop, raw server and sender for all examples (Hypothesis runs the test body many times)."""
    with asyncio.Runner() as runner:
        server = _RawServer()

        async def start() -> tuple[asyncio.Server, HttpSender]:
            loop = asyncio.get_running_loop()
            listening = await loop.create_server(lambda: _Capture(server), HOST, 0)
            port = listening.sockets[0].getsockname()[1]
            server.url = f"http://{HOST}:{port}/deliver/0"
            sender = HttpSender(user_agent="openconnector-delivery")
            sender.start()
            return listening, sender

        listening, sender = runner.run(start())
        yield runner, server, sender

        async def stop() -> None:
            await sender.close()
            listening.close()

        runner.run(stop())


async def _general(
    sender: HttpSender, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> Response:
    """What aiohttp's plain ``async with session.request(..., data=body)`` sends and answers."""
    session = sender._ensure_session()
    async with session.request(
        method,
        url,
        headers=headers,
        data=body,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=10),
    ) as reply:
        prefix = await reply.content.read(64 * 1024) if not reply.content.at_eof() else b""
        if 200 <= reply.status <= 299:
            return Response(reply.status, None, 0.0, 0.0, None, b"", False, reply.headers)
        return Response(
            reply.status,
            status_text(reply.status, reply.reason),
            0.0,
            0.0,
            reply.headers.get("Retry-After"),
            prefix[:ERROR_DATA_LIMIT],
            False,
            reply.headers,
        )


header_names = st.sampled_from(
    ["Content-Type", "ce-id", "ce-source", "X-Tenant", "Authorization", "webhook-id", "x-lower", "ce-type"]
)
header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
replies = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy",
        b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["POST", "PUT", "PATCH"]),
    st.dictionaries(header_names, header_values, max_size=5),
    st.binary(max_size=3000),
    replies,
)
def test_the_sender_puts_the_general_paths_bytes_on_the_wire_and_reads_the_same_answer(
    world: tuple[asyncio.Runner, _RawServer, HttpSender],
    method: str,
    headers: dict[str, str],
    body: bytes,
    reply: bytes,
) -> None:
    runner, server, sender = world
    server.reply = reply
    server.requests.clear()
    general = runner.run(_general(sender, method, server.url, headers, body))
    fast = runner.run(sender.send(method, server.url, headers, body, 10.0))
    assert len(server.requests) == 2
    assert server.requests[1] == server.requests[0]  # header names, values, order and body alike
    assert (fast.status, fast.error, fast.retry_after, fast.body_prefix, fast.fatal) == (
        general.status,
        general.error,
        general.retry_after,
        general.body_prefix,
        general.fatal,
    )
    assert fast.headers is not None
    assert general.headers is not None
    assert list(fast.headers.items()) == list(general.headers.items())


def test_the_connection_is_reused_after_each_answer(
    world: tuple[asyncio.Runner, _RawServer, HttpSender],
) -> None:
    runner, server, sender = world
    server.reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"

    async def three() -> list[Response]:
        return [await sender.send("POST", server.url, {}, b"{}", 10.0) for _ in range(3)]

    before = server.connections
    answers = runner.run(three())
    assert [answer.status for answer in answers] == [503, 503, 503]
    assert [answer.body_prefix for answer in answers] == [b"busy"] * 3
    # Released back to the pool after each answer: the next request reuses it.
    assert server.connections - before <= 1
