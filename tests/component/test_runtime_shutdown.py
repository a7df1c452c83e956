"""The shutdown sequence both modes share (runtime.Runtime): not ready first, then stop, drain, finish."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import start_standalone
from tests.component.conftest import StartGateway
from tests.support.http import assert_problem, call


async def test_readyz_answers_503_while_draining(tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start_gateway(tmp_path)
    assert (await call("GET", f"{gw.url}/readyz")).status == 200
    gw.gateway.draining = True
    assert_problem(await call("GET", f"{gw.url}/readyz"), 503, "shutting-down")
    assert (await call("GET", f"{gw.url}/healthz")).status == 200  # alive: the drain must not be killed


async def test_stop_turns_readiness_off_then_stops_accepting_drains_and_finishes(tmp_path: Path) -> None:
    gw = await start_standalone([tmp_path], GatewaySettings(port=0, drain_seconds=1.0), watch=False)
    runtime, gateway = gw.runtime, gw.gateway
    steps: list[str] = []

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            steps.append(f"task cancelled, draining={gateway.draining}")
            raise

    runtime.spawn(background(), "background")
    await asyncio.sleep(0)  # the task runs up to its wait
    close_gateway = gateway.close

    async def close() -> int:
        try:
            answer = await call("GET", f"{gw.url}/readyz")
            steps.append(f"drain while the server still answers {answer.status}")
        except aiohttp.ClientConnectionError:
            steps.append("drain after the server stopped accepting")
        return await close_gateway()

    gateway.close = close  # type: ignore[method-assign]

    async def finish() -> None:
        steps.append("finisher")

    async def failing() -> None:
        raise RuntimeError("a finisher that fails")

    runtime.after_drain(failing)
    runtime.after_drain(finish)
    await gw.stop()
    await gw.stop()  # idempotent
    assert steps[0] == "task cancelled, draining=True"
    assert steps[1] == "drain after the server stopped accepting"
    assert steps[2:] == ["finisher"]


async def test_a_signal_turns_readiness_off_at_once(tmp_path: Path, start_gateway: StartGateway) -> None:
    gw = await start_gateway(tmp_path)
    stop = gw.runtime.stop_on_signals()
    loop = asyncio.get_running_loop()
    try:
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=10)
        assert_problem(await call("GET", f"{gw.url}/readyz"), 503, "shutting-down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
