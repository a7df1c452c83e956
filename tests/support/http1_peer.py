"""A scripted raw HTTP/1.1 peer on loopback for tests of an HTTP client: every byte it answers is the
test's, and every byte it receives is parsed strictly and recorded.

    async with Peer(answer) as peer:                      # answer(request) -> Reply (or an awaitable)
        ... send to peer.url("/path") ...
        assert peer.requests[0].header("host") == ...     # method, target, headers, body, connection

* ``Reply(data)`` writes ``data`` (a whole response, or several, byte for byte) and reads the next
  request on the same connection; ``Reply(data, then=CLOSE)`` closes the connection after writing;
  ``Reply(then=IDLE_CLOSE)`` writes, half-closes (FIN) and waits for the client to close its side;
  ``Reply()`` (no data) never answers: the connection stays open until the client closes it.
* Requests are parsed by :func:`parse_request_head` (RFC 9112 syntax, no leniency) and framed by
  Content-Length; anything else (Transfer-Encoding, a malformed head, bytes after the last request when
  the client closes) is recorded in ``errors``, which a test asserts empty.
* ``connections`` lists every accepted connection in order, with its bytes received and events for
  "the client closed" and "the connection is gone"; ``max_open`` is the most open at once (as the
  server sees them: a connection the client closed counts until its EOF arrives), ``max_outstanding``
  the most requests received and not yet answered at once.
* :func:`self_signed_loopback_cert` makes a certificate for 127.0.0.1 to serve TLS with.
* ``async with closing(HttpSender()) as sender:`` closes the client under test when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "CLOSE",
    "IDLE_CLOSE",
    "KEEP",
    "Connection",
    "MalformedRequest",
    "Peer",
    "ReceivedRequest",
    "Reply",
    "closing",
    "parse_request_head",
    "self_signed_loopback_cert",
]

KEEP = "keep"  # read the next request on the same connection
CLOSE = "close"  # close the connection after writing
IDLE_CLOSE = "idle-close"  # half-close after writing, wait for the client to close (bounded), close
WITHIN = 10.0  # ceiling of every wait of the peer (a ceiling, not a budget)
_READ_SIZE = 65536
_HEAD_LIMIT = 1024 * 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) (HTTP/[0-9]\.[0-9])")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


class MalformedRequest(ValueError):
    """The bytes received are not a well-formed HTTP/1.1 request head."""


@dataclass(frozen=True)
class ReceivedRequest:
    connection: int  # 1-based number of the connection it came on, in accept order
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]  # as received: names as spelled, in order
    body: bytes

    def all(self, name: str) -> list[str]:
        """Every value of the header ``name`` (case-insensitive), in the order received."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str | None:
        """The one value of ``name``, None when absent; a repeated header fails the test."""
        values = self.all(name)
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times: {values}"
        return values[0] if values else None


def parse_request_head(head: bytes) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
    """Method, target, version and header fields of a request head (without the final CRLF CRLF).

    Strict RFC 9112: one SP between the parts of the request line, header names are tokens with no
    whitespace before the colon, no obs-fold, values of visible characters, SP/HTAB and obs-text (no CR,
    LF or NUL); leading and trailing whitespace of a value is not part of it."""
    lines = head.split(b"\r\n")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None:
        raise MalformedRequest(f"bad request line {lines[0]!r}")
    method, target, version = (part.decode("ascii") for part in matched.groups())
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise MalformedRequest(f"obs-fold (continuation line) {line!r}")
        field_match = _FIELD_LINE.fullmatch(line)
        if field_match is None:
            raise MalformedRequest(f"bad header line {line!r}")
        name, value = field_match.groups()
        if not _FIELD_VALUE.fullmatch(value):
            raise MalformedRequest(f"bad header value {line!r}")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return method, target, version, tuple(fields)


@dataclass(frozen=True)
class Reply:
    data: bytes = b""
    then: str = KEEP
    # Awaited before writing: e.g. hold the answer until the test says so.
    hold: Callable[[], Awaitable[object]] | None = None


Answer = Callable[["ReceivedRequest"], "Reply | Awaitable[Reply]"]


@dataclass
class Connection:
    number: int
    bytes_received: int = 0
    awaiting_answer: bool = False
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)  # EOF (or reset) from the client
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # closed on both sides, handler ended


