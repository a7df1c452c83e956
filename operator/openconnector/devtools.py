"""Developer tools for trying the gateway locally: a printing sink and a webhook signer.

``openconnector sink --port 9000`` stands in for a subscriber or a register: it prints every request and
answers 201 with a generated object id (so register/schema targets get an id back).
``openconnector sign --secret whsec_... FILE`` prints Standard Webhooks headers for a body, for curl.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiohttp import web

from openconnector.consumers.standard_webhooks import standard_webhook_headers


async def _sink_handler(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {
        k: v for k, v in request.headers.items() if k.lower().startswith(("ce-", "content-type", "webhook-"))
    }
    try:
        shown = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        shown = body[:2000].decode(errors="replace")
    print(f"--- {request.method} {request.path_qs} {headers}\n{shown}", flush=True)
    object_id = str(uuid.uuid4())
    return web.json_response({"id": object_id}, status=201)


async def _run_sink(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _sink_handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"sink listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def sink_command(args: argparse.Namespace) -> int:
    asyncio.run(_run_sink(args.host, args.port))
    return 0


def sign_command(args: argparse.Namespace) -> int:
    body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    msg_id = args.id or f"msg_{uuid.uuid4().hex}"
    for name, value in standard_webhook_headers((args.secret,), msg_id, int(time.time()), body).items():
        print(f"{name}: {value}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sink", help="(dev) print every request received; answer 201 with an id")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.set_defaults(func=sink_command)
    p = sub.add_parser("sign", help="(dev) print Standard Webhooks headers for a request body")
    p.add_argument("--secret", required=True, help="the whsec_... secret")
    p.add_argument("--id", help="webhook-id (default: a random one)")
    p.add_argument("file", help="the body, or - for standard input")
    p.set_defaults(func=sign_command)
