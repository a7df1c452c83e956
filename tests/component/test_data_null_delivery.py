"""Issue 16: an explicit ``"data": null`` posted to /events reaches the subscriber as ``"data": null``
(it used to arrive with no data member), and an absent member stays absent."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from tests.component.client import post
from tests.component.conftest import StartGateway
from tests.component.sinks import Sink

API = "openconnector.nl/v1alpha1"
TYPE = "nl.example.webshop.order.paid"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:webshop"


@pytest.mark.parametrize("mode", ["structured", "binary"])
async def test_explicit_null_data_is_delivered(
    tmp_path: Path, start_gateway: StartGateway, mode: str
) -> None:
    async with Sink() as sink:
        docs = [
            {"apiVersion": API, "kind": "Event", "metadata": {"name": "paid"},
             "spec": {"type": TYPE, "source": SOURCE}},
            {"apiVersion": API, "kind": "EventSubscription", "metadata": {"name": "orders"},
             "spec": {"eventType": TYPE, "endpoint": sink.url, "contentMode": mode}},
        ]  # fmt: skip
        (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(docs))
        gw = await start_gateway(tmp_path)
        event = {"specversion": "1.0", "source": SOURCE, "type": TYPE}
        for event_id, extra in (("null", {"data": None}), ("absent", {})):
            body = orjson.dumps({**event, "id": event_id, **extra})
            answer = await post(f"{gw.url}/events", body, {"Content-Type": "application/cloudevents+json"})
            assert answer.status == 202, answer.body
        requests = await sink.wait_for(2)
        if mode == "structured":
            by_id = {orjson.loads(r.body)["id"]: orjson.loads(r.body) for r in requests}
            assert "data" in by_id["null"]
            assert by_id["null"]["data"] is None
            assert "data" not in by_id["absent"]
        else:
            bodies = {r.headers["ce-id"]: (r.headers.get("Content-Type"), r.body) for r in requests}
            assert bodies["null"] == ("application/json", b"null")
            assert bodies["absent"][1] == b""
