"""HttpSender's own HTTP/1.1 client (delivery/http1.py, issue 15) sends what aiohttp's client sends for
the same call (the same request line, header values and body; aiohttp's own ``Accept``,
``Accept-Encoding`` and default ``Content-Type`` aside) and reads the same answer as aiohttp's client
from the same response bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openconnector.delivery.sending import HttpSender, Response
from tests.support.aiohttp_oracle import USER_AGENT, aiohttp_answer

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
            sender = HttpSender(user_agent=USER_AGENT)
            sender.start()
            return listening, sender

        listening, sender = runner.run(start())
        yield runner, server, sender

        async def stop() -> None:
            await sender.close()
            listening.close()

        runner.run(stop())


# What aiohttp adds of its own accord: not part of what the sender was asked to send.
_AIOHTTP_OWN = {b"accept", b"accept-encoding"}


def _request_parts(raw: bytes, given: Mapping[str, str]) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """A captured request as (request line, sorted (lower-case name, value) pairs, body), without the
    headers aiohttp adds on its own (and its default Content-Type when none was given)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *lines = head.split(b"\r\n")
    given_lower = {name.lower() for name in given}
    pairs = []
    for header in lines:
        name, _, value = header.partition(b":")
        lower = name.strip().lower()
        if lower in _AIOHTTP_OWN or (lower == b"content-type" and "content-type" not in given_lower):
            continue
        pairs.append((lower, value.strip()))
    return line, sorted(pairs), body


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
def test_the_sender_sends_what_aiohttp_sends_and_reads_the_same_answer(
    world: tuple[asyncio.Runner, _RawServer, HttpSender],
    method: str,
    headers: dict[str, str],
    body: bytes,
    reply: bytes,
) -> None:
    runner, server, sender = world
    server.reply = reply
    server.requests.clear()
    general = runner.run(aiohttp_answer(method, server.url, headers, body, 10.0))
    fast = runner.run(sender.send(method, server.url, headers, body, 10.0))
    assert len(server.requests) == 2
    assert _request_parts(server.requests[1], headers) == _request_parts(server.requests[0], headers)
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
