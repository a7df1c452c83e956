"""`openconnector status|messages|resend|replay --gateway URL` against a running standalone gateway."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openconnector.cli import build_parser
from openconnector.console import messages_table, status_table
from tests.component.conftest import StartGateway
from tests.component.test_messages_api import CE, NS, event, manifests
from tests.support.http import post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

TOKEN = "cli-token"


async def run(*argv: str, token_file: Path) -> tuple[int, str]:
    args = build_parser().parse_args([*argv[:1], "--token-file", str(token_file), *argv[1:]])
    out = io.StringIO()
    code: int = await asyncio.to_thread(args.func, args, None, out)
    return code, out.getvalue()


async def test_cli_lists_resends_and_replays(
    tmp_path: Path, start_gateway: StartGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async with Sink() as ok, Sink(default=Reply(503)) as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        (directory / "all.yaml").write_text(yaml.safe_dump_all(manifests(ok, failing)))
        gw = await start_gateway(directory, api_token=TOKEN)
        for event_id in ("c-1", "c-2"):
            answer = await post(f"{gw.url}/namespaces/{NS}/events", event(event_id), CE)
            assert answer.status == 202

        async def failed() -> list[Any]:
            code, out = await run("messages", f"{NS}/failing", "--gateway", gw.url, "--status", "failed",
                                  "-o", "json", token_file=token_file)  # fmt: skip
            assert code == 0
            return list(json.loads(out))

        items = await eventually(failed, until=lambda items: len(items) == 2)
        assert {item["eventId"] for item in items} == {"c-1", "c-2"}

        code, out = await run("status", "--gateway", gw.url, token_file=token_file)
        assert code == 0
        header = out.splitlines()[0].split()
        assert header == ["KIND", "NAMESPACE", "NAME", "READY", "HEALTHY", "COUNTERS", "REASON"]
        failing_row = next(line for line in out.splitlines() if " failing " in f" {line} ")
        assert "dropped=2" in failing_row

        code, out = await run("messages", f"{NS}/failing", "--gateway", gw.url, token_file=token_file)
        assert code == 0
        assert out.splitlines()[0].split() == ["ID", "STATUS", "EVENT", "TYPE", "RECEIVED", "ATTEMPTS"]

        requests = len(failing.requests)
        code, out = await run(
            "resend", f"{NS}/failing", items[0]["id"], "--gateway", gw.url, token_file=token_file
        )
        assert (code, out.strip()) == (0, f"resent {items[0]['id']}: pending")
        await failing.wait_for(requests + 2)

        since = "2000-01-01T00:00:00Z"
        code, out = await run("replay", f"{NS}/failing", "--since", since, "--gateway", gw.url,
                              token_file=token_file)  # fmt: skip
        assert code == 0
        assert out.strip().startswith("replayed ")

        bad = tmp_path / "bad"
        bad.write_text("wrong")
        code, out = await run("messages", f"{NS}/failing", "--gateway", gw.url, token_file=bad)
        assert code == 1
        assert "401" in capsys.readouterr().err


def test_tables_align_and_show_reasons() -> None:
    table = status_table([
        {"kind": "EventSubscription", "namespace": "a", "name": "s", "status": {
            "delivered": 3, "dropped": 1,
            "conditions": [{"type": "Ready", "status": "True"},
                           {"type": "Healthy", "status": "False", "reason": "DeliveryFailing"}]}},
        {"kind": "Event", "namespace": "a", "name": "e", "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]}},
    ])  # fmt: skip
    lines = table.splitlines()
    assert lines[1].split() == ["EventSubscription", "a", "s", "True", "False", "delivered=3", "dropped=1",
                                "DeliveryFailing"]  # fmt: skip
    assert lines[2].split() == ["Event", "a", "e", "False", "-", "-", "InvalidSpec"]
    assert lines[0].index("READY") == lines[1].index("True")
    assert messages_table([]).split() == ["ID", "STATUS", "EVENT", "TYPE", "RECEIVED", "ATTEMPTS"]


def test_kubectl_finds_the_plugin_on_path() -> None:
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "kubectl-openconnector").exists()
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(bin_dir / "kubectl"), "openconnector", "status", "--help"],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--gateway URL" in result.stdout
