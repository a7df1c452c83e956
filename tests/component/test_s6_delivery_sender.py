"""HttpSender's connection pool is made on first use and forgotten by ``close()``, which closes its
connections: a send after ``close()`` gets a new pool and is delivered (issue 15)."""

from __future__ import annotations

from openconnector.delivery.sending import HttpSender
from tests.support.sinks import Sink

HEADERS = {"Content-Type": "application/json"}


async def test_a_send_after_close_gets_a_new_pool_and_is_delivered() -> None:
    async with Sink() as sink:
        sender = HttpSender()
        first = await sender.send("POST", sink.url, HEADERS, b"{}", 5.0)
        assert sender.open_connections == 1  # kept alive for the next request
        await sender.close()
        assert sender.open_connections == 0
        again = await sender.send("POST", sink.url, HEADERS, b"[]", 5.0)
        assert sender.open_connections == 1
        await sender.close()
        await sender.close()  # twice: nothing left to close
        await sink.wait_for(2)
    assert (first.status, again.status) == (200, 200)
    assert [request.body for request in sink.requests] == [b"{}", b"[]"]
