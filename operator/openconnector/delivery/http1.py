"""Delivery's HTTP/1.1 client: keep-alive connections per origin, responses parsed by httptools (llhttp).

Why not aiohttp's client here: a delivery is one request of known length to an origin we already
validated, never redirected, without cookies, proxies or compression. For that, aiohttp's
``ClientSession.request`` spent about 78 µs of CPU per request on the benchmark machine against 18 µs
for this module (a one-off measurement: same loop, same server), most of the gateway's cost per
delivered event; with this module the gateway's CPU per delivered event fell from 254 to 149 µs
(docs/benchmarks.md, "before and after"). The parts that are hard to get right stay with libraries:
llhttp parses every response (framing, chunked bodies, keep-alive rules), ``ssl`` does TLS, yarl splits
URLs and the egress resolver (aiohttp's resolver interface) resolves names. The aiohttp server and the
gateway's other outgoing calls are unchanged.

What this client does, and no more:

- a request is ``METHOD target HTTP/1.1`` with ``Host``, the given headers, ``User-Agent`` unless given
  and ``Content-Length``; a header line with CR or LF is refused before anything is sent;
- a connection serves one request at a time and goes back to its origin's idle list when the answer
  was complete and both sides allow keep-alive; idle connections close after ``keepalive_s``;
- ``1xx`` interim answers are skipped; at most ``HEAD_LIMIT`` bytes of response head and
  ``body_limit`` bytes of body are kept (a longer body ends the connection);
- ``limit`` bounds the open connections (0: unbounded); a request waits for room.

Timeouts are the caller's (``HttpSender`` cancels the task at its deadline): whatever is awaited here
can be cancelled, and a connection whose exchange was cut short is closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import httptools
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = [
    "HEAD_LIMIT",
    "Answer",
    "BadRequestHead",
    "ConnectionPool",
    "Endpoint",
    "ResponseError",
    "endpoint_of",
    "request_head",
]

#: Bytes of status line and headers a response may have (aiohttp's parser allows 8 KiB per line).
HEAD_LIMIT = 64 * 1024
_KEEPALIVE_S = 15.0  # aiohttp's default keep-alive for idle pooled connections
_SWEEP_SLACK = 0.05  # how long after an idle connection is due the sweep runs (timers may fire early)


class BadRequestHead(ValueError):
    """The request cannot be written (a header with CR/LF, a name that is not a token, not UTF-8)."""


class ResponseError(Exception):
    """The exchange failed after the request was written: the text says how (no status to report).
    ``unanswered``: not one byte came back before the connection closed."""

    def __init__(self, why: str, *, unanswered: bool = False) -> None:
        super().__init__(why)
        self.unanswered = unanswered


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What one URL resolves to for a request: its origin (the pool key), the host to resolve and
    connect to, the request target and the ``Host`` header value."""

    origin: tuple[str, str, int]  # (scheme, host, port)
    host: str  # as connected to: an IP literal or a name (IDNA-encoded), no brackets
    port: int
    tls: bool
    literal: bool  # an IP address: not resolved (the URL check at compile time covers literals)
    target: str  # path and query, as sent
    host_header: str


@lru_cache(maxsize=1024)
def endpoint_of(url: str) -> Endpoint:
    """The endpoint of an absolute http(s) URL (cached: targets repeat). ValueError if it has none."""
    parsed = URL(url)
    scheme = parsed.scheme
    host = parsed.raw_host
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parsed.port
    if port is None:
        raise ValueError(f"no port for {url!r}")
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    bracketed = f"[{host}]" if ":" in host else host
    # The port only when it is not the scheme's (as aiohttp and browsers write Host).
    host_header = bracketed if (scheme, port) in _DEFAULT_PORTS else f"{bracketed}:{port}"
    target = parsed.raw_path_qs or "/"
    return Endpoint((scheme, host, port), host, port, scheme == "https", literal, target, host_header)


_DEFAULT_PORTS = frozenset({("http", 80), ("https", 443)})


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_known_names: set[str] = set()  # header names already found to be tokens (bounded below)


def request_head(
    method: str, endpoint: Endpoint, headers: Mapping[str, str], length: int, user_agent: str
) -> bytes:
    """The request line and headers of one request, encoded. BadRequestHead for a header that would
    break the framing (CR or LF in a value, a name that is not a token) or is not UTF-8."""
    parts = [method, " ", endpoint.target, " HTTP/1.1\r\nHost: ", endpoint.host_header, "\r\n"]
    agent = True
    for name, value in headers.items():
        if name not in _known_names:
            _check_name(name)
        if agent and name.lower() == "user-agent":
            agent = False
        parts += (name, ": ", value, "\r\n")
    if agent:
        parts += ("User-Agent: ", user_agent, "\r\n")
    parts += ("Content-Length: ", str(length), "\r\n\r\n")
    text = "".join(parts)
    # Each line above ends in exactly one CRLF: any other CR or LF came in with a value.
    lines = len(headers) + (5 if agent else 4)  # request line, Host, headers, agent, length, end
    if text.count("\n") != lines or text.count("\r") != lines:
        raise BadRequestHead("a header value contains CR or LF")
    try:
        return text.encode()
    except UnicodeEncodeError as error:
        raise BadRequestHead("a header cannot be encoded as UTF-8") from error


