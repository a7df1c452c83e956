"""HttpSender no longer asks its session per request whether it is closed (issue 15): ``close()`` forgets
the session it owns, so a send after ``close()`` still gets a fresh session and is delivered, as before;
a session passed in is used as is, never replaced and never closed by the sender."""

from __future__ import annotations

import aiohttp

from openconnector.delivery.sending import HttpSender
from tests.support.sinks import Sink

HEADERS = {"Content-Type": "application/json"}


async def test_a_send_after_close_gets_a_new_session_and_is_delivered() -> None:
    async with Sink() as sink:
        sender = HttpSender()
        first = await sender.send("POST", sink.url, HEADERS, b"{}", 5.0)
        owned = sender._session
        assert owned is not None
        await sender.close()
        assert owned.closed
        again = await sender.send("POST", sink.url, HEADERS, b"[]", 5.0)
        assert sender._session is not None
        assert sender._session is not owned
        await sender.close()
        await sender.close()  # twice: nothing left to close
        await sink.wait_for(2)
    assert (first.status, again.status) == (200, 200)
    assert [request.body for request in sink.requests] == [b"{}", b"[]"]


async def test_a_session_passed_in_is_used_as_is_and_left_open() -> None:
    async with Sink() as sink, aiohttp.ClientSession() as session:
        sender = HttpSender(session=session)
        response = await sender.send("POST", sink.url, HEADERS, b"{}", 5.0)
        await sender.close()
        assert not session.closed
        assert sender._session is session
        await sink.wait_for(1)
    assert response.status == 200
