"""aiohttp's own client as the oracle for the delivery sender (delivery/http1.py replaced it on the hot
path, issue 15): what a plain ``async with session.request(...)`` answers, turned into the sender's
:class:`Response` the way the aiohttp-based sender did (status, error text, Retry-After, the start of an
error body; a body that runs out of time or breaks leaves the status as it is)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import aiohttp

from openconnector.delivery.sending import ERROR_DATA_LIMIT, Response, status_text

USER_AGENT = "openconnector-delivery"


async def aiohttp_answer(
    method: str, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
) -> Response:
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        try:
            async with asyncio.timeout(timeout_s):
                reply = await session.request(method, url, headers=headers, data=body, allow_redirects=False)
        except TimeoutError:
            return Response(None, f"timeout after {timeout_s:g}s", 0.0, 0.0)
        try:
            prefix = b""
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with asyncio.timeout(timeout_s):
                    prefix = await reply.content.read(64 * 1024)
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
        finally:
            reply.release()
