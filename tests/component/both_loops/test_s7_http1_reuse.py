"""The delivery client's keep-alive edge cases (delivery/http1.py, issue 15): a kept-alive connection the
server closes as the next request goes out is tried once more on a new connection (RFC 9112 9.3.1), a
fresh connection that closes unanswered is a failed attempt (no second request), and a server that sends
more than the answer loses the connection (the extra bytes are never read as the next answer)."""

from __future__ import annotations

import asyncio

import orjson

from openconnector.delivery.sending import HttpSender
from tests.support.http1_peer import CLOSE, Peer, ReceivedRequest, Reply, closing

HEADERS = {"Content-Type": "application/json"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _numbered(requests: list[ReceivedRequest]) -> list[tuple[int, int]]:
    """Each request as (its connection, its number on that connection), in the order received."""
    connections = [request.connection for request in requests]
    return [(number, connections[: at + 1].count(number)) for at, number in enumerate(connections)]


async def test_a_kept_alive_connection_closed_as_the_request_goes_out_is_tried_once_more() -> None:
    # The first connection answers once, then closes as its second request arrives (its idle timeout).
    def answer(request: ReceivedRequest) -> Reply:
        return Reply(then=CLOSE) if _numbered(peer.requests)[-1] == (1, 2) else Reply(OK)

    async with Peer(answer) as peer, closing(HttpSender()) as sender:
        first = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
        second = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
    assert (first.status, second.status, second.error) == (200, 200, None)
    # The second request went once more, on a new connection.
    assert _numbered(peer.requests) == [(1, 1), (1, 2), (2, 1)]


async def test_a_new_connection_closed_unanswered_is_a_failed_attempt_not_sent_twice() -> None:
    async with Peer(lambda request: Reply(then=CLOSE)) as peer, closing(HttpSender()) as sender:
        answer = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith("the server closed the connection without answering")
    assert _numbered(peer.requests) == [(1, 1)]


async def test_a_server_that_sends_more_than_the_answer_loses_the_connection() -> None:
    stray = b"HTTP/1.1 500 Stray\r\nContent-Length: 0\r\n\r\n"
    async with (
        Peer(lambda request: Reply(OK + stray if request.connection == 1 else OK)) as peer,
        closing(HttpSender()) as sender,
    ):
        first = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
        for _ in range(100):  # let the stray bytes arrive (they come with the answer, in one write)
            if sender.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        second = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
    assert (first.status, first.error) == (200, None)
    assert (second.status, second.error) == (200, None)  # not the stray 500
    assert len(peer.connections) == 2


async def test_trailers_of_a_chunked_answer_are_not_kept() -> None:
    # A subscriber can send trailers without end; they are not response headers and are not kept.
    trailers = b"".join(b"X-Trailer-%d: %s\r\n" % (n, b"t" * 100) for n in range(2000))
    head = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nX-Head: h\r\n\r\n"
    chunked = head + b"4\r\nbusy\r\n0\r\n" + trailers
    async with Peer(lambda request: Reply(chunked + b"\r\n")) as peer, closing(HttpSender()) as sender:
        answer = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
        again = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
    assert (answer.status, answer.body_prefix) == (500, b"busy")
    assert answer.headers is not None
    assert dict(answer.headers) == {"Transfer-Encoding": "chunked", "X-Head": "h"}
    assert again.status == 500
    assert len(peer.connections) == 1  # the trailers ended the answer; the connection was kept


async def test_a_response_header_that_is_not_utf8_reads_as_text_the_message_log_can_store() -> None:
    reply = b"HTTP/1.1 500 Oops\r\nX-Bytes: a\xff\xfeb\r\nContent-Length: 0\r\n\r\n"
    async with Peer(lambda request: Reply(reply)) as peer, closing(HttpSender()) as sender:
        answer = await sender.send("POST", peer.url("/deliver"), HEADERS, b"{}", 5.0)
    assert answer.headers is not None
    assert answer.headers["X-Bytes"] == "a\ufffd\ufffdb"
    orjson.dumps(list(answer.headers.values()))  # no lone surrogates