def _check_name(name: str) -> None:
    if not name or not _TOKEN_CHARS.issuperset(name):
        raise BadRequestHead(f"{name!r} is not a valid header name")
    if len(_known_names) < 4096:
        _known_names.add(name)


class Answer:
    """The response to one request as it arrives: status, reason, headers and the kept part of the
    body."""

    __slots__ = ("body", "body_size", "head_done", "headers", "reason", "status")

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_done = False

    def header_map(self) -> CIMultiDictProxy[str]:
        """The headers as text: a value that is not UTF-8 gets U+FFFD for its bad bytes (they go to the
        message log's JSON, which cannot carry lone surrogates)."""
        return CIMultiDictProxy(
            CIMultiDict(
                [(name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in self.headers]
            )
        )

    def body_prefix(self) -> bytes:
        return b"".join(self.body)


class _Connection(asyncio.Protocol):
    """One connection: writes a request, feeds what comes back to llhttp, and resolves the waiter when
    the answer is complete (or cannot be)."""

    def __init__(self, pool: ConnectionPool, origin: tuple[str, str, int]) -> None:
        self._pool = pool
        self.origin = origin
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: Answer | None = None  # of the last exchange, complete or cut short
        self._reading: Answer | None = None  # the answer still arriving
        self._waiter: asyncio.Future[Answer] | None = None
        self._head_bytes = 0
        self._interim = False
        self._stray = False  # a second message came after the answer: the server can't be trusted
        self.reusable = False  # set when an answer completed and keep-alive allows another request
        self.closed = False
        self.exchanges = 0  # requests written on this connection
        self.idle_since = 0.0

    def itself(self) -> _Connection:
        """The protocol factory ``create_connection`` calls: this connection."""
        return self

    # ------------------------------------------------------------------ transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport, so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)
        if self.closed:  # the pool closed while we were connecting
            transport.close()

    def data_received(self, data: bytes) -> None:
        answer = self._reading
        if answer is None:
            self.close()  # nothing asked: a server talking out of turn can't be trusted with the next one
            return
        if not answer.head_done and self._head_bytes + len(data) > HEAD_LIMIT:
            # Only the head is bounded here (the body by body_limit): parse up to the limit, and go on
            # only if the head ended within it.
            room = HEAD_LIMIT - self._head_bytes
            if not self._feed(data[:room]):
                return
            if self._reading is None:  # answered within the limit: what follows is out of turn
                if len(data) > room:
                    self.close()
                return
            if not answer.head_done:
                self._fail(f"response head larger than {HEAD_LIMIT} bytes")
                return
            data = data[room:]
        elif not answer.head_done:
            self._head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False when the answer failed (the connection is then closed)."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols")
            return False
        except httptools.HttpParserError as error:
            self._fail(f"invalid HTTP response: {error}")
            return False
        if self._stray:
            self.close()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._pool._forget(self)
        answer, waiter = self._reading, self._waiter
        self._reading = self._waiter = None
        if waiter is not None and not waiter.done():
            if answer is not None and answer.head_done:
                # The body ended with the connection (no length given) or was cut: the status stands.
                waiter.set_result(answer)
            else:
                unanswered = answer is not None and self._head_bytes == 0
                waiter.set_exception(
                    ResponseError("the server closed the connection without answering", unanswered=unanswered)
                )

    # ------------------------------------------------------------------ llhttp callbacks
    def on_message_begin(self) -> None:
        if self._reading is None:
            self._stray = True

    def on_status(self, status: bytes) -> None:
        answer = self._reading
        if answer is not None:
            answer.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        answer = self._reading
        # Trailers of a chunked body come here too, after the head: not kept (as aiohttp), so their
        # size is bounded by nothing but the deadline, and they cost no memory.
        if answer is not None and not answer.head_done:
            answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self._reading
        if answer is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status <= 199 and status != 101:
            self._interim = True  # an interim answer (100 Continue, 103 Early Hints): the final one follows
            return
        answer.status = status
        answer.head_done = True

    def on_body(self, body: bytes) -> None:
        answer = self._reading
        if answer is None or self._interim:
            return
        room = self._pool.body_limit - answer.body_size
        answer.body_size += len(body)
        if room >= len(body):
            answer.body.append(body)
            return
        if room > 0:
            answer.body.append(body[:room])
        # Longer than we read: answer now, and the rest is never read (the connection ends).
        self._finish(reusable=False)

    def on_message_complete(self) -> None:
        answer = self._reading
        if answer is None:
            return
        if self._interim:
            self._interim = False
            answer.reason = b""
            answer.headers = []
            self._head_bytes = 0
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # ------------------------------------------------------------------ the exchange
    async def exchange(self, head: bytes, body: bytes) -> Answer:
        """Write one request and wait for its answer (a ResponseError if there is none)."""
        transport = self.transport
        if transport is None or self.closed:
            raise ResponseError("the connection closed before the request was sent", unanswered=True)
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.answer = self._reading = Answer()
        self._waiter = waiter
        self._head_bytes = 0
        self.reusable = False
        self.exchanges += 1
        if len(body) <= 16 * 1024:
            transport.write(head + body)  # one segment: the copy costs less than a second write
        else:
            transport.writelines((head, body))
        try:
            return await waiter
        finally:
            # Cut short (cancelled): nothing more is read into this answer; release() closes us.
            self._reading = self._waiter = None

    def _finish(self, *, reusable: bool) -> None:
        waiter, answer = self._waiter, self._reading
        self._reading = self._waiter = None
        if waiter is None or answer is None or waiter.done():
            return
        self.reusable = reusable
        waiter.set_result(answer)
        if not reusable:
            self.close()

    def _fail(self, why: str) -> None:
        waiter = self._waiter
        self._reading = self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ResponseError(why))
        self.close()

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self._pool._forget(self)


