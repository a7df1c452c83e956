"""The HTTP server's connection limits over loopback, beyond tests/component/test_hardening_gateway.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from openconnector.gateway.limits import RequestLimits
from tests.component.conftest import StartGateway

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), 5)
    return head


async def test_a_connection_that_sent_a_head_in_time_outlives_the_head_timeout(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    """The head timer is not cancelled per request: when it fires on a connection that has sent a request,
    the connection stays (its idle time is the keep-alive timeout's business)."""
    (tmp_path / "m").mkdir()
    limits = RequestLimits(header_timeout=0.3, keepalive_timeout=10.0)
    gw = await start_gateway(tmp_path / "m", limits=limits)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(HEALTHZ)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.8)  # the head timer has fired by now
        writer.write(HEALTHZ)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_a_connection_without_a_head_is_still_closed_at_the_head_timeout(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    (tmp_path / "m").mkdir()
    gw = await start_gateway(tmp_path / "m", limits=RequestLimits(header_timeout=0.3, keepalive_timeout=10.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finished
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF: the gateway closed it
    finally:
        writer.close()
