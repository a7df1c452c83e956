"""Watch events reach the routing table: create, update and delete of every kind change what the gateway
does on the wire (webhook endpoints, accepted event types, deliveries, mapped payloads, forward targets)."""

from __future__ import annotations

import orjson

from tests.support.sinks import Sink

from .conftest import StartOperator
from .kube import Kubectl, condition
from .specs import ZAAK_CREATED, ZAAK_UPDATED, cloud_event, event_spec, subscription_spec


async def test_consumer_create_update_delete_routes_its_webhook(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create("Consumer", "intake", {"endpoint": "intake/zaken", "event": "zaak-created"})
    await op.wait_observed("Consumer", "intake", 1)

    answer = await op.webhook("intake/zaken", b'{"zaak": "Z-1"}')
    assert answer.status == 200, answer.body
    assert answer.json()["eventId"]

    await kube.patch_spec("Consumer", "intake", {"endpoint": "intake/v2"})
    await op.wait_observed("Consumer", "intake", 2)
    assert (await op.webhook("intake/zaken")).status == 404
    assert (await op.webhook("intake/v2")).status == 200

    await kube.delete("Consumer", "intake")
    await op.wait_gone("Consumer", "intake")
    answer = await op.webhook("intake/v2")
    assert answer.status == 404
    assert answer.content_type == "application/problem+json"


async def test_event_create_update_delete_changes_the_accepted_types(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    refused = await op.publish(cloud_event(ZAAK_CREATED))
    assert refused.status == 422
    assert "is not defined by an enabled Event" in refused.json()["errors"][0]["detail"]

    await kube.create("Event", "zaak", event_spec(ZAAK_CREATED))
    await op.wait_observed("Event", "zaak", 1)
    assert (await op.publish(cloud_event(ZAAK_CREATED))).status == 202

    await kube.patch_spec("Event", "zaak", {"type": ZAAK_UPDATED})
    await op.wait_observed("Event", "zaak", 2)
    assert (await op.publish(cloud_event(ZAAK_CREATED))).status == 422
    assert (await op.publish(cloud_event(ZAAK_UPDATED))).status == 202

    await kube.delete("Event", "zaak")
    await op.wait_gone("Event", "zaak")
    assert (await op.publish(cloud_event(ZAAK_UPDATED))).status == 422


async def test_subscription_create_pause_move_delete_changes_deliveries(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as first, Sink() as second:
        op = await start_operator()
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(first.url))
        await op.wait_observed("EventSubscription", "notifier", 1)

        answer = await op.publish(cloud_event(id_="evt-1"))
        assert answer.status == 202
        assert answer.json()["deliveries"] == 1
        delivered = (await first.wait_for(1))[0]
        assert orjson.loads(delivered.body)["id"] == "evt-1"

        await kube.patch_spec("EventSubscription", "notifier", {"status": "paused"})
        await op.wait_observed("EventSubscription", "notifier", 2)
        answer = await op.publish(cloud_event(id_="evt-2"))
        assert answer.status == 202
        assert answer.json()["deliveries"] == 0  # nothing was queued, so nothing can arrive later

        await kube.patch_spec("EventSubscription", "notifier", {"status": "active", "endpoint": second.url})
        await op.wait_observed("EventSubscription", "notifier", 3)
        assert (await op.publish(cloud_event(id_="evt-3"))).json()["deliveries"] == 1
        moved = (await second.wait_for(1))[0]
        assert orjson.loads(moved.body)["id"] == "evt-3"

        await kube.delete("EventSubscription", "notifier")
        await op.wait_gone("EventSubscription", "notifier")
        assert (await op.publish(cloud_event(id_="evt-4"))).json()["deliveries"] == 0
        assert [orjson.loads(r.body)["id"] for r in first.requests + second.requests] == ["evt-1", "evt-3"]


async def test_mapping_create_update_delete_changes_what_a_consumer_emits(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        op = await start_operator()
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        consumer = {"endpoint": "zaaksysteem", "mappingId": "zaak-in", "event": "zaak-created"}
        await kube.create("Consumer", "zaaksysteem", consumer)
        status = await op.wait_observed("Consumer", "zaaksysteem", 1, reason="MappingNotFound")
        assert "spec.mappingId" in condition(status, "Ready")["message"]
        assert (await op.webhook("zaaksysteem")).status == 404  # not routed while it cannot work

        await kube.create("Mapping", "zaak-in", {"mapping": {"identificatie": "zaak.id"}})
        await op.wait_observed("Consumer", "zaaksysteem", 1)
        answer = await op.webhook("zaaksysteem", b'{"zaak": {"id": "Z-7"}}')
        assert answer.status == 200, answer.body
        emitted = orjson.loads((await subscriber.wait_for(1))[0].body)
        assert emitted["data"] == {"identificatie": "Z-7"}

        await kube.patch_spec(
            "Mapping", "zaak-in", {"mapping": {"identificatie": None, "kenmerk": "zaak.id"}}
        )
        await op.wait_observed("Mapping", "zaak-in", 2)
        assert (await op.webhook("zaaksysteem", b'{"zaak": {"id": "Z-8"}}')).status == 200
        emitted = orjson.loads((await subscriber.wait_for(2))[1].body)
        assert emitted["data"] == {"kenmerk": "Z-8"}

        await kube.delete("Mapping", "zaak-in")
        await op.wait_gone("Mapping", "zaak-in")
        await op.wait_observed("Consumer", "zaaksysteem", 1, reason="MappingNotFound")
        assert (await op.webhook("zaaksysteem", b'{"zaak": {"id": "Z-9"}}')).status == 404
        assert len(subscriber.requests) == 2


async def test_source_create_update_delete_changes_where_a_consumer_forwards(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as first, Sink() as second:
        op = await start_operator()
        await kube.create("Source", "zaakregister", {"type": "api", "location": first.url_for("/api")})
        await kube.create("Consumer", "doorgeven", {"endpoint": "doorgeven", "targetType": "source",
                                                    "targetId": "zaakregister"})  # fmt: skip
        await op.wait_observed("Consumer", "doorgeven", 1)
        assert (await op.webhook("doorgeven", b'{"n": 1}')).status == 200
        forwarded = (await first.wait_for(1))[0]
        assert (forwarded.path, orjson.loads(forwarded.body)) == ("/api", {"n": 1})

        await kube.patch_spec("Source", "zaakregister", {"location": second.url_for("/v2")})
        await op.wait_observed("Source", "zaakregister", 2)
        assert (await op.webhook("doorgeven", b'{"n": 2}')).status == 200
        moved = (await second.wait_for(1))[0]
        assert (moved.path, orjson.loads(moved.body)) == ("/v2", {"n": 2})

        await kube.delete("Source", "zaakregister")
        await op.wait_gone("Source", "zaakregister")
        await op.wait_observed("Consumer", "doorgeven", 1, reason="SourceNotFound")
        assert (await op.webhook("doorgeven", b'{"n": 3}')).status == 404
        assert len(first.requests) + len(second.requests) == 2


async def test_secret_rotation_changes_the_token_a_subscriber_sees(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        op = await start_operator()
        await kube.create_secret("subscriber-credentials", {"token": "first-token"})
        await kube.create("Event", "zaak-created", event_spec())
        auth = {"type": "bearer", "secretRef": {"name": "subscriber-credentials", "key": "token"}}
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url, auth=auth))
        await op.wait_observed("EventSubscription", "notifier", 1)
        await op.publish(cloud_event())
        assert (await subscriber.wait_for(1))[0].headers["Authorization"] == "Bearer first-token"

        version = await op.table_version()
        await kube.patch_secret("subscriber-credentials", {"token": "second-token"})
        await op.wait_recompiled(after=version)
        await op.publish(cloud_event())
        assert (await subscriber.wait_for(2))[1].headers["Authorization"] == "Bearer second-token"

        await kube.delete("Secret", "subscriber-credentials")
        status = await op.wait_observed("EventSubscription", "notifier", 1, reason="SecretNotFound")
        ready = condition(status, "Ready")
        assert ready["status"] == "False"
        assert "spec.auth.secretRef" in ready["message"]
        assert (await op.publish(cloud_event())).json()["deliveries"] == 0


async def test_configmap_change_recompiles_the_event_schema(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    needs_zaak = {"type": "object", "required": ["zaak"]}
    await kube.create_configmap("zaak-schema", {"schema.json": orjson.dumps(needs_zaak).decode()})
    schema = {"configMapKeyRef": {"name": "zaak-schema", "key": "schema.json"}}
    await kube.create("Event", "zaak-created", {**event_spec(), "schema": schema})
    await op.wait_observed("Event", "zaak-created", 1)
    assert (await op.publish(cloud_event(data={"kenmerk": "K-1"}))).status == 422
    assert (await op.publish(cloud_event(data={"zaak": "Z-1"}))).status == 202

    version = await op.table_version()
    needs_kenmerk = {"type": "object", "required": ["kenmerk"]}
    await kube.patch_configmap("zaak-schema", {"schema.json": orjson.dumps(needs_kenmerk).decode()})
    await op.wait_recompiled(after=version)
    assert (await op.publish(cloud_event(data={"zaak": "Z-1"}))).status == 422
    assert (await op.publish(cloud_event(data={"kenmerk": "K-1"}))).status == 202

    await kube.delete("ConfigMap", "zaak-schema")
    status = await op.wait_observed("Event", "zaak-created", 1, reason="ConfigMapNotFound")
    assert "spec.schema.configMapKeyRef" in condition(status, "Ready")["message"]
    assert (await op.publish(cloud_event(data={"kenmerk": "K-1"}))).status == 422
