"""``body_now`` (the body that came with the head, taken without awaiting) reads Content-Length only when it
must (session 10, issue 15): a complete body's own length decides, and a failed or unfinished stream
still gets the declared length's 413 first."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from tests.unit.test_s5_request_ports import _Protocol

from openconnector.gateway.intake import body_now
from openconnector.refusal import Refusal


def _request(body: bytes, *, declared: int | None, eof: bool = True, failed: bool = False) -> web.Request:
    headers = CIMultiDict[str]() if declared is None else CIMultiDict({"Content-Length": str(declared)})
    payload = StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    payload.feed_data(body)
    if eof:
        payload.feed_eof()
    if failed:
        payload.set_exception(ConnectionResetError("the client went away"))
    return make_mocked_request("POST", "/events", headers=headers, payload=payload)


async def test_a_complete_body_is_taken_whatever_the_header_says_within_the_limit() -> None:
    assert body_now(_request(b"abc", declared=3), 3) == b"abc"
    assert body_now(_request(b"abc", declared=None), 3) == b"abc"


async def test_a_complete_body_over_the_limit_is_refused_without_a_content_length() -> None:
    with pytest.raises(Refusal) as refused:
        body_now(_request(b"abcd", declared=None), 3)
    assert (refused.value.status, refused.value.slug) == (413, "body-too-large")


async def test_an_unfinished_or_failed_stream_is_left_to_read_limited_after_the_declared_check() -> None:
    for eof, failed in ((False, False), (True, True), (False, True)):
        request = _request(b"ab", declared=2, eof=eof, failed=failed)
        assert body_now(request, 3) is None
        assert request.content.exception() is not None or not request.content.is_eof()
        with pytest.raises(Refusal) as refused:
            body_now(_request(b"ab", declared=4, eof=eof, failed=failed), 3)
        assert refused.value.status == 413


async def test_an_empty_stream_with_an_oversized_declared_length_is_refused() -> None:
    with pytest.raises(Refusal):
        body_now(_request(b"", declared=4), 3)
    assert body_now(_request(b"", declared=0), 3) == b""