def ok(body: bytes = b"", *, extra: bytes = b"") -> bytes:
    """A 200 answer with a Content-Length body (``extra``: more header lines, each ending in CRLF)."""
    return b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Peer:
    """A raw HTTP/1.1 server on a free loopback port, answering each request by ``answer(request)``."""

    def __init__(
        self,
        answer: Answer | None = None,
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        close_at_accept: bool = False,
    ) -> None:
        self.answer: Answer = answer if answer is not None else (lambda request: Reply(ok()))
        self.host = host
        self._ssl = ssl_context
        self._close_at_accept = close_at_accept
        self.requests: list[ReceivedRequest] = []
        self.connections: list[Connection] = []
        self.errors: list[str] = []
        self.open_now = 0
        self.max_open = 0
        self.answers_written = 0  # replies (with data) written and drained
        self.outstanding = 0  # requests received and not answered yet (on connections still open)
        self.max_outstanding = 0
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    def url(self, path_and_query: str = "/", *, host: str | None = None) -> str:
        shown = host if host is not None else self.host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"{self.scheme}://{shown}:{self.port}{path_and_query}"

    @property
    def bytes_received(self) -> int:
        return sum(connection.bytes_received for connection in self.connections)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._serve, self.host, 0, ssl=self._ssl, family=_family(self.host), limit=_READ_SIZE
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def until(self, condition: Callable[[], bool], within: float = WITHIN) -> bool:
        """Wait until ``condition()`` holds (re-checked whenever the peer sees something); False when
        ``within`` seconds pass first."""
        async with self._changed:
            try:
                async with asyncio.timeout(within):
                    await self._changed.wait_for(condition)
            except TimeoutError:
                return condition()
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            pass  # the peer is closing (Python 3.11's start_server logs a handler that ends cancelled)
        finally:
            self._handlers.discard(task)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(number=len(self.connections) + 1)
        self.connections.append(connection)
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        await self._notify()
        buffer = bytearray()
        try:
            if not self._close_at_accept:
                await self._exchange(connection, reader, writer, buffer)
        except (ConnectionError, ssl.SSLError, OSError):
            connection.client_closed.set()
        finally:
            writer.close()
            self.open_now -= 1
            if connection.awaiting_answer:
                connection.awaiting_answer = False
                self.outstanding -= 1
            connection.gone.set()
            await self._notify()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, connection: Connection, reader: asyncio.StreamReader, buffer: bytearray) -> bool:
        """Read more into ``buffer``; False at the client's EOF."""
        data = await reader.read(_READ_SIZE)
        if not data:
            connection.client_closed.set()
            await self._notify()
            return False
        connection.bytes_received += len(data)
        buffer += data
        await self._notify()
        return True

    async def _exchange(
        self,
        connection: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        buffer: bytearray,
    ) -> None:
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > _HEAD_LIMIT:
                    self.errors.append(
                        f"connection {connection.number}: no end of head in {len(buffer)} bytes"
                    )
                    return
                if not await self._read(connection, reader, buffer):
                    if buffer:
                        self.errors.append(f"connection {connection.number}: EOF after {bytes(buffer)!r}")
                    return
            try:
                method, target, version, headers = parse_request_head(bytes(buffer[:end]))
            except MalformedRequest as failure:
                self.errors.append(f"connection {connection.number}: {failure}")
                return
            del buffer[: end + 4]
            lengths = [value for name, value in headers if name.lower() == "content-length"]
            if any(name.lower() == "transfer-encoding" for name, _ in headers):
                self.errors.append(f"connection {connection.number}: Transfer-Encoding in {headers}")
                return
            if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
                self.errors.append(f"connection {connection.number}: bad Content-Length {lengths}")
                return
            length = int(lengths[0]) if lengths else 0
            while len(buffer) < length:
                if not await self._read(connection, reader, buffer):
                    self.errors.append(f"connection {connection.number}: EOF inside a body")
                    return
            body = bytes(buffer[:length])
            del buffer[:length]
            request = ReceivedRequest(connection.number, method, target, version, headers, body)
            self.requests.append(request)
            connection.awaiting_answer = True
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            await self._notify()
            reply = self.answer(request)
            if not isinstance(reply, Reply):
                reply = await reply
            if reply.hold is not None:
                await reply.hold()
            if reply.data:
                writer.write(reply.data)
                await writer.drain()
                self.answers_written += 1
                connection.awaiting_answer = False
                self.outstanding -= 1
                await self._notify()
            if reply.then == CLOSE:
                return
            if reply.then == IDLE_CLOSE:
                if writer.can_write_eof():
                    writer.write_eof()
                # The client's pool should see the FIN and close its side; bounded either way.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WITHIN / 2):
                        while await self._read(connection, reader, buffer):
                            pass
                return


class _Closable(Protocol):
    async def close(self) -> None: ...


_Client = TypeVar("_Client", bound=_Closable)


@contextlib.asynccontextmanager
async def closing(client: _Client) -> AsyncIterator[_Client]:
    """``client`` (e.g. the HttpSender under test), closed when the block ends however it ends."""
    try:
        yield client
    finally:
        await client.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def self_signed_loopback_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for the IP address 127.0.0.1, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "loopback-cert.pem", directory / "loopback-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
