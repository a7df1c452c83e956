"""The JetStream connection's reader (delivery/nats_reader.py, session 8, issue 15) against its oracle,
nats-py's own Parser: random sequences of protocol frames (MSG, HMSG with and without reply, header
blocks with status lines, PING, PONG, +OK, -ERR, INFO, malformed lines), split into random chunks, fed
to both; the calls reaching the client (in order), the exceptions and the parser's state afterwards are
equal. Then the same with the real connection class and subscriptions (direct, queued with a slow
consumer, max_msgs): the same messages reach the handlers and queues, with the same counters and errors.
Run on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.protocol import parser as nats_parser
from nats.protocol.parser import Parser

from openconnector.delivery.jetstream import _CoalescingClient
from openconnector.delivery.nats_reader import FrameParser

_T = TypeVar("_T")
LOOPS: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop, uvloop.new_event_loop]
_LOOP_IDS = ["asyncio", "uvloop"]


def _run(loop_factory: Callable[[], asyncio.AbstractEventLoop], coroutine: Coroutine[Any, Any, _T]) -> _T:
    loop = loop_factory()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


# ------------------------------------------------------------------------------------------- frames

_token = st.text("abcXYZ019._-*>$", min_size=1, max_size=12).map(str.encode)
_sid = st.sampled_from([b"1", b"2", b"3", b"7", b"42", b"007", b"1_0", b"x"])
_separator = st.sampled_from([b" "] * 12 + [b"  ", b"\t", b" \t", b"\r\n"])
_payload = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"\r\n", b"12\r\n", b"MSG a 1 2\r\nhi\r\n", b"PING\r\n", b" 5\r\n", b"{}"]),
)
_header_block = st.one_of(
    st.builds(
        lambda lines: b"NATS/1.0\r\n" + b"".join(lines) + b"\r\n",
        st.lists(
            st.sampled_from(
                [b'Oc-Meta: {"id":"x"}\r\n', b"A: 1\r\n", b"B:  two \r\n", b"Nats-Msg-Id: m\r\n", b"bad\r\n"]
            ),
            max_size=3,
        ),
    ),
    st.sampled_from(
        [
            b"NATS/1.0 503\r\n\r\n",
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\n\r\n",
            b"NATS/1.0 404 No Messages\r\n\r\n",
            b"NATS/1.0\r\n\r\n",
            b"12\r\n",
            b" NATS/1.0\r\n\r\n",
        ]
    ),
    st.binary(max_size=12),
)
_size_error = st.sampled_from([0] * 10 + [-1, 1, 3])


@st.composite
def _msg(draw: st.DrawFn) -> bytes:
    sep = draw(_separator)
    payload = draw(_payload)
    reply = draw(st.one_of(st.none(), _token))
    parts = [b"MSG", draw(_token), draw(_sid)] + ([reply] if reply else [])
    size = max(0, len(payload) + draw(_size_error))
    return sep.join(parts) + b" " + str(size).encode() + b"\r\n" + payload + b"\r\n"


@st.composite
def _hmsg(draw: st.DrawFn) -> bytes:
    sep = draw(_separator)
    block = draw(_header_block)
    payload = draw(_payload)
    reply = draw(st.one_of(st.none(), _token))
    parts = [b"HMSG", draw(_token), draw(_sid)] + ([reply] if reply else [])
    header_size = max(0, len(block) + draw(_size_error))
    size = max(0, len(block) + len(payload) + draw(_size_error))
    numbers = str(header_size).encode() + b" " + str(size).encode()
    return sep.join(parts) + b" " + numbers + b"\r\n" + block + payload + b"\r\n"


_other = st.sampled_from(
    [
        b"PING\r\n",
        b"PONG\r\n",
        b"+OK\r\n",
        b"PING \r\n",
        b"-ERR 'Unknown Protocol Operation'\r\n",
        b"-ERR 'Permissions Violation for Publish to foo'\r\n",
        b"INFO " + json.dumps({"server_id": "x", "max_payload": 1048576}).encode() + b"\r\n",
        b"HELLO\r\n",
        b"MSG a\r\n",
        b"\r\n",
        b"M",
    ]
)
_frames = st.lists(st.one_of(_msg(), _msg(), _hmsg(), _hmsg(), _other), max_size=12)


@st.composite
def _chunked(draw: st.DrawFn) -> list[bytes]:
    stream = b"".join(draw(_frames))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------ the parsers on their own


class _Recorder:
    """The client as nats-py's parser sees it, recording every call; a message with data ``b"boom"``
    raises, and those for ``taken`` sids are taken as plain calls (as the JetStream connection does)."""

    def __init__(self, taken: frozenset[int]) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.taken = taken

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self._record(sid, subject, reply, data, headers)

    def _record(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.calls.append(
            ("msg", sid, subject, reply, data, headers, type(subject), type(data), type(headers))
        )
        if data == b"boom":
            raise RuntimeError("boom")

    def _process_msg_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        if sid in self.taken:
            self._record(sid, subject, reply, data, headers)
            return None
        return self._process_msg(sid, subject, reply, data, headers)

    async def _process_err(self, message: str) -> None:
        self.calls.append(("err", message))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))


async def _feed(parser: Parser, chunks: list[bytes]) -> list[tuple[object, ...]]:
    """What reaches the client, then how the feeding ended and the parser's state (as the read loop
    stops at the first exception)."""
    outcome: list[tuple[object, ...]] = []
    for chunk in chunks:
        try:
            await parser.parse(chunk)
        except Exception as failure:
            outcome.append(("raised", type(failure), str(failure)))
            break
    recorder = parser.nc
    assert isinstance(recorder, _Recorder)
    state: tuple[object, ...] = (bytes(parser.buf), parser.state, parser.header_needed)
    if parser.state == nats_parser.AWAITING_MSG_PAYLOAD:  # (else nats-py sets them before using them)
        state += (parser.needed, dict(parser.msg_arg))
    return [*recorder.calls, *outcome, ("state", state)]


async def _both(chunks: list[bytes], taken: frozenset[int]) -> None:
    expected = await _feed(Parser(_Recorder(taken)), chunks)
    assert await _feed(FrameParser(_Recorder(taken)), chunks) == expected
    # ... and with the same bytes in one read (the fast path's own case).
    whole = [b"".join(chunks)]
    assert await _feed(FrameParser(_Recorder(taken)), whole) == await _feed(Parser(_Recorder(taken)), whole)


@pytest.mark.parametrize("loop_factory", LOOPS, ids=_LOOP_IDS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=_chunked(), taken=st.sets(st.sampled_from([1, 2, 42])).map(frozenset))
# nats-py reads this HMSG without reply as one with reply "2", header size 6, size 12 (its \s+ spans CR LF)
@example(chunks=[b"HMSG a 1 2 6\r\n12\r\nab\r\n\r\nMSG b 2 0\r\n\r\n"], taken=frozenset({1}))
def test_the_reader_makes_the_calls_nats_pys_parser_makes(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], chunks: list[bytes], taken: frozenset[int]
) -> None:
    _run(loop_factory, _both(chunks, taken))


_TYPICAL = (
    b"MSG _OC_PUBACK.abc.1 1 36\r\n"
    + b'{"stream":"OC","seq":12,"domain":""}'
    + b"\r\n"
    + b"HMSG OC.deliver.ns.name 2 $JS.ACK.OC.c.1.12.12.1765000000000000000.0 30 34\r\n"
    + b'NATS/1.0\r\nOc-Meta: {"a":1}\r\n\r\nbody\r\n'
    + b"PING\r\n"
    + b"MSG x 3 5\r\nhello\r\n"
)


@pytest.mark.parametrize("loop_factory", LOOPS, ids=_LOOP_IDS)
@pytest.mark.parametrize("cut", range(len(_TYPICAL) + 1))
def test_a_typical_read_split_at_any_byte_gives_the_same_calls(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], cut: int
) -> None:
    chunks = [_TYPICAL[:cut], _TYPICAL[cut:]]
    _run(loop_factory, _both(chunks, frozenset({1, 2})))


def test_the_fast_path_takes_whole_frames_itself() -> None:
    """The PubAck and the delivery in one read never reach nats-py's parser (no regex match there)."""

    calls: list[bytes] = []

    async def run() -> list[tuple[object, ...]]:
        recorder = _Recorder(frozenset({1}))
        parser = FrameParser(recorder)
        original = Parser.parse

        async def counting(self: Parser, data: bytes = b"") -> None:
            calls.append(data)
            await original(self, data)

        Parser.parse = counting  # type: ignore[method-assign]
        try:
            await parser.parse(_TYPICAL.split(b"PING")[0])
        finally:
            Parser.parse = original  # type: ignore[method-assign]
        return recorder.calls

    recorded = _run(asyncio.new_event_loop, run())
    assert calls == []
    assert [call[1] for call in recorded] == [1, 2]
    assert recorded[1][5] == b'NATS/1.0\r\nOc-Meta: {"a":1}\r\n\r\n'


