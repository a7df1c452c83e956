"""Kopf's liveness endpoint (``--health-port``) reports the gateway's loop: ok while it runs, a failure
at once (not after Kopf's retry backoff) while it is blocked, so the pod restarts.

Only Kopf's public surface is used: the endpoint is fetched over HTTP on loopback, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

from .conftest import StartOperator

PROBE_TIMEOUT = 20.0  # far above the gateway probe's own 2 s, far below Kopf's 60 s retry backoff


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fetch_health(port: int) -> tuple[int, object]:
    """GET /healthz: (status, decoded body)."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


async def test_the_gateway_probe_passes_while_the_gateway_loop_runs(start_operator: StartOperator) -> None:
    port = free_loopback_port()
    await start_operator("--health-port", str(port))

    status, body = await asyncio.to_thread(fetch_health, port)

    assert (status, body) == (200, {"gateway": "ok"})


async def test_the_gateway_probe_fails_at_once_while_the_gateway_loop_is_blocked(
    start_operator: StartOperator,
) -> None:
    port = free_loopback_port()
    await start_operator("--health-port", str(port))
    outcome: list[tuple[int, object]] = []
    thread = threading.Thread(target=lambda: outcome.append(fetch_health(port)), name="kubelet", daemon=True)

    thread.start()
    # Joining blocks this loop (the gateway's) until the probe answers: a probe that Kopf retried after
    # its backoff instead of failing would still be waiting when the join gives up.
    thread.join(timeout=PROBE_TIMEOUT + 5)

    assert not thread.is_alive()
    ((status, _body),) = outcome
    assert status == 500
