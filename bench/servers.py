"""The processes a benchmark talks to, each run as ``python -m bench.servers KIND --port P``.

* ``sink``: where deliveries land. A minimal HTTP/1.1 keep-alive server on a bare ``asyncio.Protocol``,
  several times cheaper per request than an aiohttp server, so that on two shared cores the sink costs
  the system under test as little as possible. It counts requests and, when a body carries the load
  generator's send stamp (``"t":<CLOCK_MONOTONIC ns>``), records the end-to-end latency. ``GET /_count``
  returns the count, ``GET /_stats`` the counters and latencies, ``POST /_reset`` clears them.
* ``proxy``: the ingest baseline, a bare aiohttp server that parses the JSON body, forwards the same
  bytes to ``--forward`` through a pooled client session and answers 202.
* ``accept``: the CloudEvents ingress baseline, a bare aiohttp server that parses the JSON body (the
  whole structured event, or the binary-mode data) and answers 202.

All listen on 127.0.0.1 only. ``--loop uvloop|asyncio`` picks the baselines' event loop (the gateway's
``--event-loop``), so a gateway and its baseline are compared on the same loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web

HOST = "127.0.0.1"
#: The event loops a benchmark can run the gateway and its baselines on (the gateway's ``--event-loop``).
LOOPS = ("asyncio", "uvloop")
#: The gateway's garbage-collector setting (``openconnector.runtime.YOUNG_GC_THRESHOLD``, applied with
#: ``gc.freeze()`` once started): the baselines run with it too, so that it is not counted as the gateway's
#: gain over them.
BASELINE_YOUNG_GC_THRESHOLD = 5000
_STAMP = b'"t":'
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def stamp_of(body: bytes) -> int | None:
    """The first ``"t":<digits>`` in a body: the load generator's send time (ns)."""
    at = body.find(_STAMP)
    if at < 0:
        return None
    start = end = at + len(_STAMP)
    while end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return int(body[start:end]) if end > start else None


class SinkState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.bytes = 0
        self.latencies_ns: list[int] = []
        self.first_ns = 0
        self.last_ns = 0

    def record(self, body: bytes) -> None:
        now = time.monotonic_ns()
        if not self.count:
            self.first_ns = now
        self.last_ns = now
        self.count += 1
        self.bytes += len(body)
        sent = stamp_of(body)
        if sent is not None:
            self.latencies_ns.append(now - sent)

    def snapshot(self) -> bytes:
        return orjson.dumps(
            {
                "count": self.count,
                "bytes": self.bytes,
                "first_ns": self.first_ns,
                "last_ns": self.last_ns,
                "latencies_ns": self.latencies_ns,
            }
        )


class SinkProtocol(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive: exactly what aiohttp's client sends."""

    def __init__(self, state: SinkState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[head_end + 4 : total])
            del self.buffer[:total]
            self.respond(head.split(b"\r\n", 1)[0], body)

    def respond(self, request_line: bytes, body: bytes) -> None:
        assert self.transport is not None
        _, _, rest = request_line.partition(b" ")
        path = rest.split(b" ", 1)[0]
        if path.startswith(b"/_count"):
            payload = b'{"count":%d}' % self.state.count
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(payload)
                + payload
            )
        elif path.startswith(b"/_stats"):
            payload = self.state.snapshot()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(payload)
                + payload
            )
        elif path.startswith(b"/_reset"):
            self.state.reset()
            self.transport.write(_OK)
        else:
            self.state.record(body)
            self.transport.write(_OK)


async def serve_sink(port: int) -> None:
    state = SinkState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(state), HOST, port, backlog=1024)
    async with server:
        await _until_signalled(port)


# ------------------------------------------------------------------------------------- aiohttp baselines

FORWARD_KEY = web.AppKey("forward", str)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


async def proxy_handler(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.Response(status=400)
    session = request.app[SESSION_KEY]
    async with session.post(
        request.app[FORWARD_KEY], data=body, headers={"Content-Type": "application/json"}
    ) as reply:
        await reply.read()
        if not 200 <= reply.status < 300:
            return web.Response(status=502)
    return web.Response(status=202)


async def accept_handler(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.Response(status=400)
    return web.Response(status=202)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def baseline_app(kind: str, forward: str | None = None) -> web.Application:
    """The ``proxy`` or ``accept`` baseline as an aiohttp application (its client session, if any,
    closes with the app)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", health)
    if kind == "proxy":
        if not forward:
            raise ValueError("forward: the proxy needs the sink URL")
        app[FORWARD_KEY] = forward
        app.cleanup_ctx.append(_proxy_session)
        app.router.add_post("/{tail:.*}", proxy_handler)
    else:
        app.router.add_post("/{tail:.*}", accept_handler)
    return app


async def _proxy_session(app: web.Application) -> AsyncIterator[None]:
    # The same pool shape as the gateway's dispatcher: unbounded, keep-alive.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0)) as session:
        app[SESSION_KEY] = session
        yield


async def start_app(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=1024).start()
    return runner


async def serve_aiohttp(kind: str, port: int, forward: str | None) -> None:
    runner = await start_app(baseline_app(kind, forward), port)
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(BASELINE_YOUNG_GC_THRESHOLD, middle, oldest)
    try:
        await _until_signalled(port)
    finally:
        await runner.cleanup()


async def _until_signalled(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {HOST}:{port}", flush=True)
    await stop.wait()


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)`` on ``loop`` (the same choice as the gateway's ``--event-loop``). Not
    ``openconnector.runtime``'s factory: the baselines stay bare aiohttp (their RSS is a baseline too)."""
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["sink", "proxy", "accept"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--forward", help="proxy: the sink URL to forward to")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="the event loop to run on")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.kind == "sink":
            run_on(args.loop, serve_sink(args.port))
        else:
            run_on(args.loop, serve_aiohttp(args.kind, args.port, args.forward))
    return 0


if __name__ == "__main__":
    sys.exit(main())