def test_the_nats_py_assumptions_still_hold() -> None:
    """What the reader relies on in nats-py (pinned exactly in pyproject.toml)."""
    assert nats_parser.MSG_RE.pattern.startswith(b"\\AMSG\\s+")
    assert nats_parser.HMSG_RE.pattern.startswith(b"\\AHMSG\\s+")
    assert (nats_parser.AWAITING_CONTROL_LINE, nats_parser.CRLF_SIZE) == (1, 2)
    client = _CoalescingClient()
    assert type(client._ps) is FrameParser
    assert client._ps.nc is client
    assert type(NatsClient()._ps) is Parser
    assert "await self._ps.parse(b)" in inspect.getsource(NatsClient._read_loop)  # every read goes there
    # Its payload state: the control line consumed, ``needed`` bytes (header block first) and CR LF wanted.
    assert "len(self.buf) >= self.needed + CRLF_SIZE" in inspect.getsource(Parser.parse)


# ------------------------------------------------------------------------ the real connection class


class _Client(_CoalescingClient):
    """The JetStream connection, unconnected: subscribing sends nothing; errors are recorded."""

    def __init__(self, reader: type[Parser]) -> None:
        super().__init__()
        self._ps = reader(self)
        self.errors: list[tuple[type[BaseException], str]] = []

        async def error(failure: Exception) -> None:
            self.errors.append((type(failure), re.sub(" at 0x[0-9a-f]+", "", str(failure))))

        self._error_cb = error

    async def _send_subscribe(self, sub: Any) -> None:
        return None


