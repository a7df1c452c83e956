"""A namespace is a broker: events published in one namespace never reach another's subscriptions."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from tests.component.conftest import StartGateway
from tests.support.http import post
from tests.support.sinks import Sink

TYPE = "nl.example.thing.created"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:test"
CE = {"Content-Type": "application/cloudevents+json"}


def docs(namespace: str, sink: Sink, *, with_event: bool = True) -> list[dict[str, object]]:
    meta = {"namespace": namespace}
    out: list[dict[str, object]] = [
        {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "EventSubscription",
            "metadata": {"name": "sub", **meta},
            "spec": {"eventType": TYPE, "endpoint": f"http://127.0.0.1:{sink.port}/{namespace}"},
        },
        {
            "apiVersion": "openconnector.nl/v1alpha1",
            "kind": "Consumer",
            "metadata": {"name": "hook", **meta},
            "spec": {"endpoint": f"{namespace}/hook", "event": "thing"},
        },
    ]
    if with_event:
        out.append(
            {
                "apiVersion": "openconnector.nl/v1alpha1",
                "kind": "Event",
                "metadata": {"name": "thing", **meta},
                "spec": {"type": TYPE, "source": SOURCE},
            }
        )
    return out


def event(event_id: str) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": event_id, "type": TYPE, "source": SOURCE, "data": {}})


async def test_consumer_events_stay_in_their_namespace(tmp_path: Path, start_gateway: StartGateway) -> None:
    async with Sink() as sink:
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "all.yaml").write_text(
            yaml.safe_dump_all(docs("team-a", sink) + docs("team-b", sink))
        )
        gw = await start_gateway(tmp_path / "m")
        answer = await post(f"{gw.url}/webhooks/team-a/hook", b"{}", {"Content-Type": "application/json"})
        assert answer.status == 200, answer.body
        received = await sink.wait_for(1)
        assert [r.path for r in received] == ["/team-a"]
        # The marker: a later event for team-b arrives, and still nothing of team-a's went to team-b.
        await post(f"{gw.url}/webhooks/team-b/hook", b"{}", {"Content-Type": "application/json"})
        received = await sink.wait_for(2)
        assert sorted(r.path for r in received) == ["/team-a", "/team-b"]


async def test_namespaced_events_endpoint_confines_and_shared_one_fans_out(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink() as sink:
        (tmp_path / "m").mkdir()
        manifests = docs("team-a", sink) + docs("team-b", sink) + docs("team-c", sink, with_event=False)
        (tmp_path / "m" / "all.yaml").write_text(yaml.safe_dump_all(manifests))
        gw = await start_gateway(tmp_path / "m")
        answer = await post(f"{gw.url}/namespaces/team-b/events", event("only-b"), CE)
        assert answer.status == 202, answer.body
        assert answer.json()["deliveries"] == 1
        assert [r.path for r in await sink.wait_for(1)] == ["/team-b"]
        # The shared /events publishes where an Event defines the type: team-a and team-b, not team-c.
        answer = await post(f"{gw.url}/events", event("shared"), CE)
        assert answer.json()["deliveries"] == 2
        received = await sink.wait_for(3)
        assert sorted(r.path for r in received[1:]) == ["/team-a", "/team-b"]


async def test_namespaced_endpoint_needs_that_namespaces_event(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink() as sink:
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "all.yaml").write_text(yaml.safe_dump_all(docs("team-c", sink, with_event=False)))
        gw = await start_gateway(tmp_path / "m")
        answer = await post(f"{gw.url}/namespaces/team-c/events", event("x"), CE)
        assert answer.status == 422
        assert answer.content_type == "application/problem+json"
        assert "in namespace 'team-c'" in answer.json()["errors"][0]["detail"]
