"""With --bus jetstream the message log is kept in JetStream: a restarted gateway (or any other gateway
process on the same stream) sees the messages, attempts and pull acknowledgements of the one before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from openconnector.delivery.jetstream import JetStreamSettings
from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import start_standalone
from tests.component.natsserver import NatsServer
from tests.component.test_messages_api import AUTH, CE, NS, TOKEN, event, manifests
from tests.support.http import call, post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink


async def test_a_restarted_gateway_keeps_the_log_and_the_pull_position(tmp_path: Path) -> None:
    with NatsServer() as server:
        jetstream = JetStreamSettings(servers=(server.url,), stream="LOG", publish_timeout=2.0)
        settings = GatewaySettings(
            port=0, drain_seconds=1.0, api_token=TOKEN, bus="jetstream", jetstream=jetstream
        )
        async with Sink() as ok, Sink(default=Reply(500)) as failing:
            directory = tmp_path / "m"
            directory.mkdir()
            (directory / "all.yaml").write_text(yaml.safe_dump_all(manifests(ok, failing)))

            first = await start_standalone([directory], settings, watch=False)
            try:
                await eventually(lambda: call("GET", f"{first.url}/readyz"), until=lambda a: a.status == 200)
                for event_id in ("j-1", "j-2", "j-3"):
                    answer = await post(f"{first.url}/namespaces/{NS}/events", event(event_id), CE)
                    assert answer.status == 202, answer.body
                api = f"{first.url}/api/v1alpha1/subscriptions/{NS}"

                async def delivered(base: str) -> list[Any]:
                    body = (await call("GET", f"{base}/ok/messages?status=delivered", headers=AUTH)).json()
                    return list(body["items"])

                await eventually(lambda: delivered(api), until=lambda items: len(items) == 3)
                pulled = await eventually(
                    lambda: call("GET", f"{api}/pulled/pull?limit=2", headers=AUTH),
                    until=lambda a: len(a.json()) == 2,
                )
                cursor = pulled.headers["Next-Cursor"]
                acknowledging = await call("GET", f"{api}/pulled/pull?limit=2&cursor={cursor}", headers=AUTH)
                assert [e["id"] for e in acknowledging.json()] == ["j-3"]
                listed = (await call("GET", f"{first.url}/api/v1alpha1/subscriptions", headers=AUTH)).json()
                assert listed["store"]["durable"] is True
            finally:
                await first.stop()

            second = await start_standalone([directory], settings, watch=False)
            try:
                api = f"{second.url}/api/v1alpha1/subscriptions/{NS}"
                items = await eventually(lambda: delivered(api), until=lambda items: len(items) == 3)
                assert sorted(item["eventId"] for item in items) == ["j-1", "j-2", "j-3"]
                message = (await call("GET", f"{api}/ok/messages/{items[0]['id']}", headers=AUTH)).json()
                assert message["attempts"][0]["requestHeaders"]["Authorization"] == "[redacted]"
                # j-1 and j-2 were acknowledged before the restart: only j-3 is left to pull.
                again = await eventually(
                    lambda: call("GET", f"{api}/pulled/pull?limit=10", headers=AUTH),
                    until=lambda a: [e["id"] for e in a.json()] == ["j-3"],
                )
                assert again.status == 200
            finally:
                await second.stop()