def _fields(message: Msg) -> tuple[object, ...]:
    return (message.subject, message.reply, message.data, message.headers, message._sid)


async def _connection(reader: type[Parser], chunks: list[bytes]) -> list[object]:
    client = _Client(reader)
    seen: list[object] = []

    def direct(message: Msg) -> None:
        assert message._client is client
        seen.append(("direct", _fields(message)))
        if message.data == b"boom":
            raise ValueError("boom")

    every = [
        await client.subscribe_direct("d.>", direct),  # sid 1
        queued := await client.subscribe("q.>", pending_bytes_limit=30),  # sid 2: a slow consumer soon
        await client.subscribe_direct("r.>", direct),  # sid 3: unsubscribed below
        limited := await client.subscribe("m.>", max_msgs=2),  # sid 4
    ]
    assert limited._id == 4
    client._subs.pop(3)  # as if unsubscribed while its messages were on the way
    outcome: list[object] = []
    for chunk in chunks:
        try:
            await client._ps.parse(chunk)
        except Exception as failure:
            outcome.append(("raised", type(failure)))
            break
    for sid, sub in sorted(client._subs.items()):
        pending = []
        while not sub._pending_queue.empty():
            pending.append(_fields(sub._pending_queue.get_nowait()))
        outcome.append((sid, sub._received, sub._pending_size, pending))
    for sub in (queued, limited):
        outcome.append(("received", sub._id, sub._received))
    tasks = [task for task in (sub._wait_for_msgs_task for sub in every) if task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [*seen, *outcome, dict(client.stats), client.errors, sorted(client._subs)]


_sids = st.sampled_from([b"1", b"1", b"2", b"3", b"4", b"5", b"9"])
_subjects = st.sampled_from([b"d.a", b"q.b", b"m.c", b"r.d", b"d.\xff"])  # (not UTF-8: nats-py raises)


@st.composite
def _connection_msg(draw: st.DrawFn) -> bytes:
    payload = draw(_payload)
    reply = draw(st.sampled_from([b"", b" _INBOX.1", b" $JS.ACK.OC.c.1.2.3.4.5"]))
    head = b"MSG " + draw(_subjects) + b" " + draw(_sids) + reply
    if draw(st.booleans()):
        return head + b" " + str(len(payload)).encode() + b"\r\n" + payload + b"\r\n"
    block = draw(_header_block)
    numbers = f" {len(block)} {len(block) + len(payload)}".encode()
    return b"H" + head + numbers + b"\r\n" + block + payload + b"\r\n"


@st.composite
def _connection_reads(draw: st.DrawFn) -> list[bytes]:
    stream = b"".join(
        draw(st.lists(st.one_of(_connection_msg(), _connection_msg(), _other_safe), max_size=12))
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


_other_safe = st.sampled_from([b"PONG\r\n", b"+OK\r\n", b"MSG d.a 1 4\r\nboom\r\n"])


@pytest.mark.parametrize("loop_factory", LOOPS, ids=_LOOP_IDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=_connection_reads())
def test_the_connection_hands_the_same_messages_to_the_same_places(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], chunks: list[bytes]
) -> None:
    async def both() -> None:
        expected = await _connection(Parser, chunks)
        assert await _connection(FrameParser, chunks) == expected

    _run(loop_factory, both())