class ConnectionPool:
    """Keep-alive connections by origin, at most ``limit`` open at once (0: unbounded)."""

    def __init__(
        self,
        *,
        resolver: AbstractResolver,
        limit: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        body_limit: int = 64 * 1024,
        keepalive_s: float = _KEEPALIVE_S,
    ) -> None:
        self._resolver = resolver
        self._limit = limit
        self._ssl_context = ssl_context
        self.body_limit = body_limit
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def acquire(self, endpoint: Endpoint, *, fresh: bool = False) -> _Connection:
        """An idle connection to the endpoint's origin (unless ``fresh``), or a new one (OSError if none
        can be made)."""
        while True:
            idle = None if fresh else self._idle.get(endpoint.origin)
            if idle:
                now = asyncio.get_running_loop().time()
                while idle:
                    connection = idle.pop()
                    if not connection.closed and now - connection.idle_since < self._keepalive_s:
                        return connection
                    connection.close()
            if not self._limit or len(self._open) < self._limit:
                return await self._connect(endpoint)
            # Full: make room by closing another origin's idle connection, or wait for a release (a
            # connection to this origin is then taken as it is, on the next round).
            if not self._close_one_idle(but=endpoint.origin):
                await self._wait_for_room()

    def release(self, connection: _Connection) -> None:
        """Give a connection back after an exchange: kept if its answer allows, else closed."""
        if not connection.reusable or connection.closed:
            connection.close()
            return
        connection.answer = None
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.origin, []).append(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._keepalive_s, self._sweep)
        if self._room_waiters:
            self._wake_one()  # a request for another origin may close this one to make room

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self._open):
            connection.close()
        self._idle.clear()

    # ------------------------------------------------------------------ internals
    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        if endpoint.literal:
            addresses = [(endpoint.host, endpoint.port, 0, 0, 0)]
        else:
            resolved = await self._resolver.resolve(endpoint.host, endpoint.port, family=socket.AF_UNSPEC)
            addresses = [(r["host"], r["port"], r["family"], r["proto"], r["flags"]) for r in resolved]
        context: ssl.SSLContext | None = None
        if endpoint.tls:
            context = self._ssl_context or _default_ssl_context()
        failure: OSError | None = None
        for host, port, family, proto, flags in addresses:
            connection = _Connection(self, endpoint.origin)
            self._open.add(connection)  # counted while connecting: the limit holds during the handshake
            try:
                await loop.create_connection(
                    connection.itself,
                    host,
                    port,
                    family=family,
                    proto=proto,
                    flags=flags,
                    ssl=context,
                    server_hostname=endpoint.host if context is not None else None,
                )
            except OSError as error:
                failure = error
                self._forget(connection)
                continue
            except BaseException:
                self._forget(connection)
                raise
            return connection
        raise failure if failure is not None else OSError(f"no address for {endpoint.host}")

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            if self._room_waiters:
                self._wake_one()

    def _close_one_idle(self, *, but: tuple[str, str, int]) -> bool:
        for origin, idle in self._idle.items():
            if origin == but:
                continue
            while idle:
                connection = idle.pop(0)
                if not connection.closed:
                    connection.close()
                    return True
        return False

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._room_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, then cancelled: the room goes to the next in line
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._room_waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close connections idle for ``keepalive_s``; run again while any are idle."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        oldest: float | None = None
        for origin, idle in list(self._idle.items()):
            kept = [c for c in idle if not c.closed and now - c.idle_since < self._keepalive_s]
            for connection in idle:
                if connection not in kept:
                    connection.close()
            if kept:
                self._idle[origin] = kept
                since = min(c.idle_since for c in kept)
                oldest = since if oldest is None else min(oldest, since)
            else:
                del self._idle[origin]
        if oldest is not None:
            # Again when the oldest kept one has been idle keepalive_s (not a whole period later, which
            # would let a connection stay open up to twice as long); a little after, so it is due then.
            self._sweeper = loop.call_at(oldest + self._keepalive_s + _SWEEP_SLACK, self._sweep)


@lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """The system's trust store and hostname checks, as aiohttp's default verified context."""
    return ssl.create_default_context()
