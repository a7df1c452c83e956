"""The JetStream message log on a real 3-node cluster after session 8 (issue 15): gateway processes
that share a stream show the same log through the API, record for record and attempt for attempt, the
one that wrote a change (it applies its own changes from what it held: records, attempts as the record
their JSON reads back as, outcomes as their status) and the others (they parse the JSON), and so does a
gateway started afterwards that only reads the stream back. Pull acknowledgements made on one are seen
by the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openconnector.delivery.jetstream import JetStreamBus, JetStreamSettings
from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import StandaloneGateway, start_standalone
from tests.component.test_messages_api import AUTH, CE, NS, TOKEN, event, manifests
from tests.jetstream.natscluster import NatsCluster
from tests.support.http import call, post
from tests.support.polling import eventually
from tests.support.sinks import Reply, Sink

pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(240)]

_SUBSCRIPTIONS = ("ok", "failing", "pulled")


async def _view(gateway: StandaloneGateway) -> dict[str, list[Any]]:
    """Every message of every subscription as the API shows it, attempts included, oldest first."""
    view: dict[str, list[Any]] = {}
    for name in _SUBSCRIPTIONS:
        base = f"{gateway.url}/api/v1alpha1/subscriptions/{NS}/{name}/messages"
        listed = (await call("GET", f"{base}?limit=100", headers=AUTH)).json()
        view[name] = [
            (await call("GET", f"{base}/{item['id']}", headers=AUTH)).json()
            for item in reversed(listed["items"])
        ]
    return view


async def _ready(gateway: StandaloneGateway) -> bool:
    """Ready, its message log is following the stream (a change made before the log's stream exists is
    lost: best effort), and every subscription's consumer exists (until then a request for one may get
    503 bus-unavailable: readiness does not wait for them)."""
    log = gateway.gateway.message_log
    bus = gateway.gateway.dispatcher
    answer = await call("GET", f"{gateway.url}/readyz")
    return (
        answer.status == 200
        and log is not None
        and log.caught_up.is_set()
        and isinstance(bus, JetStreamBus)
        and bus.consumers_ready
    )


def _settled(view: dict[str, list[Any]], events: int) -> bool:
    return (
        len(view["ok"]) == events
        and all(message["status"] == "delivered" for message in view["ok"])
        and len(view["failing"]) == events
        and all(message["status"] == "dropped" for message in view["failing"])  # (no dead-letter sink)
        and len(view["pulled"]) == events
    )


async def test_every_gateway_shows_the_log_the_writers_show(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    jetstream = JetStreamSettings(
        servers=tuple(nats_cluster.urls.split(",")), stream="S8LOG", publish_timeout=5.0
    )
    settings = GatewaySettings(
        port=0, drain_seconds=1.0, api_token=TOKEN, bus="jetstream", jetstream=jetstream
    )
    async with Sink() as ok, Sink(default=Reply(500, headers={"Retry-After": "0"}, body=b"no")) as failing:
        directory = tmp_path / "m"
        directory.mkdir()
        (directory / "all.yaml").write_text(yaml.safe_dump_all(manifests(ok, failing)))
        writers = [await start_standalone([directory], settings, watch=False) for _ in range(2)]
        try:
            for gateway in writers:
                await eventually(lambda g=gateway: _ready(g), within=60)  # type: ignore[misc]
            events = 8
            for n in range(events):  # each writer records half of them
                answer = await post(f"{writers[n % 2].url}/namespaces/{NS}/events", event(f"s8-{n}"), CE)
                assert answer.status == 202, answer.body
            first = await eventually(
                lambda: _view(writers[0]), until=lambda v: _settled(v, events), within=60
            )
            await eventually(lambda: _view(writers[1]), until=lambda v: v == first, within=30)
            assert any(message["attempts"] for message in first["ok"])
            assert all(len(message["attempts"]) == 2 for message in first["failing"])  # (1 retry)
            signed = first["ok"][0]["attempts"][0]["requestHeaders"]
            assert signed["Authorization"] == "[redacted]"
            assert signed["webhook-signature"] == "[redacted]"
            assert signed["webhook-id"] == first["ok"][0]["id"]

            pull = f"{writers[1].url}/api/v1alpha1/subscriptions/{NS}/pulled/pull"
            pulled = await call("GET", f"{pull}?limit=3", headers=AUTH)
            acknowledged = await call(
                "GET", f"{pull}?limit=3&cursor={pulled.headers['Next-Cursor']}", headers=AUTH
            )
            assert acknowledged.status == 200
            after_pull = await eventually(
                lambda: _view(writers[1]),
                until=lambda v: sum(m["status"] == "delivered" for m in v["pulled"]) == 3,
            )
            await eventually(lambda: _view(writers[0]), until=lambda v: v == after_pull, within=30)

            reader = await start_standalone([directory], settings, watch=False)
            try:
                await eventually(lambda: _view(reader), until=lambda v: v == after_pull, within=60)
            finally:
                await reader.stop()
        finally:
            for gateway in writers:
                await gateway.stop()
