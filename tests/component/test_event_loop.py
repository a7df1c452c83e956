"""The gateway's event loop: uvloop by default, asyncio's own on request (``--event-loop``, env
``OPENCONNECTOR_EVENT_LOOP``), and the gateway serves on either."""

from __future__ import annotations

import argparse
import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from openconnector.cli import build_parser
from openconnector.gateway.app import build_app
from openconnector.gateway.core import Gateway, GatewaySettings
from openconnector.routing.table import RoutingTable
from openconnector.runtime import event_loop_factory, run_main


@pytest.mark.parametrize("command", ["serve", "run"])
def test_uvloop_is_the_default_of_serve_and_run(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCONNECTOR_EVENT_LOOP", raising=False)
    extra = ["--manifests", "x"] if command == "serve" else []
    assert build_parser().parse_args([command, *extra]).event_loop == "uvloop"
    chosen = build_parser().parse_args([command, *extra, "--event-loop", "asyncio"])
    assert chosen.event_loop == "asyncio"


def test_the_environment_chooses_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCONNECTOR_EVENT_LOOP", "asyncio")
    assert build_parser().parse_args(["serve", "--manifests", "x"]).event_loop == "asyncio"


def test_an_unknown_loop_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENCONNECTOR_EVENT_LOOP", "trio")
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--manifests", "x"])
    assert exited.value.code == 2
    assert "one of uvloop, asyncio, got 'trio'" in capsys.readouterr().err


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="one of uvloop, asyncio"):
        event_loop_factory("trio")


async def _serve_one_request() -> tuple[str, int, int]:
    gateway = Gateway(GatewaySettings())
    await gateway.start()
    try:
        gateway.install(RoutingTable.empty())
        async with TestClient(TestServer(build_app(gateway))) as client:
            ready = await client.get("/readyz")
            refused = await client.post("/events", data=b"{}", headers={"Content-Type": "application/json"})
            return type(asyncio.get_running_loop()).__module__, ready.status, refused.status
    finally:
        await gateway.close()


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio.unix_events")])
def test_the_gateway_serves_on_the_chosen_loop(name: str, module: str) -> None:
    loop_module, ready, refused = run_main(_serve_one_request(), argparse.Namespace(event_loop=name))
    assert loop_module == module
    assert ready == 200
    assert refused == 400  # a binary request without ce- headers: a precise problem, on either loop
